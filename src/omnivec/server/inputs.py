"""Turning what a request carries (text, base64, data URIs, uploads, URLs when allowed) into query inputs.

A string from a request is never read as a server path: `omnivec.media.to_media` would open an existing file
named by a string, which from a client means reading any file the server can read."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re

from ..errors import MediaError
from ..media import fetch_url, load_audio, load_image, to_media, video_duration
from .config import ServerConfig
from .embedder import QueryInput

DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(;[\w.+-]+=[\w.+-]+)*;base64,", re.I)
MODALITIES = ("text", "image", "audio", "video")


class InputError(ValueError):
    """A request's input is malformed (not a decodable payload at all); answered with HTTP 400."""


def decode_payload(value: str, name: str, config: ServerConfig) -> bytes:
    """Bytes from a data URI, base64 text, or (only when the config allows it) an http(s) URL."""
    value = value.strip()
    if value.startswith(("http://", "https://")):
        if not config.allow_url_fetch:
            raise InputError(f"{name}: the server does not fetch URLs (a request could make it reach internal "
                             f"addresses); send the content as base64 or a data URI, or start the server with "
                             f"--allow-urls")
        return fetch_url(value, config.media_limits)
    m = DATA_URI.match(value)
    body = value[m.end():] if m else value
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name}: not a data URI, base64 content or URL") from None


def media_input(data: bytes, name: str, config: ServerConfig, space, declared: str | None = None) -> QueryInput:
    """A query input from raw bytes: its modality sniffed from the content (and checked against `declared`),
    decoded lazily under the server's media limits."""
    limits = config.media_limits
    try:
        media = to_media(data, limits=limits)
    except MediaError as e:
        raise MediaError(name, e.cause, e.stage) from None  # name the request's input, not "<bytes #0>"
    media.name = name
    modality = media.modality
    if declared and declared != modality:
        raise MediaError(name, f"expected {declared}, but the content is {modality} ({media.mime})", "sniff")
    space.require(modality)
    digest = hashlib.sha256(modality.encode() + b"\0" + data).hexdigest()
    if modality == "text":
        return QueryInput.text(media.text or "", name)
    if modality == "image":
        size = space.backend.image_size if space.config.image.reduced_decode else None
        return QueryInput("image", digest, lambda: load_image(media, limits, min_size=size), name)
    if modality == "audio":
        sr = space.backend.sample_rate
        return QueryInput("audio", digest, lambda: (load_audio(media, sr, limits), sr), name)

    def video():
        seconds = video_duration(media)
        if seconds > limits.max_video_seconds:
            raise MediaError(name, f"{seconds:.0f} s of video exceed the server's query limit of "
                             f"{limits.max_video_seconds:.0f} s", "limits")
        return data

    return QueryInput("video", digest, video, name)


def parse_part(part: dict, name: str, config: ServerConfig, space) -> QueryInput:
    """One query part: {"text": ...} or {"image"|"audio"|"video": base64 / data URI / URL}; `name` says where it
    was in the request, for error messages."""
    if not isinstance(part, dict) or len(part) != 1 or next(iter(part)) not in MODALITIES:
        raise InputError(f"{name}: expected an object with one key of {', '.join(MODALITIES)}")
    modality, value = next(iter(part.items()))
    if not isinstance(value, str):
        raise InputError(f"{name}.{modality}: expected a string")
    if modality == "text":
        if len(value) > config.media_limits.max_text_chars:
            raise MediaError(name, f"{len(value)} characters exceed the limit", "limits")
        space.require("text")
        return QueryInput.text(value, name)
    return media_input(decode_payload(value, name, config), name, config, space, declared=modality)
