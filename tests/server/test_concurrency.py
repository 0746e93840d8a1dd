"""Queries stay correct while another writer indexes into the same collection; the query-embedding cache and
the batching of concurrent queries."""
from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

import omnivec
from omnivec.ingest import index
from omnivec.server import ServerConfig, create_app
from omnivec.server.embedder import LRUCache, QueryEmbedder, QueryInput
from omnivec.server.metrics import Metrics

from liveserver import LiveServer


def colour(hit: dict) -> str:
    return Path(hit["paths"][0]).name.split("-")[0]


def test_queries_while_another_writer_indexes(server_media, shapes_clip, tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    for p in sorted((server_media / "images").iterdir()):
        shutil.copy(p, (first if p.name.startswith("red") else later) / p.name)
    shutil.copytree(server_media / "videos", later / "videos")
    folder = tmp_path / "col"
    served = omnivec.open_collection(folder, space=shapes_clip, create=True)
    index(served, [first])
    writer = omnivec.open_collection(folder, space=shapes_clip)  # another handle, as `omnivec index` would be
    app = create_app(served, ServerConfig(refresh_seconds=0.2, query_log=tmp_path / "q.jsonl"))
    errors: list[str] = []
    done = threading.Event()
    answered = [0]

    def ask(client: httpx.Client) -> None:
        while not done.is_set():
            r = client.post("/search", json={"text": "a red shape", "k": 2, "modalities": ["image"]})
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text}")
                continue
            hits = r.json()["hits"]
            if [colour(h) for h in hits] != ["red", "red"]:
                errors.append(f"wrong answer during indexing: {hits}")
            g = client.get("/search", params={"q": "a green shape", "k": 20})
            if g.status_code != 200:
                errors.append(f"{g.status_code} {g.text}")
                continue
            scores = [h["score"] for h in g.json()["hits"]]
            if scores != sorted(scores, reverse=True) or not all(h["paths"] and h["modality"] for h in g.json()["hits"]):
                errors.append(f"half-written results: {g.json()['hits']}")
            answered[0] += 1

    with LiveServer(app) as live:
        clients = [httpx.Client(base_url=live.url, timeout=60) for _ in range(4)]
        threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        try:
            summary = index(writer, [later], commit_every=2, commit_seconds=0.05)
        finally:
            done.set()
            for t in threads:
                t.join(timeout=60)
        assert summary.indexed == 12 and summary.failed == {}
        assert not errors, errors[:3]
        assert answered[0] >= 4
        # The server sees the other writer's commits (within refresh_seconds) without a restart.
        for _ in range(50):
            stats = clients[0].get("/stats").json()
            if stats["items"] == 14:
                break
            threading.Event().wait(0.1)
        assert stats["items"] == 14 and stats["by_modality"] == {"image": 12, "video": 2}
        hits = clients[0].post("/search", json={"text": "a green shape", "k": 2, "modalities": ["image"]}).json()["hits"]
        assert [colour(h) for h in hits] == ["green", "green"]
        for c in clients:
            c.close()


def test_lru_cache_evicts_the_least_recently_used():
    cache = LRUCache(2)
    a, b, c = (np.full(2, i, np.float32) for i in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # "a" is now the most recent
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c and len(cache) == 2
    off = LRUCache(0)
    off.put("a", a)
    assert off.get("a") is None


def test_concurrent_queries_are_batched_and_cached(shapes_clip, server_col):
    metrics = Metrics(server_col)
    embedder = QueryEmbedder(shapes_clip, cache_size=64, metrics=metrics)
    texts = [f"a {c} shape number {i}" for i in range(4) for c in ("red", "blue", "green", "yellow")]
    barrier = threading.Barrier(len(texts))

    def one(t):
        barrier.wait()
        return embedder.embed(QueryInput.text(t))

    try:
        with ThreadPoolExecutor(len(texts)) as pool:
            got = np.stack(list(pool.map(one, texts)))
        np.testing.assert_allclose(got, shapes_clip.embed_text(texts), atol=1e-5)
        calls = metrics.registry.get_sample_value("omnivec_query_embed_batch_size_count")
        inputs = metrics.registry.get_sample_value("omnivec_query_embed_batch_size_sum")
        assert inputs == len(texts) and calls < len(texts)  # fewer model calls than queries
        again = embedder.embed(QueryInput.text(texts[0]))
        assert again is not None and np.array_equal(again, got[0])
        assert metrics.registry.get_sample_value("omnivec_query_embedding_cache_total", {"result": "hit"}) == 1
        assert metrics.registry.get_sample_value("omnivec_query_embed_batch_size_count") == calls  # no model call
    finally:
        embedder.close()


def test_a_bad_input_in_a_batch_fails_alone(shapes_clip, server_media):
    from PIL import Image

    embedder = QueryEmbedder(shapes_clip, cache_size=0)
    picture = Image.open(server_media / "images" / "red-circle-0.jpg").convert("RGB")
    good = [QueryInput("image", f"{i:064x}", lambda: picture, f"good-{i}.jpg") for i in range(8)]
    bad = QueryInput("image", "f" * 64, lambda: b"these bytes are no image", "upload.png")
    barrier = threading.Barrier(len(good) + 1)

    def one(q):
        barrier.wait()
        return embedder.embed(q)

    try:
        with ThreadPoolExecutor(len(good) + 1) as pool:
            futures = [pool.submit(one, q) for q in [*good[:4], bad, *good[4:]]]
            results = [f.exception() or f.result() for f in futures]
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and isinstance(errors[0], omnivec.MediaError) and errors[0].item == "upload.png"
        vectors = [r for r in results if not isinstance(r, Exception)]
        np.testing.assert_allclose(np.stack(vectors), np.repeat(shapes_clip.embed_image([picture]), 8, 0), atol=1e-5)
    finally:
        embedder.close()
