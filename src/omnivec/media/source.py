"""Turn what a user passes (path, bytes, URL, PIL image, array, text) into a `Media` with a known modality."""
from __future__ import annotations

import io
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MediaError
from .limits import DEFAULT_LIMITS, Limits
from .sniff import HEAD_BYTES, sniff

MODALITIES = ("text", "image", "audio", "video")


@dataclass
class Media:
    """One input, identified and ready to decode. Exactly one of path/data/obj/text is set."""

    name: str
    modality: str
    mime: str = ""
    path: Path | None = None
    data: bytes | None = None
    obj: Any = None                     # a PIL image or a numpy array handed in directly
    text: str | None = None
    sample_rate: int | None = None      # for raw audio arrays
    meta: dict = field(default_factory=dict)

    def open(self) -> io.BufferedIOBase:
        """A binary file object over the content (path or bytes)."""
        if self.path is not None:
            return open(self.path, "rb")
        if self.data is not None:
            return io.BytesIO(self.data)
        raise MediaError(self.name, "has no byte content", stage="decode")

    def size(self) -> int | None:
        if self.path is not None:
            return self.path.stat().st_size
        return len(self.data) if self.data is not None else None


def to_media(item: Any, index: int = 0, limits: Limits = DEFAULT_LIMITS, modality: str | None = None) -> Media:
    """Identify one input. `modality` forces the interpretation of a plain string ("text" or a file modality)."""
    from PIL import Image

    if isinstance(item, Media):
        return item
    if isinstance(item, Image.Image):
        return Media(name=f"<image #{index}>", modality="image", mime="image/x-pil", obj=item)
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
        arr, sr = item
        return Media(name=f"<audio #{index}>", modality="audio", mime="audio/x-array", obj=arr, sample_rate=int(sr))
    if isinstance(item, np.ndarray):
        if item.ndim == 1:
            return Media(name=f"<audio #{index}>", modality="audio", mime="audio/x-array", obj=item)
        if item.ndim in (2, 3):
            return Media(name=f"<image #{index}>", modality="image", mime="image/x-array", obj=item)
        raise MediaError(f"<array #{index}>", f"arrays of shape {item.shape} are neither audio (1-D) nor images (H,W[,C])", "sniff")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(item), f"<bytes #{index}>", limits)
    if isinstance(item, os.PathLike):
        return _from_path(Path(item), limits)
    if isinstance(item, str):
        if modality == "text":
            return _text(item, index, limits)
        if item.startswith(("http://", "https://")):
            return _from_bytes(fetch_url(item, limits), item, limits)
        if _could_be_path(item) and os.path.exists(item):
            return _from_path(Path(item), limits)
        if modality not in (None, "text") or _names_a_file(item):
            raise MediaError(item, "no such file", "fetch")
        return _text(item, index, limits)
    raise MediaError(f"<item #{index}>", f"unsupported input type {type(item).__name__}", "sniff")


MEDIA_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif", ".wav",
                  ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".m4v", ".mov", ".mkv", ".webm",
                  ".avi", ".ts", ".txt", ".md", ".pdf", ".csv", ".npy"}


def _names_a_file(s: str) -> bool:
    """A one-word string ending in a media suffix is a mistyped path, not a text to embed ("cats/tabby.jpg")."""
    return not any(c.isspace() for c in s) and os.path.splitext(s)[1].lower() in MEDIA_SUFFIXES


def _could_be_path(s: str) -> bool:
    return 0 < len(s) < 4096 and "\n" not in s and "\x00" not in s


def _text(s: str, index: int, limits: Limits) -> Media:
    if len(s) > limits.max_text_chars:
        raise MediaError(f"<text #{index}>", f"{len(s)} characters exceed the limit of {limits.max_text_chars}", "limits")
    return Media(name=f"<text #{index}>", modality="text", mime="text/plain", text=s)


def _from_path(path: Path, limits: Limits) -> Media:
    name = str(path)
    try:
        if not path.is_file():
            raise MediaError(name, "no such file" if not path.exists() else "not a regular file", "fetch")
        size = path.stat().st_size
        if size == 0:
            raise MediaError(name, "file is empty", "sniff")
        if size > limits.max_bytes:
            raise MediaError(name, f"{size} bytes exceed the limit of {limits.max_bytes}", "limits")
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES * 4)
    except OSError as e:
        raise MediaError(name, f"cannot read: {e.strerror or e}", "fetch") from e
    kind = sniff(head)
    if kind is None:
        raise MediaError(name, "unrecognised format (content matches no supported image, audio, video or text type)", "sniff")
    media = Media(name=name, modality=kind[0], mime=kind[1], path=path)
    if media.modality == "text":
        media.text = _read_text(name, path.read_bytes(), limits)
    return media


def _from_bytes(data: bytes, name: str, limits: Limits) -> Media:
    if not data:
        raise MediaError(name, "content is empty", "sniff")
    if len(data) > limits.max_bytes:
        raise MediaError(name, f"{len(data)} bytes exceed the limit of {limits.max_bytes}", "limits")
    kind = sniff(data[: HEAD_BYTES * 4])
    if kind is None:
        raise MediaError(name, "unrecognised format (content matches no supported image, audio, video or text type)", "sniff")
    media = Media(name=name, modality=kind[0], mime=kind[1], data=data)
    if media.modality == "text":
        media.text = _read_text(name, data, limits)
    return media


def _read_text(name: str, data: bytes, limits: Limits) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MediaError(name, f"text is not valid UTF-8 at byte {e.start}", "decode") from e
    if len(text) > limits.max_text_chars:
        raise MediaError(name, f"{len(text)} characters exceed the limit of {limits.max_text_chars}", "limits")
    return text


def fetch_url(url: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Download with a timeout and a size cap; the cap is enforced while streaming, not trusted from headers."""
    cap = min(limits.url_max_bytes, limits.max_bytes)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "omnivec"}), timeout=limits.url_timeout) as r:
            declared = r.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise MediaError(url, f"declared size {declared} bytes exceeds the limit of {cap}", "limits")
            chunks, total = [], 0
            while chunk := r.read(1 << 16):
                total += len(chunk)
                if total > cap:
                    raise MediaError(url, f"download exceeds the limit of {cap} bytes", "limits")
                chunks.append(chunk)
    except MediaError:
        raise
    except Exception as e:  # urllib raises a zoo of types: URLError, HTTPError, timeouts, ssl errors
        raise MediaError(url, f"download failed: {e}", "fetch") from e
    return b"".join(chunks)
