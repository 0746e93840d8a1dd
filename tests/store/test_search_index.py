"""Large collections search through the ANN index; it agrees with exact search and is never served stale."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import omnivec


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim))
    v = centres[rng.integers(0, 50, n)] + 0.4 * rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def big(tmp_path, tiny_clip, monkeypatch):
    monkeypatch.setenv("OMNIVEC_ANN_MIN_ROWS", "1000")
    col = omnivec.open_collection(tmp_path / "big", space=tiny_clip, create=True)
    v = clustered(6000, col.dim, 0)
    col.add_vectors(v, ids=[key(i) for i in range(len(v))], modality="image",
                    metadata=[{"shard": i % 3} for i in range(len(v))])
    return col, v


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def hid(i: int) -> str:
    return key(i)[:16]


def exact_top(v: np.ndarray, q: np.ndarray, k: int) -> list[str]:
    return [hid(i) for i in np.argsort(-(v @ q), kind="stable")[:k]]


def test_ann_search_matches_exact_and_is_persisted(big, monkeypatch):
    col, v = big
    queries = clustered(50, col.dim, 1)
    recall = np.mean([len(set(h.id for h in col.search(vector=q, k=10)) & set(exact_top(v, q, 10))) / 10
                      for q in queries])
    assert recall >= 0.95
    assert col._index is not None and (col.folder / "search" / "current").is_file()
    # A new handle loads the saved index instead of rebuilding it.
    pointer = (col.folder / "search" / "current").read_text()
    again = omnivec.open_collection(col.folder)
    again.search(vector=queries[0], k=5)
    assert (col.folder / "search" / "current").read_text() == pointer
    # Scores are exact floats after rescoring.
    hit = again.search(vector=queries[0], k=1)[0]
    i = [hid(j) for j in range(len(v))].index(hit.id)
    assert hit.score == pytest.approx(float(v[i] @ queries[0]), abs=1e-5)


def test_new_rows_are_found_before_any_rebuild(big):
    col, v = big
    col.search(vector=v[0], k=1)                      # index built at this version
    built = (col.folder / "search" / "current").read_text()
    fresh = clustered(10, col.dim, 7)
    col.add_vectors(fresh, ids=[key(10_000 + i) for i in range(10)])
    for i, q in enumerate(fresh):
        assert col.search(vector=q, k=1)[0].id == hid(10_000 + i)
    assert (col.folder / "search" / "current").read_text() == built  # served with the delta, not rebuilt


def test_filters_in_ann_mode(big):
    col, v = big
    q = v[123]
    hits = col.search(vector=q, k=10, where="shard = 1")
    assert len(hits) == 10 and all(h.metadata["shard"] == 1 for h in hits)
    expected = [hid(i) for i in np.argsort(-(v @ q), kind="stable") if i % 3 == 1][:10]
    assert len(set(h.id for h in hits) & set(expected)) >= 9
