"""A Space embeds inputs of the modalities it covers into one vector space.

`space.embed([...])` is the common case: mixed inputs in, one unit vector per input out. `embed_items` returns
`Embedding` records (segments, info, provenance) and can hand back per-item errors instead of raising."""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import MediaError, ModalityError, UncoveredModalityError
from ..progress import ProgressBar
from ..media import DEFAULT_LIMITS, Limits, Media, decode_audio_stream, load_audio, load_image, sample_frames, to_media
from ..media.sensors import SENSOR_MODALITIES, load_imu, load_single_channel, to_sensor_media
from .config import SpaceConfig
from .pipeline import Batcher, Pending, pooled, prefetch, threaded
from .pooling import pool, text_windows, time_windows
from .prompts import DEFAULT_TEMPLATES, expand
from .types import Embedding, Segment

if TYPE_CHECKING:  # torch is imported with the first backend, not with the package
    from .backends.base import Backend

Result = Embedding | MediaError
# Sensor modalities are never detected from content (a depth map is a PNG): callers name them (see embed_depth).
ALL_MODALITIES = ("text", "image", "audio", "video") + SENSOR_MODALITIES


def default_workers(device: str) -> int:
    """Decode threads. On the CPU the model needs the cores too, so a few threads keep it fed; with a GPU doing the
    model, decoding is the whole CPU's job and gets every core (up to 16)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return min(16, cores) if str(device).split(":")[0] == "cuda" else min(4, cores)


class Space:
    def __init__(self, config: SpaceConfig, backend: Backend, version: str, *, audio_space: "Space | None" = None,
                 limits: Limits = DEFAULT_LIMITS, workers: int | None = None, batch_size: int = 32):
        self.config, self.backend, self.version = config, backend, version
        self.name = config.name
        self.source = config.name  # what load_space needs to load this space again (the factory sets a folder's path)
        self.model = backend.model_id
        self.dim = backend.dim
        self.modalities = tuple(m for m in ALL_MODALITIES if m in backend.modalities)
        self.audio_space = audio_space
        self.limits = limits
        self.workers = workers or default_workers(getattr(backend, "device", "cpu"))
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"Space({self.name!r}, model={self.model!r}, dim={self.dim}, modalities={self.modalities})"

    # ---- the common case --------------------------------------------------------------------------------------
    def embed(self, items: Iterable[Any] | Any, *, modality: str | None = None, progress: bool = False) -> np.ndarray:
        """One unit vector per input, shape (n, dim). Modality is detected per item; bad inputs raise MediaError."""
        results = self.embed_items(items, modality=modality, on_error="raise", progress=progress)
        return self._stack(results)

    def embed_text(self, texts: Iterable[str] | str) -> np.ndarray:
        return self.embed(texts, modality="text")

    def embed_image(self, images: Iterable[Any] | Any) -> np.ndarray:
        return self.embed(images, modality="image")

    def embed_audio(self, clips: Iterable[Any] | Any) -> np.ndarray:
        return self.embed(clips, modality="audio")

    def embed_video(self, videos: Iterable[Any] | Any) -> np.ndarray:
        return self.embed(videos, modality="video")

    def embed_depth(self, maps: Iterable[Any] | Any) -> np.ndarray:
        """Depth maps: single-channel PNG/TIFF (8/16-bit), 2-D arrays or PIL images. A depth PNG looks like any
        other image, so depth is only ever taken when asked for: here, or with embed(..., modality="depth")."""
        return self.embed(maps, modality="depth")

    def embed_thermal(self, maps: Iterable[Any] | Any) -> np.ndarray:
        """Thermal images: single-channel PNG/TIFF (8/16-bit), 2-D arrays or PIL images (or modality="thermal")."""
        return self.embed(maps, modality="thermal")

    def embed_imu(self, series: Iterable[Any] | Any) -> np.ndarray:
        """IMU recordings: CSV or .npy files, or arrays, of six channels (accel x/y/z, gyro x/y/z) as (samples, 6)
        or (6, samples) (or modality="imu"). A single array is one recording; pass a list for several."""
        return self.embed(series, modality="imu")

    def embed_labels(self, labels: Sequence[str | Sequence[str]], templates: Sequence[str] | None = None) -> np.ndarray:
        """One vector per label: the re-normalised mean over its descriptions x prompt templates (CLIP's ensembling).
        A label may be a string or a list of descriptions."""
        templates = tuple(templates) if templates is not None else DEFAULT_TEMPLATES
        prompts, owners = [], []
        for i, label in enumerate(labels):
            for desc in ([label] if isinstance(label, str) else label):
                for p in expand(desc, templates):
                    prompts.append(p)
                    owners.append(i)
        vecs = self.embed_text(prompts)
        owners_arr = np.asarray(owners)
        return np.stack([pool(vecs[owners_arr == i]) for i in range(len(labels))]) if len(labels) else self._stack([])

    # ---- records with provenance, segments and per-item errors ---------------------------------------------
    def embed_items(self, items: Iterable[Any] | Any, *, modality: str | None = None, on_error: str = "raise",
                    progress: bool = False) -> list[Result]:
        """Embedding records in input order. on_error="return" puts a MediaError in place of each failed item."""
        items = self._as_list(items)
        out: list[Result | None] = [None] * len(items)
        bar = ProgressBar("embedding", len(items), transient=True) if progress else None
        for i, res in self.iter_embed(items, modality=modality):
            if isinstance(res, MediaError) and on_error == "raise":
                raise res
            out[i] = res
            if bar:
                bar.advance()
        if bar:
            bar.close()
        return out  # type: ignore[return-value]

    def _in_precision(self, encode):
        """`encode` run under the space's precision (autocast is per thread, so it is entered at each call)."""
        precision, device = self.config.precision, getattr(self.backend, "device", "cpu")
        if precision == "fp32":
            return encode
        from .backends.base import precision_context  # torch is imported only once a model runs

        def run(*args):
            with precision_context(precision, device):
                return encode(*args)
        return run

    def iter_embed(self, items: Iterable[Any], *, modality: str | None = None) -> Iterator[tuple[int, Result]]:
        """Stream (index, Embedding | MediaError) as inputs finish; order follows completion, not input order."""
        import torch

        if modality is not None:
            self.require(modality)
        b, run = self.batch_size, self._in_precision
        batchers = {"text": Batcher(run(self.backend.encode_text), max(b, 64)),
                    "image": Batcher(run(lambda xs: self.backend.encode_images(torch.stack(xs))), b),
                    "audio": Batcher(run(self.backend.encode_audio), max(1, b // 4))}
        clip_frames = getattr(self.backend, "video_clip_frames", 1)  # ImageBind: a video is a run of short clips
        if clip_frames > 1:
            batchers["clip"] = Batcher(run(lambda xs: self.backend.encode_images(torch.stack(xs))),
                                       max(1, b // clip_frames))
        for m in SENSOR_MODALITIES:
            if m in self.modalities:
                batchers[m] = Batcher(run(lambda xs, m=m: self.backend.encode_sensor(m, xs)), b)
        live: dict[int, Pending] = {}

        def drain(indexes: set[int]) -> Iterator[tuple[int, Result]]:
            for i in sorted(indexes):
                p = live.get(i)
                if p is not None and p.complete:
                    del live[i]
                    yield i, self._finish(p)

        def feed(kind: str, p: Pending, part: int, payload: Any) -> Iterator[tuple[int, Result]]:
            if batchers[kind].add(p, part, payload):
                yield from drain(batchers[kind].flush())

        work = enumerate(items)
        prepared = prefetch(lambda ix: self._prepare(ix[0], ix[1], modality), work, self.workers,
                            depth=2 * b + 2 * self.workers)
        for i, prep in enumerate(prepared):
            if isinstance(prep, MediaError):
                yield i, prep
                continue
            if isinstance(prep, Exception):
                yield i, MediaError(f"<item #{i}>", f"{type(prep).__name__}: {prep}", "decode")
                continue
            p, parts = prep
            live[i] = p
            kind = ("clip" if clip_frames > 1 else "image") if p.modality == "video" else p.modality
            n = 0
            try:
                for n, payload in enumerate(parts, 1):
                    if p.modality == "video":
                        t, payload = payload
                        p.spans.append((t, t))
                    yield from feed(kind, p, n - 1, payload)
            except MediaError as e:
                p.error = p.error or e
            except Exception as e:  # noqa: BLE001 - an unexpected decoder failure is still one item's failure
                p.fail("decode", f"{type(e).__name__}: {e}")
            p.n_parts = n
            yield from drain({i})
        for batcher in batchers.values():
            yield from drain(batcher.flush())
        yield from drain(set(live))

    def require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ModalityError(f"space {self.name!r} does not cover {modality} (it covers "
                                f"{', '.join(self.modalities)}); use a space that does, e.g. "
                                f"{_space_for(modality)}")

    # ---- stages -------------------------------------------------------------------------------------------------
    def _prepare(self, index: int, item: Any, modality: str | None) -> tuple[Pending, Iterable]:
        """Runs in a worker thread: identify, decode and preprocess one input into its model-ready parts."""
        if modality in SENSOR_MODALITIES:
            media = to_sensor_media(item, index, modality, self.limits)
        else:
            media = to_media(item, index, self.limits, modality=modality)
        if modality is not None and media.modality != modality:
            raise MediaError(media.name, f"expected {modality}, but the content is {media.modality} ({media.mime})", "sniff")
        if media.modality not in self.modalities:
            raise UncoveredModalityError(media.name, f"space {self.name!r} does not cover {media.modality} "
                                         f"(it covers {', '.join(self.modalities)}); use a space that does, e.g. "
                                         f"{_space_for(media.modality)}")
        p = Pending(index=index, name=media.name, modality=media.modality, info={"mime": media.mime})
        return p, getattr(self, f"_parts_{media.modality}")(media, p)

    def _parts_text(self, media: Media, p: Pending) -> list[str]:
        opts = self.config.text
        if not (media.text or "").strip():   # its vector would be the model's answer to nothing at all
            raise MediaError(media.name, "empty text: nothing to embed", "decode")
        windows = text_windows(media.text or "", self.backend.count_tokens, self.backend.max_text_tokens,
                               opts.overlap_tokens, first_only=opts.pooling == "first")
        p.weights = [max(n, 1) for _, n in windows]
        p.info.update(tokens=sum(n for _, n in windows), windows=len(windows))
        return [w for w, _ in windows]

    def _parts_image(self, media: Media, p: Pending) -> list:
        reduce_to = self.backend.image_size if self.config.image.reduced_decode else None
        image = load_image(media, self.limits, min_size=reduce_to)
        p.info.update({"width": image.width, "height": image.height, **media.meta})
        if (image.width, image.height) != (p.info["width"], p.info["height"]):
            p.info["decoded_size"] = [image.width, image.height]  # a reduced-size JPEG decode
        return [self.backend.preprocess_image(image)]

    def _parts_audio(self, media: Media, p: Pending) -> list:
        sr = self.backend.sample_rate
        wave = load_audio(media, sr, self.limits)
        return self._audio_windows(wave, sr, p)

    def _audio_windows(self, wave: np.ndarray, sr: int, p: Pending) -> list:
        opts = self.config.audio
        duration = len(wave) / sr
        if hasattr(self.backend, "audio_clips"):  # ImageBind: a fixed number of clips spread over the sound
            clips = self.backend.audio_clips(wave)
            p.info.update(duration=round(duration, 6), windows=len(clips))
            p.weights = [1.0] * len(clips)
            p.spans = [(round(s, 6), round(e, 6)) for s, e, _ in clips]
            return [self.backend.preprocess_audio(c) for _, _, c in clips]
        windows = time_windows(duration, opts.window_seconds or self.backend.audio_window_seconds,
                               opts.hop_seconds, opts.min_tail_seconds)
        p.info.update(duration=round(duration, 6), windows=len(windows))
        p.weights = [w.weight for w in windows]
        p.spans = [(w.start, w.end) for w in windows]
        return [self.backend.preprocess_audio(wave[int(round(w.start * sr)):int(round(w.end * sr))]) for w in windows]

    def _parts_video(self, media: Media, p: Pending) -> Iterator:
        from ..media import video_duration

        opts = self.config.video
        p.info.update(duration=round(video_duration(media), 6))
        if self.audio_space is not None:
            try:
                p.extra = decode_audio_stream(media, self.limits)
            except MediaError:
                p.extra = None  # a silent video simply has no sound-track vector
        frames = sample_frames(media, opts.fps, self.limits, self.backend.image_size or 224, opts.skip_blank)
        clip_frames = getattr(self.backend, "video_clip_frames", 1)
        if clip_frames > 1:
            timed = ((f.time, self.backend.preprocess_video_frame(f.image)) for f in frames)
            return threaded(_clips(timed, clip_frames, self.backend.make_clip), maxsize=self.batch_size)
        return threaded(((f.time, self.backend.preprocess_image(f.image)) for f in frames), maxsize=2 * self.batch_size)

    def _parts_depth(self, media: Media, p: Pending) -> list:
        values = load_single_channel(media, self.limits)
        p.info.update(height=int(values.shape[0]), width=int(values.shape[1]))
        return [self.backend.preprocess_map(values)]

    _parts_thermal = _parts_depth

    def _parts_imu(self, media: Media, p: Pending) -> list:
        series = load_imu(media)
        windows = self.backend.imu_windows(series)
        p.info.update(samples=int(series.shape[1]), windows=len(windows))
        p.weights = [float(max(e - s, 1)) for s, e, _ in windows]
        return [x for _, _, x in windows]

    def _finish(self, p: Pending) -> Result:
        if p.error is not None:
            return p.error
        if not p.parts:
            return MediaError(p.name, "nothing to embed", "decode")
        segments: list[Segment] = []
        if p.modality == "video":
            vector, segments = self._video_segments(p)
            p.info["frames"] = len(p.parts)
        elif p.modality == "audio":
            vector = pooled(p)
            segments = [Segment(s, e, p.parts[k]) for k, (s, e) in enumerate(p.spans)]
        else:
            vector = pooled(p)
        emb = Embedding(item=p.name, modality=p.modality, vector=vector, space=self.name, model=self.model,
                        version=self.version, segments=segments, info=p.info)
        if p.modality == "video" and p.extra is not None:
            wave, sr = p.extra
            emb.audio = self.audio_space.embed_items([(wave, sr)], modality="audio", on_error="return")[0]
            if isinstance(emb.audio, Embedding):
                emb.audio.item = p.name
            else:
                emb.info["audio_error"] = emb.audio.cause
                emb.audio = None
        return emb

    def _video_segments(self, p: Pending) -> tuple[np.ndarray, list[Segment]]:
        seg_len = self.config.video.segment_seconds
        duration = p.info.get("duration") or 0.0
        groups: dict[int, list[int]] = {}
        for k, (t, _) in enumerate(p.spans):
            groups.setdefault(int(math.floor(t / seg_len + 1e-9)), []).append(k)
        segments, weights = [], []
        for g, ks in sorted(groups.items()):
            start = g * seg_len
            end = min(start + seg_len, duration) if duration > start else start + seg_len
            segments.append(Segment(round(start, 6), round(end, 6), pool(np.stack([p.parts[k] for k in ks]))))
            weights.append(len(ks))
        return pool(np.stack([s.vector for s in segments]), weights), segments

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _stack(self, results: list) -> np.ndarray:
        if not results:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([r.vector for r in results]).astype(np.float32, copy=False)

    @staticmethod
    def _as_list(items: Any) -> list:
        from PIL import Image

        if isinstance(items, (str, bytes, os.PathLike, Image.Image, np.ndarray)) or _is_audio_pair(items):
            return [items]
        return list(items)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model, "version": self.version, "dim": self.dim,
                "modalities": list(self.modalities), "licence": self.config.licence,
                "precision": self.config.precision}


def _space_for(modality: str) -> str:
    return {"audio": "clap-htsat", "depth": "imagebind-huge", "thermal": "imagebind-huge",
            "imu": "imagebind-huge"}.get(modality, "clip-vit-b-32")


def _clips(timed: Iterator, n: int, make: Any) -> Iterator:
    """Group (time, frame) pairs into (time of the first frame, clip of n frames); a short last clip is padded."""
    group: list = []
    for t, x in timed:
        group.append((t, x))
        if len(group) == n:
            yield group[0][0], make([x for _, x in group])
            group = []
    if group:
        yield group[0][0], make([x for _, x in group])


def _is_audio_pair(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray) and isinstance(x[1], (int, np.integer))
