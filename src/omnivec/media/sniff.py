"""Modality and MIME type from the first bytes of content (magic numbers), not from the name."""
from __future__ import annotations

HEAD_BYTES = 64

_MP4_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A "}


def sniff(head: bytes) -> tuple[str, str] | None:
    """Return (modality, mime) for the leading bytes of a file, or None when unrecognised."""
    h = head
    if h.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "image/gif"
    if h[:4] == b"RIFF" and h[8:12] == b"WEBP":
        return "image", "image/webp"
    if h[:2] == b"BM" and len(h) >= 26:
        return "image", "image/bmp"
    if h[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "image/tiff"
    if h[:4] == b"RIFF" and h[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if h[:4] == b"fLaC":
        return "audio", "audio/flac"
    if h[:4] == b"OggS":
        # Ogg can carry Theora video; the codec name sits in the first page.
        return ("video", "video/ogg") if b"theora" in h else ("audio", "audio/ogg")
    if h[:3] == b"ID3" or (len(h) > 1 and h[0] == 0xFF and (h[1] & 0xE0) == 0xE0 and (h[1] & 0x06) != 0):
        return "audio", "audio/mpeg"
    if h[4:8] == b"ftyp":
        if h[8:12] in _MP4_AUDIO_BRANDS:
            return "audio", "audio/mp4"
        if h[8:12] in (b"qt  ",):
            return "video", "video/quicktime"
        if h[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
            return "image", "image/" + ("avif" if h[8:11] == b"avi" else "heic")
        return "video", "video/mp4"
    if h[:4] == b"\x1aE\xdf\xa3":
        return "video", ("video/webm" if b"webm" in h else "video/x-matroska")
    if h[:4] == b"RIFF" and h[8:12] == b"AVI ":
        return "video", "video/x-msvideo"
    if len(h) > 188 and h[0] == 0x47 and h[188] == 0x47:
        return "video", "video/mp2t"
    if h[:4] == b"%PDF":
        return "document", "application/pdf"
    if _looks_like_text(h):
        return "text", "text/plain"
    return None


def _looks_like_text(h: bytes) -> bool:
    if not h or b"\x00" in h:
        return False
    try:
        h.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        return e.start >= len(h) - 3
    return True
