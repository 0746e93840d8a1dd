"""The FastAPI application: one collection, its query machinery, the routes, and the guards around them."""
from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import MediaError, OmnivecError
from ..ops.policies import load_policies
from ..store import Collection, open_collection
from . import api_routes, clip_compat, media_routes, openai_compat, ops_routes
from .config import ServerConfig
from .inputs import InputError
from .metrics import CONTENT_TYPE, MetricsMiddleware
from .security import add_security
from .service import NotFound, ServerState

STATIC = Path(__file__).parent / "static"


def create_app(collection: Collection | str | os.PathLike, config: ServerConfig | None = None) -> FastAPI:
    """An ASGI app serving `collection` (a Collection, or a name or folder to open). Loads the model now."""
    config = config or ServerConfig()
    if config.policies is not None:
        load_policies(config.policies)  # a broken policy file stops the start, not the first /moderate
    col = collection if isinstance(collection, Collection) else open_collection(collection)
    state = ServerState(col, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.close()

    app = FastAPI(title=f"omnivec: {col.name}", version=__version__, lifespan=lifespan,
                  description="Search one collection of text, images, audio and video in a shared vector space.")
    app.state.omnivec = state
    _error_handlers(app)
    app.include_router(api_routes.router)
    app.include_router(media_routes.router)
    app.include_router(clip_compat.router)
    app.include_router(openai_compat.router)
    app.include_router(ops_routes.router)

    @app.get("/metrics", tags=["service"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_security(app, config)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost: times refusals too
    return app


def _error_handlers(app: FastAPI) -> None:
    """omnivec's errors are the client's fault (bad input, limits, unsupported modality): 4xx with the cause."""

    def reply(status: int, detail) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError):
        return reply(400, str(exc))

    @app.exception_handler(MediaError)
    async def media_error(request: Request, exc: MediaError):
        # Over a limit (a decompression bomb, too long a clip) is "too large"; the rest is a bad input.
        return reply(413 if exc.stage == "limits" else 400, {"message": str(exc), **exc.to_dict()})

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return reply(404, str(exc))

    @app.exception_handler(OmnivecError)  # ConfigError, ModalityError, ...: the client's request cannot be served
    async def omnivec_error(request: Request, exc: OmnivecError):
        return reply(400, str(exc))
