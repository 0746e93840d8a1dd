"""AnnIndex: recall, exact rescoring, incremental add, padding, atomic save / load and corruption checks."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from omnivec.store.ann import AnnIndex, AnnIndexError

D = 64


def clustered(n: int, d: int = D, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.5, 1.0, clusters).astype(np.float32)
    lab = rng.integers(0, clusters, n)
    x = centres[lab] + spread[lab, None] * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = q @ x.T
    return ids[np.argsort(-s, axis=1, kind="stable")[:, :k]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth)) / truth.size


@pytest.fixture(scope="module")
def data():
    x = clustered(20_200, seed=1)
    base, queries = x[:20_000], x[20_000:]
    ids = np.arange(len(base), dtype=np.int64) * 3 + 7          # caller-chosen keys, not positions
    return base, ids, queries


@pytest.fixture(scope="module")
def index(data):
    base, ids, _ = data
    return AnnIndex.build(base, ids, m=16, ef_construction=64, threads=2)


def lookup(base: np.ndarray, ids: np.ndarray):
    pos = {int(k): i for i, k in enumerate(ids)}
    return lambda keys: base[[pos[int(k)] for k in keys]]


def test_recall_at_10(data, index):
    base, ids, queries = data
    truth = exact(base, ids, queries, 10)
    _, found = index.search(queries, 10, rescore=lookup(base, ids))
    assert recall(found, truth) >= 0.95
    _, found_int8 = index.search(queries, 10)                   # int8 scores alone are close already
    assert recall(found_int8, truth) >= 0.85
    assert len(index) == len(base)
    assert 0 < index.memory_bytes()


def test_rescore_returns_exact_float_scores(data, index):
    base, ids, queries = data
    pos = {int(k): i for i, k in enumerate(ids)}
    calls = []

    def rescore(keys):
        calls.append(keys.copy())
        return base[[pos[int(k)] for k in keys]]

    scores, found = index.search(queries[:20], 10, rescore=rescore, oversample=4)
    assert len(calls) == 1                                      # one fetch per search call
    assert calls[0].dtype == np.int64 and np.all(np.diff(calls[0]) > 0)
    assert scores.dtype == np.float32 and found.dtype == np.int64 and scores.shape == found.shape == (20, 10)
    expected = np.einsum("qd,qkd->qk", queries[:20], base[np.vectorize(pos.get)(found)])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)                 # descending
    # int8 scores approximate the same inner products
    s8, f8 = index.search(queries[:20], 10)
    approx = np.einsum("qd,qkd->qk", queries[:20], base[np.vectorize(pos.get)(f8)])
    assert np.abs(s8 - approx).max() < 0.05


def test_single_query_matches_batch_and_is_deterministic(data, index):
    base, ids, queries = data
    rs = lookup(base, ids)
    s_batch, i_batch = index.search(queries[:10], 10, rescore=rs)
    for j in range(10):
        s1, i1 = index.search(queries[j], 10, rescore=rs)
        s2, i2 = index.search(queries[j], 10, rescore=rs)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(i1[0], i_batch[j])
        np.testing.assert_allclose(s1[0], s_batch[j], rtol=1e-6)


def test_save_load_round_trip(tmp_path, data, index):
    base, ids, queries = data
    stamp = {"table_version": 12, "rows": len(base), "space_version": "clip-vit-b-32@1"}
    index.save(tmp_path / "ann", stamp)
    loaded, got = AnnIndex.load(tmp_path / "ann")
    assert got == stamp
    assert len(loaded) == len(index) and loaded.ndim == D
    rs = lookup(base, ids)
    for a, b in zip(index.search(queries, 10, rescore=rs), loaded.search(queries, 10, rescore=rs)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    viewed, _ = AnnIndex.load(tmp_path / "ann", view=True)  # memory-mapped, read-only
    np.testing.assert_array_equal(viewed.search(queries, 10)[1], index.search(queries, 10)[1])
    with pytest.raises(AnnIndexError):
        viewed.add(base[:1], np.array([10**9]))
    # saving again over the folder replaces the index and removes the old file
    index.save(tmp_path / "ann", {**stamp, "table_version": 13})
    _, got = AnnIndex.load(tmp_path / "ann")
    assert got["table_version"] == 13
    assert len([p for p in (tmp_path / "ann").iterdir() if p.name.startswith("index-")]) == 1


def small_saved(folder: Path) -> Path:
    x = clustered(300, seed=3)
    AnnIndex.build(x, np.arange(300)).save(folder, {"table_version": 1})
    return folder


def index_file(folder: Path) -> Path:
    return folder / json.loads((folder / "manifest.json").read_text())["index_file"]


def test_load_missing_folder_or_manifest(tmp_path):
    with pytest.raises(AnnIndexError, match="does not exist"):
        AnnIndex.load(tmp_path / "nowhere")
    folder = small_saved(tmp_path / "a")
    (folder / "manifest.json").unlink()                         # a save killed before its commit point
    with pytest.raises(AnnIndexError, match="no manifest.json"):
        AnnIndex.load(folder)


def test_load_truncated_index_file(tmp_path):
    folder = small_saved(tmp_path / "a")
    f = index_file(folder)
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    with pytest.raises(AnnIndexError, match="truncated"):
        AnnIndex.load(folder)


def test_load_corrupt_bytes_and_manifest(tmp_path):
    folder = small_saved(tmp_path / "a")
    f = index_file(folder)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(AnnIndexError, match="SHA-256"):
        AnnIndex.load(folder)
    folder = small_saved(tmp_path / "b")
    index_file(folder).unlink()
    with pytest.raises(AnnIndexError, match="missing"):
        AnnIndex.load(folder)
    folder = small_saved(tmp_path / "c")
    (folder / "manifest.json").write_text('{"format": "omnivec-ann", "format_ver')   # half-written JSON
    with pytest.raises(AnnIndexError, match="corrupt"):
        AnnIndex.load(folder)


def test_interrupted_save_keeps_previous_index(tmp_path, monkeypatch):
    folder = small_saved(tmp_path / "a")
    x = clustered(400, seed=4)
    new = AnnIndex.build(x, np.arange(400))
    real_replace, calls = os.replace, []

    def dies_at_commit(src, dst):                               # the index file lands, the manifest does not
        calls.append(dst)
        if str(dst).endswith("manifest.json"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_at_commit)
    with pytest.raises(KeyboardInterrupt):
        new.save(folder, {"table_version": 2})
    monkeypatch.undo()
    assert len(calls) == 2
    loaded, stamp = AnnIndex.load(folder)
    assert stamp == {"table_version": 1} and len(loaded) == 300
    new.save(folder, {"table_version": 2})                      # the next save cleans leftovers up
    loaded, stamp = AnnIndex.load(folder)
    assert stamp == {"table_version": 2} and len(loaded) == 400
    assert len(list(folder.iterdir())) == 2


SAVER = """
import sys, numpy as np
from omnivec.store.ann import AnnIndex
rng = np.random.default_rng(0)
x = rng.standard_normal((3000, 32)).astype(np.float32)
index = AnnIndex.build(x, np.arange(3000), threads=1)
for v in range(1, 10**6):
    index.save(sys.argv[1], {"table_version": v})
    print(v, flush=True)
