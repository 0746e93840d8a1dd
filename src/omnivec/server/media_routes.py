"""Thumbnails and media streams of results. Only files recorded by indexing are served, and only while they are
the files that were indexed.

A request names a file (an item id and the index of one of its paths, or a path under /files/). It is served when
the requested path or its real path (symlinks and `..` resolved) is a path the index job recorded as indexed, AND
the file found there has the size and modification time recorded then. So `../` and encoded traversal, absolute
paths outside the collection, a symlink planted in an indexed folder, and an indexed file swapped for a symlink to
something else all end in 404 (or 409 for an indexed file that changed since)."""
from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import Path

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from ..errors import MediaError
from ..media import Media, load_image, sample_frames
from .api_routes import state_of
from .service import THUMBNAIL_MODALITIES, NotFound, ServerState

router = APIRouter(tags=["media"])

THUMBNAIL_SIZES = (64, 128, 256, 512)
# Indexed files are served as data, never as active content on the server's origin (an indexed HTML or SVG
# file must not run scripts with the page's session).
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=3600"}


class FileChanged(Exception):
    """The path is indexed but the file there is not the one that was indexed."""


def open_indexed(state: ServerState, requested: str) -> tuple[str, os.stat_result]:
    """(real path, stat) of an indexed file; NotFound if not indexed, FileChanged if replaced since."""
    if not os.path.isabs(requested) or "\x00" in requested:
        raise NotFound("not an indexed file")
    state.refresh()
    real = os.path.realpath(requested)
    names = sorted({os.path.normpath(requested), real})
    rows = [r for r in state.col.store.files_for(names) if r["status"] == "indexed"]
    if not rows:
        raise NotFound("not an indexed file")
    try:
        st = os.stat(real)
    except OSError:
        raise NotFound("the indexed file is gone") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotFound("not a regular file")
    if not any(r["size"] == st.st_size and r["mtime_ns"] == st.st_mtime_ns for r in rows):
        raise FileChanged("the file changed since it was indexed; re-index it to serve it")
    return real, st


def _serve(state: ServerState, requested: str, mime: str | None, modality: str | None) -> FileResponse:
    try:
        real, st = open_indexed(state, requested)
    except FileChanged as e:
        raise HTTPException(409, str(e)) from None
    return FileResponse(real, stat_result=st, media_type=_media_type(mime, modality, real), headers=SAFE_HEADERS)


def _media_type(mime: str | None, modality: str | None, real: str) -> str:
    """Media types players need; anything else as inert text or bytes (SVG is an image that runs scripts)."""
    mime = mime or mimetypes.guess_type(real)[0] or ""
    if (mime.split("/")[0] in ("image", "audio", "video") and "svg" not in mime) or mime == "application/pdf":
        return mime  # (the sandbox header above also covers a PDF viewer)
    if modality == "text" or mime.startswith("text/"):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


@router.get("/items/{item_id}/media")
def item_media(item_id: str, request: Request, path: int = Query(0, ge=0, description="which of the item's paths")):
    """The item's original file; supports HTTP Range, so audio and video players can seek."""
    s = state_of(request)
    row = s.item_row(item_id)
    paths = row.get("paths") or []
    if path >= len(paths):
        raise HTTPException(404, f"item {item_id} has {len(paths)} path(s)")
    return _serve(s, paths[path], row.get("mime"), row.get("modality"))


@router.get("/files/{file_path:path}")
def file_by_path(file_path: str, request: Request):
    """An indexed file by its recorded absolute path (as search results list it)."""
    return _serve(state_of(request), "/" + file_path, None, None)


@router.get("/items/{item_id}/thumbnail")
def thumbnail(item_id: str, request: Request, size: int = Query(256, ge=1, le=4096),
              t: float = Query(0.0, ge=0, description="video: the time of the frame, in seconds")):
    """A JPEG thumbnail of an image or of a video frame (cached on disk by content and size)."""
    s = state_of(request)
    row = s.item_row(item_id)
    if row["modality"] not in THUMBNAIL_MODALITIES:
        raise HTTPException(404, f"{row['modality']} items have no thumbnail")
    size = next((x for x in THUMBNAIL_SIZES if x >= size), THUMBNAIL_SIZES[-1])
    t = round(t, 1) if row["modality"] == "video" else 0.0
    name = f"{row['content_hash']}-{size}" + (f"-t{int(t * 10)}" if row["modality"] == "video" else "") + ".jpg"
    cached = s.thumbnail_dir / name
    if cached.is_file():
        return FileResponse(cached, media_type="image/jpeg", headers=SAFE_HEADERS)
    real = _first_servable(s, row["paths"] or [])
    media = Media(name=real, modality=row["modality"], mime=row.get("mime") or "", path=Path(real))
    try:
        image = load_image(media, min_size=size) if row["modality"] == "image" else _video_frame(media, t, size)
    except MediaError as e:
        raise HTTPException(422, f"cannot make a thumbnail: {e.cause}") from None
    image.thumbnail((size, size))
    data = _jpeg(image)
    _store(cached, data)
    return Response(data, media_type="image/jpeg", headers=SAFE_HEADERS)


def _first_servable(s: ServerState, paths: list[str]) -> str:
    reason = "the item has no local file"
    for p in paths:
        try:
            return open_indexed(s, p)[0]
        except (NotFound, FileChanged) as e:
            reason = str(e)
    raise NotFound(reason)


def _video_frame(media: Media, t: float, size: int):
    """The first visible frame at or after `t` (or the last one before the end)."""
    frames = sample_frames(media, fps=1.0 / t if t >= 1 else 1.0, min_size=size)
    chosen = None
    try:
        for f in frames:
            chosen = f.image
            if f.time >= t - 0.5:
                break
    finally:
        frames.close()
    if chosen is None:
        raise MediaError(media.name, "no visible frame", "decode")
    return chosen


def _jpeg(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _store(path: Path, data: bytes) -> None:
    """Best effort: a read-only collection folder still gets thumbnails, just not cached ones."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass
