"""The core API: embed, search (JSON, query string, uploads), items, collection stats, health, session."""
from __future__ import annotations

import base64
import json
import time
from collections import Counter
from typing import Literal, Optional, Union

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from .. import __version__
from .embedder import QueryInput
from .inputs import InputError, media_input, parse_part
from .security import SESSION_COOKIE, key_matches, session_token
from .service import ServerState, item_urls

router = APIRouter()


def state_of(request: Request) -> ServerState:
    return request.app.state.omnivec


def root_of(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


class EmbedRequest(BaseModel):
    input: list[dict[str, str]] = Field(..., description='Items such as {"text": "a dog"}, {"image": "<base64, '
                                        'data URI, or URL when the server allows>"}, {"audio": ...}, {"video": ...}')
    encoding_format: Literal["float", "base64"] = "float"


class SearchRequest(BaseModel):
    text: Optional[str] = None
    image: Optional[str] = Field(None, description="base64, data URI, or URL when the server allows")
    audio: Optional[str] = None
    video: Optional[str] = None
    like: Union[str, list[str], None] = Field(None, description="item id(s): more like these")
    vector: Optional[list[float]] = None
    weights: Optional[list[float]] = Field(None, description="per part, in the order text, image, audio, video, "
                                           "like ids, vector")
    k: int = 10
    modalities: Optional[list[str]] = None
    where: Optional[str] = Field(None, description="SQL filter on item fields, e.g. \"year >= 2020\"")
    min_score: Optional[float] = None


class SessionRequest(BaseModel):
    key: str


def encode_vector(v: np.ndarray, fmt: str):
    return base64.b64encode(np.asarray(v, "<f4").tobytes()).decode() if fmt == "base64" else \
        [float(x) for x in v]


def search_response(state: ServerState, request: Request, result) -> dict:
    root = root_of(request)
    return {"collection": state.col.name, "took_ms": round(result.took_ms, 3),
            "query": {"modality": result.modality}, "hits": [state.hit_json(h, root) for h in result.hits]}


def split_list(value: str | None) -> list[str] | None:
    items = [x.strip() for x in (value or "").split(",") if x.strip()]
    return items or None


@router.get("/health", tags=["service"])
def health(request: Request) -> dict:
    s = state_of(request)
    return {"status": "ok", "collection": s.col.name, "version": __version__}


@router.get("/stats", tags=["service"])
def stats(request: Request) -> dict:
    """The collection: its space, item counts by modality, failures, and the server's cache."""
    s = state_of(request)
    s.refresh()
    modalities = Counter(s.col.items(None, ["modality"]).column("modality").to_pylist())
    return {"collection": s.col.name, "space": s.col.pinned, "items": sum(modalities.values()),
            "by_modality": dict(modalities), "rows": s.col.store.count(), "errors": s.col.store.count_errors(),
            "table_version": s.col.store.version(), "uptime_seconds": round(time.time() - s.started, 1),
            "query_cache": {"entries": len(s.embedder.cache), "size": s.embedder.cache.size}}


@router.post("/embed", tags=["embed"])
def embed(body: EmbedRequest, request: Request) -> dict:
    """Vectors of the collection's space for mixed inputs, in order."""
    s = state_of(request)
    parts = [parse_part(p, f"input[{i}]", s.config, s.space) for i, p in enumerate(body.input)]
    vectors = [s.embedder.embed(p) for p in parts]
    return {"space": s.space.name, "version": s.space.version, "dim": s.space.dim,
            "data": [{"index": i, "modality": p.modality, "embedding": encode_vector(v, body.encoding_format)}
                     for i, (p, v) in enumerate(zip(parts, vectors))]}


@router.post("/search", tags=["search"])
def search(body: SearchRequest, request: Request) -> dict:
    """Search by text, media (base64 / data URI), stored items (more like this) or a vector, with filters."""
    s = state_of(request)
    parts = [parse_part({m: getattr(body, m)}, m, s.config, s.space)
             for m in ("text", "image", "audio", "video") if getattr(body, m) is not None]
    like = [body.like] if isinstance(body.like, str) else (body.like or [])
    result = s.search(parts, like=like, weights=body.weights, vector=body.vector, k=body.k,
                      modalities=body.modalities, where=body.where, min_score=body.min_score)
    return search_response(s, request, result)


@router.get("/search", tags=["search"])
def search_get(request: Request, q: Optional[str] = None, like: list[str] = Query(default=[]), k: int = 10,
               modalities: Optional[str] = Query(None, description="comma-separated, e.g. image,video"),
               where: Optional[str] = None, min_score: Optional[float] = None) -> dict:
    """Search by text (`q`) and/or stored items (`like`) from a query string."""
    s = state_of(request)
    parts = [QueryInput.text(q, "q")] if q else []
    result = s.search(parts, like=like, k=k, modalities=split_list(modalities), where=where, min_score=min_score)
    return search_response(s, request, result)


@router.post("/search/upload", tags=["search"])
def search_upload(request: Request, file: Optional[UploadFile] = File(None, description="an image, sound or video"),
                  text: Optional[str] = Form(None), like: Optional[str] = Form(None, description="comma-separated ids"),
                  weights: Optional[str] = Form(None), k: int = Form(10), modalities: Optional[str] = Form(None),
                  where: Optional[str] = Form(None), min_score: Optional[float] = Form(None)) -> dict:
    """Search by an uploaded file (multipart), optionally mixed with text and stored items."""
    s = state_of(request)
    parts = [QueryInput.text(text, "text")] if text else []
    if file is not None:
        data = file.file.read()
        if not data:
            raise InputError(f"{file.filename or 'file'}: the upload is empty")
        parts.append(media_input(data, file.filename or "file", s.config, s.space))
    w = [float(x) for x in split_list(weights)] if weights else None
    result = s.search(parts, like=split_list(like) or [], weights=w, k=k, modalities=split_list(modalities),
                      where=where, min_score=min_score)
    return search_response(s, request, result)


@router.get("/items/{item_id}", tags=["items"])
def item(item_id: str, request: Request, vector: bool = False) -> dict:
    """An item's stored fields (and its vector with ?vector=true)."""
    s = state_of(request)
    row = s.item_row(item_id)
    row["metadata"] = json.loads(row.pop("meta") or "{}")
    row.update(item_urls(row["id"], row["modality"], root_of(request)))
    if vector:
        row["vector"] = [float(x) for x in s.col.vector(row["id"])]
    return row


@router.get("/session", tags=["service"])
def session_info(request: Request) -> dict:
    """Whether this server wants a key, and whether this browser's session carries it."""
    key = state_of(request).config.api_key
    return {"key_required": key is not None,
            "authenticated": key is None or key_matches(request.cookies.get(SESSION_COOKIE), session_token(key))}


@router.post("/session", tags=["service"])
def session_login(body: SessionRequest, request: Request, response: Response) -> dict:
    """Trade the API key for a session cookie (for the web page's images and players)."""
    key = state_of(request).config.api_key
    if key is None:
        return {"authenticated": True}
    if not key_matches(body.key, key):
        raise HTTPException(401, "wrong API key")
    response.set_cookie(SESSION_COOKIE, session_token(key), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return {"authenticated": True}
