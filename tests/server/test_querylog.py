"""The query log: what each query writes, and retention by size and by age."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from omnivec.server.querylog import QueryLog


def test_each_query_is_logged(make_client, tmp_path):
    log = tmp_path / "q.jsonl"
    c = make_client(query_log=log, query_log_vectors=True)
    c.post("/search", json={"text": "a red shape", "k": 3})
    c.post("/search", json={"text": "a red shape", "k": 3, "min_score": 0.999})
    c.post("/knn-service", json={"text": "a blue shape", "modality": "image", "num_images": 2, "indice_name": None})
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["endpoint"] for e in entries] == ["search", "search", "knn-service"]
    first, empty, knn = entries
    assert first["modality"] == "text" and first["results"] == 3 and first["k"] == 3
    assert 0 < first["best_score"] <= 1 and first["latency_ms"] > 0 and abs(first["time"] - time.time()) < 60
    assert empty["results"] == 0 and empty["best_score"] is None
    assert knn["results"] == 2
    assert len(first["vector"]) == 64 and abs(np.linalg.norm(first["vector"]) - 1) < 1e-3


def test_vectors_are_left_out_by_default(make_client, tmp_path):
    log = tmp_path / "q.jsonl"
    make_client(query_log=log).post("/search", json={"text": "a red shape"})
    assert "vector" not in json.loads(log.read_text())


def test_size_budget_keeps_the_newest_entries(tmp_path):
    log = QueryLog(tmp_path / "q.jsonl", max_bytes=40_000)
    for i in range(3000):
        log.write(endpoint="search", modality="text", latency_ms=float(i), best_score=0.5, results=1)
    files = [*log.rolled(), log.path]
    assert sum(p.stat().st_size for p in files) <= 40_000
    assert len(log.rolled()) >= 2
    kept = [e["latency_ms"] for e in log.entries()]
    assert kept == sorted(kept) and kept[-1] == 2999.0 and 0 < len(kept) < 3000
    assert kept == [float(i) for i in range(int(kept[0]), 3000)]  # a contiguous tail: nothing lost in between


def test_age_limit_drops_old_entries(tmp_path):
    path = tmp_path / "q.jsonl"
    log = QueryLog(path, max_age_days=1)
    old = time.time() - 3 * 86400
    log.write(endpoint="search", modality="text", latency_ms=1, best_score=0.1, results=1, when=old)
    # The next entry is far newer than the first in the live file: the file rolls.
    log.write(endpoint="search", modality="text", latency_ms=2, best_score=0.1, results=1)
    (rolled,) = log.rolled()
    os.utime(rolled, (old, old))  # last written three days ago
    log.write(endpoint="search", modality="text", latency_ms=3, best_score=0.1, results=1)
    log.close()
    reopened = QueryLog(path, max_age_days=1)
    assert [e["latency_ms"] for e in reopened.entries()] == [3]
