"""The endpoints clip-retrieval's ClipClient and its web front end call (/indices-list, /knn-service,
/metadata), answered from the collection, so that those clients work against omnivec unchanged.

clip-retrieval identifies results by integer ids into its index. Here an id is the first 13 hex digits of the
item id read as an integer: 52 bits, exact in the front end's JavaScript numbers, and unique in practice."""
from __future__ import annotations

import json
from pathlib import PurePath

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from .api_routes import state_of
from .embedder import QueryInput
from .inputs import InputError, decode_payload, media_input
from .service import ServerState

router = APIRouter(tags=["clip-retrieval"])

ID_HEX = 13
RESULT_MODALITIES = {"image": ["image"], "text": ["text"], "audio": ["audio"], "video": ["video"]}


def clip_id(item_id: str) -> int:
    return int(item_id[:ID_HEX], 16)


async def _json_body(request: Request) -> dict:
    # ClipClient posts JSON without a Content-Type (requests' data=), as clip-back's force=True accepts.
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise InputError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    return body


def _count(body: dict, key: str, default: int) -> int:
    value = body.get(key) or default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{key} must be a positive integer, got {value!r}")
    return value


def _check_index(state: ServerState, name) -> None:
    if name not in (None, state.col.name):
        raise InputError(f"unknown indice_name {name!r}; this server has {state.col.name!r} (see /indices-list)")


def _metadata(row: dict, base: str) -> dict:
    """clip-back's metadata columns (caption, url) plus omnivec's own id, modality and path."""
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    paths = row.get("paths") or []
    caption = meta.get("caption") or meta.get("text") or (PurePath(paths[0]).name if paths else row["id"])
    return {"caption": caption, "url": f"{base}/items/{row['id']}/media", "omnivec_id": row["id"],
            "modality": row["modality"], "path": paths[0] if paths else None}


def _base(request: Request) -> str:
    # Absolute URLs: the front end is served from elsewhere, and ClipClient users fetch them directly.
    return str(request.base_url).rstrip("/")


@router.get("/indices-list")
def indices_list(request: Request) -> list[str]:
    return [state_of(request).col.name]


@router.post("/knn-service")
async def knn_service(request: Request) -> list[dict]:
    """clip-back's query: text, image (base64), image_url (only when the server fetches URLs) or
    embedding_input; `modality` picks the kind of results; the first `num_images` results carry metadata.
    Deduplication is by content already (one item per distinct file); the safety and aesthetic options of
    clip-back's LAION models are accepted and ignored."""
    s = state_of(request)
    body = await _json_body(request)
    _check_index(s, body.get("indice_name"))
    num_images = _count(body, "num_images", 40)
    num_ids = max(num_images, _count(body, "num_result_ids", num_images))
    modality = body.get("modality") or "image"
    if modality not in RESULT_MODALITIES:
        raise InputError(f"modality must be one of {', '.join(RESULT_MODALITIES)}")

    def run():
        parts = []
        if body.get("text"):
            parts.append(QueryInput.text(str(body["text"]), "text"))
        for key in ("image", "image_url"):
            if body.get(key):
                parts.append(media_input(decode_payload(str(body[key]), key, s.config), key, s.config, s.space,
                                         declared="image"))
        vector = body.get("embedding_input")
        result = s.search(parts, vector=vector, k=min(num_ids, s.config.max_k), modalities=RESULT_MODALITIES[modality],
                          endpoint="knn-service")
        rows = {r["id"]: r for r in _rows(s, [h.id for h in result.hits[:num_images]])}
        base = _base(request)
        out = []
        for i, h in enumerate(result.hits):
            entry = _metadata(rows[h.id], base) if i < num_images and h.id in rows else {}
            out.append({**entry, "id": clip_id(h.id), "similarity": h.score})
        return out

    return await run_in_threadpool(run)


@router.post("/metadata")
async def metadata(request: Request) -> list[dict]:
    """Metadata for result ids, as the front end asks for results beyond the first page."""
    s = state_of(request)
    body = await _json_body(request)
    _check_index(s, body.get("indice_name"))
    ids = body.get("ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, int) and 0 <= i < 16 ** ID_HEX for i in ids):
        raise InputError(f"ids must be a list of integers below 16**{ID_HEX}")
    rows = await run_in_threadpool(_rows_by_prefix, s, [f"{i:0{ID_HEX}x}" for i in ids])
    by_id = {clip_id(r["id"]): r for r in rows}
    base = _base(request)
    return [{"id": i, "metadata": _metadata(by_id[i], base) if i in by_id else {}} for i in ids]


def _rows(s: ServerState, item_ids: list[str]) -> list[dict]:
    from ..store.filters import sql_in

    return s.col.items(sql_in("id", item_ids), ["id", "paths", "modality", "meta"]).to_pylist() if item_ids else []


def _rows_by_prefix(s: ServerState, prefixes: list[str]) -> list[dict]:
    if not prefixes:
        return []
    cond = " OR ".join(f"id LIKE '{p}%'" for p in prefixes)  # prefixes are hex digits: nothing to escape
    return s.col.items(cond, ["id", "paths", "modality", "meta"]).to_pylist()
