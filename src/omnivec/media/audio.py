"""Audio decoding to mono float32 at the model's sample rate (soundfile first, PyAV for what libsndfile lacks)."""
from __future__ import annotations

import numpy as np

from ..errors import MediaError
from .limits import DEFAULT_LIMITS, Limits
from .source import Media


def load_audio(media: Media, sample_rate: int, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode, mix down to mono and resample to `sample_rate`. Returns float32 samples in [-1, 1]."""
    if media.obj is not None:
        wave, sr = _from_array(media, sample_rate)
    else:
        wave, sr = _decode(media, limits)
    if wave.size == 0:
        raise MediaError(media.name, "audio has no samples", "decode")
    if not np.isfinite(wave).all():
        raise MediaError(media.name, "audio contains NaN or infinite samples", "decode")
    if wave.shape[0] / sr > limits.max_audio_seconds:
        raise MediaError(media.name, f"{wave.shape[0] / sr:.0f} s of audio exceed the limit of "
                         f"{limits.max_audio_seconds:.0f} s", "limits")
    return resample(wave, sr, sample_rate)


def resample(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr  # deterministic, high-quality polyphase resampling

    return np.ascontiguousarray(soxr.resample(wave.astype(np.float32), sr, target, quality="HQ"), dtype=np.float32)


def _from_array(media: Media, default_sr: int) -> tuple[np.ndarray, int]:
    arr = np.asarray(media.obj)
    if arr.ndim not in (1, 2):
        raise MediaError(media.name, f"audio arrays must be 1-D or (samples, channels), got shape {arr.shape}", "decode")
    if not np.issubdtype(arr.dtype, np.floating):
        if not np.issubdtype(arr.dtype, np.integer):
            raise MediaError(media.name, f"audio arrays must be float or integer PCM, got {arr.dtype}", "decode")
        # Full scale is 2**(bits-1), as libsndfile reads PCM files: an int16 array and the same samples in a
        # 16-bit WAV give the same floats. Unsigned PCM (8-bit WAV) is centred on 2**(bits-1).
        info = np.iinfo(arr.dtype)
        half = float(-info.min) if info.min < 0 else float(info.max // 2 + 1)
        arr = ((arr.astype(np.float64) - (0.0 if info.min < 0 else half)) / half).astype(np.float32)
    if arr.ndim == 2:  # (samples, channels) as soundfile returns it, or (channels, samples) as torchaudio does
        arr = arr.mean(axis=1 if arr.shape[1] <= arr.shape[0] else 0)
    return arr.astype(np.float32), int(media.sample_rate or default_sr)


def _decode(media: Media, limits: Limits) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with media.open() as f:
            info = sf.info(f)
            if info.frames / max(info.samplerate, 1) > limits.max_audio_seconds:
                raise MediaError(media.name, f"{info.frames / info.samplerate:.0f} s of audio exceed the limit of "
                                 f"{limits.max_audio_seconds:.0f} s", "limits")
            f.seek(0)
            wave, sr = sf.read(f, dtype="float32", always_2d=True)
        return wave.mean(axis=1), int(sr)
    except MediaError:
        raise
    except Exception as sf_error:  # libsndfile cannot read this container/codec: let FFmpeg (PyAV) try
        try:
            return decode_audio_stream(media, limits)
        except MediaError as av_error:
            if av_error.stage != "decode":
                raise  # e.g. a limits error stays a limits error
            cause = av_error.cause.removeprefix("cannot decode audio: ")
            raise MediaError(media.name, f"cannot decode audio: {cause} (soundfile: {sf_error})", "decode") from None


def decode_audio_stream(media: Media, limits: Limits, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any FFmpeg-readable container (also the sound track of a video)."""
    import av

    cap = limits.max_audio_seconds if max_seconds is None else max_seconds
    try:
        with media.open() as f, av.open(f) as container:
            if not container.streams.audio:
                raise MediaError(media.name, "no audio stream", "decode")
            stream = container.streams.audio[0]
            sr = stream.rate or stream.codec_context.sample_rate
            # Planar float in the stream's own layout; channels are averaged below, as for files soundfile reads
            # (FFmpeg's own stereo->mono matrix sums at -3 dB, which would make the same sound louder here).
            resampler = av.AudioResampler(format="fltp", rate=sr)
            chunks, total = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().mean(axis=0, dtype=np.float32)
                    chunks.append(chunk)
                    total += chunk.size
                if total / sr > cap:
                    raise MediaError(media.name, f"audio longer than the limit of {cap:.0f} s", "limits")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(media.name, f"cannot decode audio: {e}", "decode") from e
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return wave, int(sr)
