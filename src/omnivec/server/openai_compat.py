"""An OpenAI-style embeddings API (/v1/embeddings, /v1/models), so LLM frameworks and the openai client can use
the collection's space as their embedder. Strings are texts, except data URIs (`data:image/png;base64,...`),
which are images (or sounds); errors come in OpenAI's error shape."""
from __future__ import annotations

from typing import Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..errors import MediaError, ModalityError, OmnivecError
from .api_routes import encode_vector, state_of
from .embedder import QueryInput
from .inputs import DATA_URI, InputError, decode_payload, media_input, parse_part

router = APIRouter(prefix="/v1", tags=["openai"])
MAX_INPUTS = 2048  # OpenAI's own limit per request


class EmbeddingsRequest(BaseModel):
    input: Union[str, list[Union[str, dict[str, str]]], list[int], list[list[int]]]
    model: Optional[str] = None
    encoding_format: str = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None


def openai_error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": code}}, status_code=status)


def model_names(state) -> set[str]:
    return {state.space.name, state.space.model, state.col.name}


@router.get("/models")
def models(request: Request) -> dict:
    s = state_of(request)
    return {"object": "list", "data": [{"id": s.space.name, "object": "model", "created": int(s.started),
                                        "owned_by": "omnivec"}]}


@router.post("/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request):
    s = state_of(request)
    if body.model is not None and body.model not in model_names(s):
        return openai_error(404, f"model {body.model!r} is not served here; use {s.space.name!r} (this server "
                            f"embeds with the collection's space)", "model", "model_not_found")
    if body.encoding_format not in ("float", "base64"):
        return openai_error(400, "encoding_format must be 'float' or 'base64'", "encoding_format")
    if body.dimensions is not None and body.dimensions != s.space.dim:
        return openai_error(400, f"this space has {s.space.dim} dimensions; it cannot return {body.dimensions}",
                            "dimensions")
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    if not inputs:
        return openai_error(400, "input is empty", "input")
    if len(inputs) > MAX_INPUTS:
        return openai_error(400, f"at most {MAX_INPUTS} inputs per request", "input")
    if any(isinstance(x, (int, list)) for x in inputs):
        # Token ids belong to a tokenizer this server does not use (LangChain sends them unless told not to:
        # OpenAIEmbeddings(check_embedding_ctx_length=False)).
        return openai_error(400, "token arrays are not supported: send strings", "input")

    def run():
        parts = [_part(x, f"input[{i}]", s) for i, x in enumerate(inputs)]
        vectors = [s.embedder.embed(p) for p in parts]
        tokens = _count_tokens(s.space, [p for p in inputs if isinstance(p, str) and not DATA_URI.match(p)])
        return parts, vectors, tokens

    try:
        parts, vectors, tokens = await run_in_threadpool(run)
    except (InputError, MediaError, ModalityError, OmnivecError) as e:
        status = 413 if isinstance(e, MediaError) and e.stage == "limits" else 400
        return openai_error(status, str(e), "input")
    return {"object": "list", "model": s.space.name,
            "data": [{"object": "embedding", "index": i, "embedding": encode_vector(v, body.encoding_format)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _part(x, name: str, s) -> QueryInput:
    if isinstance(x, dict):
        return parse_part(x, name, s.config, s.space)
    if DATA_URI.match(x):
        return media_input(decode_payload(x, name, s.config), name, s.config, s.space)
    s.space.require("text")
    return QueryInput.text(x, name)


def _count_tokens(space, texts: list[str]) -> int:
    return int(sum(space.backend.count_tokens(texts))) if texts else 0
