"""The record layout. One row per vector: the item's pooled vector (kind "item") and, for audio and video, one per
window or segment (kind "segment"). Rows of one item share its content hash; `key` is a stable int64 per row."""
from __future__ import annotations

import hashlib

import pyarrow as pa

BUILTIN_COLUMNS = ("key", "id", "content_hash", "kind", "segment", "paths", "modality", "mime", "size", "width",
                   "height", "duration", "start", "end", "taken_at", "year", "lat", "lon", "mtime", "meta",
                   "space", "version", "added", "vector")


def record_schema(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("key", pa.int64()),            # stable row key (ANN ids)
        pa.field("id", pa.string()),            # item id: the content hash, shortened
        pa.field("content_hash", pa.string()),  # sha256 of the bytes
        pa.field("kind", pa.string()),          # "item" | "segment"
        pa.field("segment", pa.int32()),        # -1 for the item row, else the window/segment index
        pa.field("paths", pa.list_(pa.string())),
        pa.field("modality", pa.string()),
        pa.field("mime", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("duration", pa.float64()),
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("taken_at", pa.string()),      # EXIF time, ISO 8601
        pa.field("year", pa.int32()),           # of taken_at, else of the file's mtime
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("mtime", pa.float64()),
        pa.field("meta", pa.string()),          # user metadata as JSON (its scalar fields are also columns)
        pa.field("space", pa.string()),
        pa.field("version", pa.string()),
        pa.field("added", pa.float64()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
    ])


FILES_SCHEMA = pa.schema([
    pa.field("path", pa.string()),
    pa.field("content_hash", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("status", pa.string()),            # indexed | skipped | failed
    pa.field("reason", pa.string()),
])

ERRORS_SCHEMA = pa.schema([
    pa.field("path", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("error", pa.string()),
    pa.field("time", pa.float64()),
])


def row_key(content_hash: str, segment: int) -> int:
    """A stable 63-bit key per row, so re-adding the same content yields the same keys."""
    digest = hashlib.blake2b(f"{content_hash}:{segment}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def item_id(content_hash: str) -> str:
    return content_hash[:16]
