"""Query embedding for the server: an LRU cache of query vectors, and one worker that embeds concurrent text and
image queries together in batches (one model call for many waiting requests instead of one each)."""
from __future__ import annotations

import hashlib
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import MediaError

BATCHED = ("text", "image")  # cheap and frequent; audio and video are embedded on the request's own thread
MAX_BATCH = 64


@dataclass
class QueryInput:
    """One part of a query. `digest` identifies its content for the cache; `load` decodes it (under the server's
    limits) into what Space.embed takes, and runs only on a cache miss."""

    modality: str
    digest: str
    load: Callable[[], Any]   # -> text, a PIL image, an (audio, sample rate) pair, or video bytes
    name: str = "<query>"

    @classmethod
    def text(cls, text: str, name: str = "<text>") -> "QueryInput":
        return cls("text", hashlib.sha256(b"text\0" + text.encode()).hexdigest(), lambda: text, name)


class LRUCache:
    """A small thread-safe LRU map. functools.lru_cache keys on the call's arguments, which here would be whole
    images; this one keys on a content digest, and reports hits and misses for the metrics."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            v = self._data.get(key)
            if v is not None:
                self._data.move_to_end(key)
            return v

    def put(self, key: str, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class QueryEmbedder:
    def __init__(self, space, cache_size: int = 2048, metrics=None):
        self.space = space
        self.cache = LRUCache(cache_size)
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="omnivec-query-embed", daemon=True)
        self._worker.start()

    def embed(self, q: QueryInput) -> np.ndarray:
        """The unit vector of one query part; raises MediaError for bad content."""
        self.space.require(q.modality)
        hit = self.cache.get(q.digest)
        if self.metrics:
            self.metrics.cache.labels("hit" if hit is not None else "miss").inc()
        if hit is not None:
            return hit
        payload = q.load()  # decoding happens on the request's thread, in parallel; only the model is shared
        if q.modality in BATCHED:
            fut: Future = Future()
            self._queue.put((q, payload, fut))
            vec = fut.result()
        else:
            vec = self._embed_group(q.modality, [(q, payload)])[0]
            if isinstance(vec, Exception):
                raise vec
        self.cache.put(q.digest, vec)
        return vec

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            # Whatever queued up while the model was busy goes into this call: no waiting at low load.
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            for modality in BATCHED:
                group = [(q, p, f) for q, p, f in batch if q.modality == modality]
                if not group:
                    continue
                try:
                    results = self._embed_group(modality, [(q, p) for q, p, _ in group])
                except Exception as e:  # noqa: BLE001 - the model failed: every waiting request hears why
                    results = [e] * len(group)
                for (_, _, fut), res in zip(group, results):
                    fut.set_exception(res) if isinstance(res, Exception) else fut.set_result(res)

    def _embed_group(self, modality: str, items: list[tuple[QueryInput, Any]]) -> list[np.ndarray | MediaError]:
        """One model call for decoded inputs of one modality; a bad input is its own error, not the batch's."""
        if self.metrics:
            self.metrics.embed_batch.observe(len(items))
        out: list[np.ndarray | MediaError] = []
        results = self.space.embed_items([p for _, p in items], modality=modality, on_error="return")
        for (q, _), res in zip(items, results):
            if isinstance(res, MediaError):
                out.append(MediaError(q.name, res.cause, res.stage))  # name the request's input, not "<bytes #3>"
            else:
                out.append(np.asarray(res.vector, np.float32))
        return out
