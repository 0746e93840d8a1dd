"""The HTTP server: one process serving one collection to a team (API, web page, compatible endpoints, metrics).

Needs the `server` extra (fastapi, uvicorn, python-multipart, prometheus-client); `import omnivec` never imports it.

    from omnivec.server import create_app, ServerConfig
    app = create_app("photos", ServerConfig(api_key="..."))
"""
from .app import create_app
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
