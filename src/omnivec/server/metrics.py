"""Prometheus metrics: request latency, queries, best scores, no-match count, the query-embedding cache, and the
collection's ingestion counts (items by modality, files by outcome, errors), read from the collection at scrape
time so that indexing by another process (`omnivec index`) shows up too."""
from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SCORE_BUCKETS = tuple(round(-0.2 + 0.05 * i, 2) for i in range(25))  # cosine scores -0.2 .. 1.0


class Metrics:
    """One registry per app, so several apps (tests, one server per collection) never share counters."""

    def __init__(self, collection):
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram("omnivec_request_seconds", "HTTP request latency", ["method", "route", "status"],
                                         registry=r, buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.queries = Counter("omnivec_queries", "Queries answered", ["endpoint", "modality"], registry=r)
        self.best_score = Histogram("omnivec_query_best_score", "Score of each query's best hit", ["endpoint"],
                                    registry=r, buckets=SCORE_BUCKETS)
        self.no_match = Counter("omnivec_query_no_match", "Queries that returned no hit (nothing passed the "
                                "filters and min_score)", ["endpoint"], registry=r)
        self.cache = Counter("omnivec_query_embedding_cache", "Query-embedding cache lookups", ["result"], registry=r)
        self.embed_batch = Histogram("omnivec_query_embed_batch_size", "Query inputs embedded per model call",
                                     registry=r, buckets=(1, 2, 4, 8, 16, 32, 64))
        r.register(CollectionCollector(collection))

    def observe_query(self, endpoint: str, modality: str, scores) -> None:
        """One answered query; `scores` of its results, best first."""
        self.queries.labels(endpoint, modality).inc()
        if len(scores):
            self.best_score.labels(endpoint).observe(scores[0])
        else:
            self.no_match.labels(endpoint).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CollectionCollector:
    """Gauges of what indexing produced, recomputed only when the collection's tables change."""

    def __init__(self, collection):
        self.col = collection
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._values: dict = {}

    def collect(self):
        versions = self.col.store.state()
        with self._lock:
            if versions != self._seen:
                self._values = self._compute()
                self._seen = versions
            v = self._values
        items = GaugeMetricFamily("omnivec_collection_items", "Items in the collection", labels=["modality"])
        for modality, n in v["items"].items():
            items.add_metric([modality], n)
        yield items
        files = GaugeMetricFamily("omnivec_ingest_files", "Files seen by indexing, by outcome", labels=["status"])
        for status, n in v["files"].items():
            files.add_metric([status], n)
        yield files
        yield GaugeMetricFamily("omnivec_ingest_errors", "Inputs that failed to index", value=v["errors"])
        yield GaugeMetricFamily("omnivec_collection_rows", "Stored vectors (items and segments)", value=v["rows"])
        yield GaugeMetricFamily("omnivec_collection_last_change_seconds", "When the metrics last saw the tables "
                                "change (unix time)", value=v["at"])

    def _compute(self) -> dict:
        store = self.col.store
        return {"items": _counts(self.col.items(None, ["modality"]).column("modality")),
                "files": store.file_status_counts(), "errors": store.count_errors(), "rows": store.count(),
                "at": time.time()}


def _counts(column) -> dict[str, int]:
    counts = column.value_counts().to_pylist() if len(column) else []
    return {str(c["values"]): int(c["counts"]) for c in counts}


class MetricsMiddleware:
    """Times every HTTP request; labelled by the route's template (/items/{item_id}), not the raw path, so the
    number of series stays bounded whatever clients request."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static/") else "other")
            self.metrics.request_seconds.labels(scope["method"], label, str(status["code"])).observe(
                time.perf_counter() - t0)