"""


def test_kill_9_during_saves_never_leaves_a_bad_index(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "ann"
    for delay in (0.004, 0.021):
        p = subprocess.Popen([sys.executable, "-c", SAVER, str(folder)], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "1"           # at least one save committed
            time.sleep(delay)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        loaded, stamp = AnnIndex.load(folder)                   # whatever moment it died, a whole index loads
        assert len(loaded) == 3000 and stamp["table_version"] >= 1


def test_add_after_build_is_findable(data):
    base, ids, _ = data
    index = AnnIndex.build(base[:5000], ids[:5000], threads=2)
    extra = clustered(500, seed=9)
    extra_ids = np.arange(500, dtype=np.int64) + 10**12          # large 64-bit keys
    index.add(extra, extra_ids)
    assert len(index) == 5500
    scores, found = index.search(extra[:50], 1)
    np.testing.assert_array_equal(found[:, 0], extra_ids[:50])  # each new vector is its own nearest
    with pytest.raises(ValueError, match="already"):
        index.add(extra[:2], extra_ids[:2])
    with pytest.raises(ValueError, match=">= 0"):
        index.add(extra[:1], np.array([-5]))
    with pytest.raises(ValueError, match="dimensions"):
        index.add(np.zeros((1, D + 1), np.float32), np.array([1]))


def test_k_larger_than_index_pads(tmp_path):
    x = clustered(30, seed=5)
    ids = np.arange(30, dtype=np.int64) + 100
    index = AnnIndex.build(x, ids)
    for rescore in (None, lambda keys: x[keys - 100]):
        scores, found = index.search(x[:3], 50, rescore=rescore)
        assert found.shape == scores.shape == (3, 50)
        assert np.all(found[:, 30:] == -1) and np.all(np.isneginf(scores[:, 30:]))
        assert all(sorted(row[:30].tolist()) == ids.tolist() for row in found)
        one_s, one_i = index.search(x[0], 50, rescore=rescore)
        np.testing.assert_array_equal(one_i[0], found[0])
    empty = AnnIndex.build(np.zeros((0, D), np.float32), np.zeros(0, np.int64))
    assert len(empty) == 0
    s, i = empty.search(x[:2], 5)
    assert np.all(i == -1) and s.shape == (2, 5)
    empty.add(x, ids)
    assert empty.search(x[7], 1)[1][0, 0] == 107
