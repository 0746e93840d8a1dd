"""Size and time limits applied to every input before and while it is decoded."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 2 * 1024**3          # any single file or download
    max_pixels: int = 89_478_485          # decompression-bomb guard from the header, before decoding (PIL's default)
    max_audio_seconds: float = 4 * 3600
    max_video_seconds: float = 4 * 3600
    max_text_chars: int = 5_000_000
    url_timeout: float = 10.0             # seconds, connect and each read
    url_max_bytes: int = 200 * 1024**2


DEFAULT_LIMITS = Limits()
