"""Image decoding: bomb check from the header, reduced-size decode, EXIF orientation, alpha flattening."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from ..errors import MediaError
from .limits import DEFAULT_LIMITS, Limits
from .source import Media



def load_image(media: Media, limits: Limits = DEFAULT_LIMITS, min_size: int | None = None) -> Image.Image:
    """Decode to an RGB PIL image.

    `min_size`: the smallest side the consumer needs. JPEGs much larger than that are decoded at 1/2, 1/4 or 1/8
    scale by libjpeg (DCT scaling), which costs a fraction of a full decode and keeps every side >= min_size. Any
    image still 4x min_size or more on its short side (PNG, WebP, TIFF, arrays) is then box-reduced (`shrink`).
    """
    if media.obj is not None:
        im = _from_object(media, limits)
        media.meta.update(width=im.width, height=im.height)  # the record describes the input, not the reduction
        return shrink(im, min_size)
    try:
        with media.open() as fh:
            im = Image.open(fh)
            _check_pixels(media.name, im.size, limits)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated GIF/WebP/TIFF: the first frame stands for the image
            w, h = im.size  # the stored size, upright (records describe the file, not the reduced decode)
            media.meta.update(width=h, height=w) if _orientation(im) in (5, 6, 7, 8) else media.meta.update(width=w, height=h)
            if min_size and im.format == "JPEG":
                im.draft("RGB", _draft_request(im.size, min_size, _orientation(im)))
            im.load()
            media.meta.update(exif_fields(im))
            im = ImageOps.exif_transpose(im)
        return shrink(_to_rgb(im), min_size)
    except MediaError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own guard fires in open() above twice its limit
        raise MediaError(media.name, f"decompression bomb rejected: {e}", "limits") from e
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, struct.error on broken files
        raise MediaError(media.name, f"cannot decode image: {e}", "decode") from e


def shrink(im: Image.Image, min_size: int | None) -> Image.Image:
    """Average k x k blocks (`Image.reduce`, the largest whole k that keeps the short side >= 2 x min_size).
    The processor's antialiased resize of a 12 MP image costs 84-270 ms of CPU, the reduction ~20 ms; the processor
    still does the final resize, from at least twice its output size, so the model's input moves by under 1/255 on
    average (docs/benchmarks.md). Formats other than JPEG have no reduced-size decode, so this is where they save."""
    k = min(im.size) // (2 * min_size) if min_size else 0
    return im.reduce(k) if k >= 2 else im


def exif_fields(im: Image.Image) -> dict:
    """When and where a photo was taken, from EXIF: taken_at (ISO 8601 text), lat, lon (degrees). Absent keys
    are left out; malformed EXIF is ignored rather than failing the image."""
    out: dict = {}
    try:
        exif = im.getexif()
        stamp = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
        if isinstance(stamp, str) and len(stamp) >= 19 and stamp[4] == ":":
            out["taken_at"] = f"{stamp[:4]}-{stamp[5:7]}-{stamp[8:10]}T{stamp[11:19]}"
        gps = exif.get_ifd(0x8825)
        if gps and 2 in gps and 4 in gps:
            lat, lon = _degrees(gps[2]), _degrees(gps[4])
            out["lat"] = -lat if gps.get(1) == "S" else lat
            out["lon"] = -lon if gps.get(3) == "W" else lon
    except Exception:
        pass
    return out


def _degrees(dms) -> float:
    d, m, s = (float(x) for x in dms)
    return round(d + m / 60 + s / 3600, 7)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _draft_request(size: tuple[int, int], min_size: int, orientation: int) -> tuple[int, int]:
    # draft() keeps each side >= the request; ask for min_size on the short side so the model still gets a full crop.
    w, h = size
    scale = min_size / min(w, h)
    return (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999)))


def _check_pixels(name: str, size: tuple[int, int], limits: Limits) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise MediaError(name, f"invalid image size {w}x{h}", "decode")
    if w * h > limits.max_pixels:
        raise MediaError(name, f"decompression bomb rejected: {w}x{h} = {w * h} pixels exceeds the limit of "
                         f"{limits.max_pixels}", "limits")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Flatten onto white: transparent pixels carry arbitrary colours that would otherwise leak into the vector.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.astype(np.uint8), "L")
    return im.convert("RGB")


def _from_object(media: Media, limits: Limits) -> Image.Image:
    obj = media.obj
    if isinstance(obj, Image.Image):
        _check_pixels(media.name, obj.size, limits)
        return _to_rgb(obj)
    arr = np.asarray(obj)
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):
        raise MediaError(media.name, f"image array must be HxW, HxWx1, HxWx3 or HxWx4, got {arr.shape}", "decode")
    _check_pixels(media.name, (arr.shape[1], arr.shape[0]), limits)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise MediaError(media.name, f"image arrays must be uint8 or float in [0, 1], got {arr.dtype}", "decode")
        if not np.isfinite(arr).all():
            raise MediaError(media.name, "image array contains NaN or infinity", "decode")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return _to_rgb(Image.fromarray(arr))
