"""The streaming embedding engine: decode in worker threads while the model runs, batch across items,
and assemble each item's parts (text windows, audio windows, video frames) into its vectors.

Threads, not processes: PIL, libjpeg, FFmpeg and soxr release the GIL while they work, so decoding overlaps
with torch's own threads without copying tensors between processes."""
from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import MediaError
from .pooling import pool

_DONE = object()


def prefetch(fn: Callable[[Any], Any], items: Iterable, workers: int, depth: int) -> Iterator[Any]:
    """Ordered map of `fn` over `items` on a thread pool, at most `depth` items in flight.
    Exceptions raised by `fn` are returned as values, so one bad item never stops the stream."""

    def safe(x):
        try:
            return fn(x)
        except Exception as e:  # noqa: BLE001 - turned into a per-item error by the caller
            return e

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omnivec-decode") as pool_:
        pending: deque = deque()
        for x in items:
            pending.append(pool_.submit(safe, x))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def threaded(gen: Iterator, maxsize: int) -> Iterator:
    """Run a generator in its own thread through a bounded queue (a long video decodes while frames embed)."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def run():
        try:
            for x in gen:
                while not stop.is_set():
                    try:
                        q.put(x, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(e)

    threading.Thread(target=run, daemon=True, name="omnivec-video").start()

    def consume():
        try:
            while (x := q.get()) is not _DONE:
                if isinstance(x, BaseException):
                    raise x
                yield x
        finally:
            stop.set()

    return consume()


@dataclass
class Pending:
    """One input on its way through the engine."""

    index: int
    name: str
    modality: str
    info: dict = field(default_factory=dict)
    parts: dict[int, np.ndarray] = field(default_factory=dict)
    n_parts: int | None = None        # None while a video is still being decoded
    weights: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    error: MediaError | None = None
    extra: Any = None                 # e.g. a video's decoded sound track

    @property
    def complete(self) -> bool:
        return self.error is not None and self.n_parts is not None or (
            self.n_parts is not None and len(self.parts) >= self.n_parts)

    def fail(self, stage: str, cause: str) -> None:
        if self.error is None:
            self.error = MediaError(self.name, cause, stage)


class Batcher:
    """Collects parts of many inputs for one encoder and runs it on full batches."""

    def __init__(self, encode: Callable[[list], np.ndarray], batch_size: int):
        self.encode, self.batch_size = encode, batch_size
        self.buffer: list[tuple[Pending, int, Any]] = []

    def add(self, p: Pending, part: int, payload: Any) -> bool:
        self.buffer.append((p, part, payload))
        return len(self.buffer) >= self.batch_size

    def flush(self) -> set[int]:
        """Encode what is buffered; returns the indexes of the inputs that received vectors."""
        if not self.buffer:
            return set()
        batch, self.buffer = self.buffer, []
        live = [(p, i, x) for p, i, x in batch if p.error is None]
        if live:
            try:
                vecs = self.encode([x for _, _, x in live])
            except Exception as e:  # noqa: BLE001 - a model failure is charged to the inputs of that batch
                for p, _, _ in live:
                    p.fail("embed", f"model failed: {e}")
            else:
                for (p, i, _), v in zip(live, vecs):
                    p.parts[i] = v
        return {p.index for p, _, _ in batch}


def pooled(p: Pending) -> np.ndarray:
    vecs = np.stack([p.parts[i] for i in range(len(p.parts))])
    return vecs[0] if len(vecs) == 1 else pool(vecs, p.weights or None)
