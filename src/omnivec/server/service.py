"""What the routes share: the collection, the query embedder, metrics, the query log, and search itself."""
from __future__ import annotations

import re
import threading
from contextlib import nullcontext
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..store.collection import Collection, Hit, ann_min_rows, mix_query, omnivec_home
from ..store.filters import sql_in
from .config import ServerConfig
from .embedder import QueryEmbedder, QueryInput
from .inputs import InputError
from .metrics import Metrics
from .querylog import QueryLog

ITEM_ID = re.compile(r"^(?:[0-9a-f]{16}|[0-9a-f]{64})$")
THUMBNAIL_MODALITIES = ("image", "video")


class NotFound(Exception):
    """No such item (or file): answered with HTTP 404."""


@dataclass
class SearchResult:
    hits: list[Hit]
    took_ms: float
    modality: str


class ServerState:
    def __init__(self, collection: Collection, config: ServerConfig):
        self.col, self.config = collection, config
        self.space = collection.space        # loaded now, not by the first query
        self.started = time.time()
        self.metrics = Metrics(collection)
        self.embedder = QueryEmbedder(self.space, config.cache_size, self.metrics)
        self.querylog = None
        if config.query_log_enabled:
            # Outside the collection's folder: `omnivec reembed` replaces that folder, the log must outlive it.
            path = config.query_log or omnivec_home() / "logs" / collection.name / "queries.jsonl"
            self.querylog = QueryLog(path, config.query_log_max_bytes, config.query_log_max_age_days,
                                     config.query_log_vectors)
        self.thumbnail_dir = Path(config.thumbnail_dir or collection.folder / "cache" / "thumbnails")
        self._refresh_lock = threading.Lock()
        self._refreshed = time.monotonic()
        # Exact search only reads shared state; the ANN path may build or extend its index on a query, which
        # must not happen on two threads at once.
        self._ann_lock = threading.Lock()

    def close(self) -> None:
        self.embedder.close()
        if self.querylog:
            self.querylog.close()

    # ---- seeing other writers ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """A store opened here may not see commits made by other processes (`omnivec index` beside the server)
        until asked (LanceDB); ask at most every `refresh_seconds`."""
        now = time.monotonic()
        if now - self._refreshed < self.config.refresh_seconds or not self._refresh_lock.acquire(blocking=False):
            return
        try:
            self.col.store.refresh()
            self._refreshed = now
        finally:
            self._refresh_lock.release()

    # ---- items ------------------------------------------------------------------------------------------------
    def check_item_id(self, item_id: str) -> str:
        if not ITEM_ID.match(item_id):
            raise NotFound(f"no item {item_id!r}: item ids are 16 (or 64) hex digits")
        return item_id

    def item_row(self, item_id: str) -> dict:
        """The item's stored row without its vector; NotFound if absent."""
        self.check_item_id(item_id)
        self.refresh()
        col = "content_hash" if len(item_id) == 64 else "id"
        rows = self.col.items(f"{col} = '{item_id}'").to_pylist()
        if not rows:
            raise NotFound(f"collection {self.col.name!r} has no item {item_id!r}")
        row = rows[0]
        row.pop("vector", None)
        return row

    def item_vectors(self, item_ids: Sequence[str]) -> list[np.ndarray]:
        """Stored vectors of items (one scan for all); NotFound names the first unknown id."""
        return [r["vector"] for r in self.item_rows(item_ids, ["id", "vector"])]

    def item_rows(self, item_ids: Sequence[str], columns: list[str]) -> list[dict]:
        """Rows of items in the order asked (vectors as arrays); NotFound names the first unknown id."""
        if not item_ids:
            return []
        ids = [self.check_item_id(i)[:16] for i in item_ids]
        rows = {r["id"]: r for r in self.col.items(sql_in("id", ids), columns).to_pylist()}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFound(f"collection {self.col.name!r} has no item {missing[0]!r}")
        for r in rows.values():
            if "vector" in r:
                r["vector"] = np.asarray(r["vector"], np.float32)
        return [rows[i] for i in ids]

    def search_guard(self):
        """Held around anything that searches the collection (see _ann_lock)."""
        return self._ann_lock if self.col.store.count() >= ann_min_rows() else nullcontext()

    # ---- search -----------------------------------------------------------------------------------------------
    def search(self, parts: Sequence[QueryInput] = (), *, like: Sequence[str] = (), weights: Sequence[float] | None = None,
               vector: Sequence[float] | None = None, k: int = 10, modalities: Sequence[str] | None = None,
               where: str | None = None, min_score: float | None = None, endpoint: str = "search") -> SearchResult:
        t0 = time.perf_counter()
        if not 1 <= k <= self.config.max_k:
            raise InputError(f"k must be between 1 and {self.config.max_k}")
        self.refresh()
        like = [self.check_item_id(i)[:16] for i in like]  # content hashes name items too
        q = self.query_vector(parts, like, weights, vector)
        try:
            with self.search_guard():
                hits = self.col.search_vector(q, k=k, modalities=modalities, where=where, min_score=min_score,
                                              exclude=set(like))
        except ValueError as e:  # LanceDB's answer to a filter it cannot parse or resolve
            if where:
                raise InputError(f"where: {e}") from None
            raise
        took = (time.perf_counter() - t0) * 1000
        modality = query_modality(parts, like, vector)
        self.record_query(endpoint, modality, took, [h.score for h in hits], k, q)
        return SearchResult(hits, took, modality)

    def record_query(self, endpoint: str, modality: str, took_ms: float, scores: Sequence[float], k: int,
                     q: np.ndarray) -> None:
        """Metrics and the query log for one answered query (scores best first)."""
        self.metrics.observe_query(endpoint, modality, scores)
        if self.querylog:
            self.querylog.write(endpoint=endpoint, modality=modality, latency_ms=took_ms,
                                best_score=scores[0] if scores else None, results=len(scores), k=k, vector=q)

    def query_vector(self, parts: Sequence[QueryInput], like: Sequence[str], weights: Sequence[float] | None,
                     vector: Sequence[float] | None) -> np.ndarray:
        """The weighted, normalised sum of the query's parts: embedded inputs, then stored items, then a raw
        vector (the same mix Collection.query_vector makes, with cached embeddings)."""
        vecs = [self.embedder.embed(p) for p in parts] + self.item_vectors(like)
        if vector is not None:
            try:
                v = np.asarray(vector, np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise InputError(f"vector: expected {self.col.dim} numbers") from None
            if v.shape[0] != self.col.dim or not np.isfinite(v).all():
                raise InputError(f"vector: expected {self.col.dim} finite numbers, got {v.shape[0]}")
            vecs.append(v)
        if not vecs:
            raise InputError("a search needs a query: text, an image, audio or video, an item id (like) or a vector")
        return mix_query(vecs, weights)

    # ---- what clients see -------------------------------------------------------------------------------------
    def hit_json(self, hit: Hit, root: str = "") -> dict:
        d = hit.to_dict()
        d.update(item_urls(hit.id, hit.modality, root))
        return d


def item_urls(item_id: str, modality: str, root: str = "") -> dict:
    return {"thumbnail": f"{root}/items/{item_id}/thumbnail" if modality in THUMBNAIL_MODALITIES else None,
            "media": f"{root}/items/{item_id}/media", "item": f"{root}/items/{item_id}"}


def query_modality(parts: Sequence[QueryInput], like: Sequence[str], vector) -> str:
    kinds = {p.modality for p in parts} | ({"item"} if like else set()) | ({"vector"} if vector is not None else set())
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")
