"""Video decoding with PyAV: frames sampled at a fixed rate, blank frames dropped, and the sound track."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import MediaError
from .limits import DEFAULT_LIMITS, Limits
from .source import Media

# Thresholds on a 32x32 grey thumbnail (0..255). Black frames (fades, gaps between scenes) carry no content, and two
# videos that merely start black must not look alike, so they are skipped. A frame of one colour is content (a red
# screen, a sky, a solid-colour clip), and so is a dark frame with something in it: only dark AND flat is black.
BLACK_MEAN = 16.0
FLAT_STD = 4.0
# Past this gap between samples, seeking to the keyframe before the next sample beats decoding everything between.
SEEK_GAP_SECONDS = 2.0


@dataclass
class Frame:
    time: float
    image: Image.Image


def is_blank(gray: np.ndarray) -> bool:
    """A black frame: dark and flat."""
    return float(gray.mean()) < BLACK_MEAN and float(gray.std()) < FLAT_STD


def video_duration(media: Media) -> float:
    import av

    try:
        with media.open() as f, av.open(f) as c:
            if c.duration:
                return c.duration / 1_000_000
            s = c.streams.video[0]
            return float(s.duration * s.time_base) if s.duration else 0.0
    except Exception as e:
        raise MediaError(media.name, f"cannot read video: {e}", "decode") from e


def sample_frames(media: Media, fps: float, limits: Limits = DEFAULT_LIMITS, min_size: int = 224,
                  skip_blank: bool = True) -> Iterator[Frame]:
    """Yield one frame per 1/fps seconds (the first frame at or after each sample time), scaled down so the
    short side is about `min_size` (never up). Black frames are skipped, but a video that is black throughout
    still yields its first sampled frame: it is content too (and gets a vector). Raises MediaError when no frame
    can be decoded."""
    import av

    step = 1.0 / fps
    yielded = decoded = 0
    first_black: Frame | None = None
    try:
        with media.open() as f, av.open(f) as container:
            if not container.streams.video:
                raise MediaError(media.name, "no video stream", "decode")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = float(stream.time_base)
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            duration = container.duration / 1_000_000 if container.duration else None
            if duration and duration > limits.max_video_seconds:
                raise MediaError(media.name, f"{duration:.0f} s of video exceed the limit of "
                                 f"{limits.max_video_seconds:.0f} s", "limits")
            w, h = stream.codec_context.width, stream.codec_context.height
            if w * h > limits.max_pixels:
                raise MediaError(media.name, f"frame size {w}x{h} exceeds the pixel limit", "limits")
            next_t, last_t = 0.0, 0.0
            while True:
                if next_t - last_t >= SEEK_GAP_SECONDS:
                    container.seek(int((next_t + start) / tb), stream=stream, backward=True, any_frame=False)
                took = False
                for frame in _decode(container, stream):
                    if frame.pts is None:
                        continue
                    t = frame.pts * tb - start
                    last_t = t
                    decoded += 1
                    if t > limits.max_video_seconds:
                        raise MediaError(media.name, f"video longer than the limit of {limits.max_video_seconds:.0f} s", "limits")
                    if t + 1e-6 < next_t:
                        continue
                    took = True
                    sample_t = next_t
                    while next_t <= t + 1e-6:
                        next_t += step
                    if skip_blank and is_blank(frame.to_ndarray(format="gray", width=32, height=32)):
                        if first_black is None:
                            first_black = Frame(time=round(max(t, sample_t), 6), image=_scaled(frame, min_size))
                        if next_t - t >= SEEK_GAP_SECONDS:
                            break
                        continue
                    yielded += 1
                    yield Frame(time=round(max(t, sample_t), 6), image=_scaled(frame, min_size))
                    if next_t - t >= SEEK_GAP_SECONDS:
                        break  # seek to the next sample instead of decoding the frames between
                else:
                    break  # end of stream
                if not took:
                    break
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(media.name, f"cannot decode video: {e}", "decode") from e
    if decoded == 0:
        raise MediaError(media.name, "video has no decodable frames", "decode")
    if yielded == 0:
        if first_black is None:
            raise MediaError(media.name, "video has no frame at any sample time", "decode")
        yield first_black


def _decode(container, stream):
    """container.decode(stream), minus the empty packets that mean "show the previous frame again" (Theora writes
    one per unchanged frame): FFmpeg's decoders reject them with EINVAL. The final flush packet (no pts) still goes in."""
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is not None:
            continue
        yield from packet.decode()


def _scaled(frame, min_size: int) -> Image.Image:
    w, h = frame.width, frame.height
    s = min_size / min(w, h)
    if s >= 1:
        return frame.to_image()
    return frame.to_image(width=max(1, round(w * s)), height=max(1, round(h * s)), interpolation="AREA")
