"""Sensor inputs: depth and thermal maps (single-channel images) and IMU recordings (six-channel time series).

Their files look like ordinary content (a depth map is a PNG, an IMU log is a CSV), so content sniffing cannot
tell them apart: the caller says what they are, with `modality="depth"|"thermal"|"imu"` or
`space.embed_depth(...)`, `embed_thermal(...)`, `embed_imu(...)`. Nothing here is ever chosen automatically.

Depth/thermal: 8- or 16-bit single-channel PNG/TIFF (or any image, converted to luminance), float TIFF, a 2-D
numpy array, or a PIL image. Values come back as float32 scaled to [0, 1] by the bit depth (8-bit / 255,
16-bit / 65535); float data is kept as it is.
IMU: a CSV with six numeric columns (accelerometer x/y/z, gyroscope x/y/z; an optional header row; extra columns
such as a leading timestamp are refused, not guessed), a .npy file, or a numpy array, shaped (samples, 6) or (6, samples).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MediaError
from .limits import DEFAULT_LIMITS, Limits
from .source import Media
from .sniff import sniff

SENSOR_MODALITIES = ("depth", "thermal", "imu")
IMU_CHANNELS = 6
_NPY_MAGIC = b"\x93NUMPY"


def to_sensor_media(item: Any, index: int, modality: str, limits: Limits = DEFAULT_LIMITS) -> Media:
    """Identify one sensor input the caller declared as `modality` (depth, thermal or imu)."""
    from PIL import Image

    if modality not in SENSOR_MODALITIES:
        raise ValueError(f"not a sensor modality: {modality!r}")
    name = f"<{modality} #{index}>"
    if isinstance(item, Media):
        return item
    if isinstance(item, (Image.Image, np.ndarray)):
        return Media(name=name, modality=modality, mime="application/x-array", obj=item)
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        name = str(path)
        try:
            if not path.is_file():
                raise MediaError(name, "no such file" if not path.exists() else "not a regular file", "fetch")
            size = path.stat().st_size
            if size > limits.max_bytes:
                raise MediaError(name, f"{size} bytes exceed the limit of {limits.max_bytes}", "limits")
            data = path.read_bytes()
        except OSError as e:
            raise MediaError(name, f"cannot read: {e.strerror or e}", "fetch") from e
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if len(data) > limits.max_bytes:
            raise MediaError(name, f"{len(data)} bytes exceed the limit of {limits.max_bytes}", "limits")
    else:
        raise MediaError(name, f"unsupported input type {type(item).__name__} for {modality}", "sniff")
    if not data:
        raise MediaError(name, "file is empty", "sniff")
    return Media(name=name, modality=modality, mime=_sensor_mime(name, data, modality), data=data)


def _sensor_mime(name: str, data: bytes, modality: str) -> str:
    if modality == "imu":
        if data.startswith(_NPY_MAGIC):
            return "application/x-npy"
        kind = sniff(data[:256])
        if kind and kind[0] == "text":
            return "text/csv"
        raise MediaError(name, "IMU data must be a CSV file or a .npy array", "sniff")
    kind = sniff(data[:256])
    if not kind or kind[0] != "image":
        raise MediaError(name, f"a {modality} map must be an image file (PNG or TIFF, 8 or 16 bit)", "sniff")
    return kind[1]


# ---- depth and thermal ------------------------------------------------------------------------------------------
def load_single_channel(media: Media, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """A (H, W) float32 map. Integer data is scaled to [0, 1] by its bit depth; RGB images become luminance."""
    from PIL import Image

    if isinstance(media.obj, np.ndarray):
        arr = media.obj
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise MediaError(media.name, f"a {media.modality} map must be 2-D (H, W), got shape {arr.shape}", "decode")
        return _scaled_map(media.name, arr)
    try:
        if isinstance(media.obj, Image.Image):
            im = media.obj
        else:
            im = Image.open(io.BytesIO(media.data))
            w, h = im.size
            if w * h > limits.max_pixels:
                raise MediaError(media.name, f"{w}x{h} pixels exceed the limit of {limits.max_pixels}", "limits")
            im.load()
        if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
            im = im.convert("L")  # a colour rendering of a map: its luminance is the best single channel there is
        arr = np.asarray(im)
    except MediaError:
        raise
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError on broken files
        raise MediaError(media.name, f"cannot decode {media.modality} map: {e}", "decode") from e
    if im.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # PIL opens 16-bit PNGs as 32-bit "I": their range is still 16-bit
    return _scaled_map(media.name, arr)


def _scaled_map(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif arr.dtype == bool:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
    else:
        raise MediaError(name, f"unsupported map data type {arr.dtype} (use uint8, uint16 or float)", "decode")
    if not np.isfinite(out).all():
        raise MediaError(name, "map holds NaN or infinite values", "decode")
    if min(out.shape) < 1:
        raise MediaError(name, f"map is empty (shape {out.shape})", "decode")
    return out


# ---- IMU ---------------------------------------------------------------------------------------------------------
def load_imu(media: Media) -> np.ndarray:
    """A (6, samples) float32 array: accelerometer x/y/z then gyroscope x/y/z, in the units recorded."""
    if isinstance(media.obj, np.ndarray):
        arr = media.obj
    elif media.mime == "application/x-npy":
        try:
            arr = np.load(io.BytesIO(media.data), allow_pickle=False)  # never unpickle what a user hands in
        except Exception as e:
            raise MediaError(media.name, f"cannot read .npy: {e}", "decode") from e
    elif media.data is not None:
        arr = _read_csv(media.name, media.data)
    else:
        raise MediaError(media.name, f"IMU data must be an array, a CSV file or a .npy file, got {media.mime}", "sniff")
    return _channels_first(media.name, arr)


def _read_csv(name: str, data: bytes) -> np.ndarray:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MediaError(name, f"CSV is not valid UTF-8 at byte {e.start}", "decode") from e
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and not _is_numeric_row(lines[0]):
        lines = lines[1:]  # a header row
    rows = []
    for n, ln in enumerate(lines, 1):
        try:
            rows.append([float(x) for x in ln.replace(";", ",").split(",")])
        except ValueError:
            raise MediaError(name, f"CSV row {n} is not numeric: {ln[:60]!r}", "decode") from None
    if not rows:
        raise MediaError(name, "CSV holds no samples", "decode")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise MediaError(name, f"CSV rows have different numbers of columns ({sorted(widths)})", "decode")
    return np.asarray(rows, np.float32)


def _is_numeric_row(line: str) -> bool:
    try:
        [float(x) for x in line.replace(";", ",").split(",")]
    except ValueError:
        return False
    return True


def _channels_first(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 2 or IMU_CHANNELS not in arr.shape:
        raise MediaError(name, f"IMU data must have {IMU_CHANNELS} channels (accel x/y/z, gyro x/y/z) as "
                         f"(samples, 6) or (6, samples); got shape {arr.shape}", "decode")
    if not np.issubdtype(arr.dtype, np.number):
        raise MediaError(name, f"IMU data must be numeric, got {arr.dtype}", "decode")
    out = arr.T if arr.shape[1] == IMU_CHANNELS and arr.shape[0] != IMU_CHANNELS else arr
    out = np.ascontiguousarray(out, dtype=np.float32)
    if not np.isfinite(out).all():
        raise MediaError(name, "IMU data holds NaN or infinite values", "decode")
    return out
