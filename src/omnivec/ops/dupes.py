"""Near-duplicate groups in a collection, found through an ANN index so it scales past an n-by-n matrix.

    result = find_dupes(col, threshold=0.95)
    for g in result.groups:
        g.members, g.pairs        # pairs: best score, and which segments matched (time ranges)

Every row takes part: the vector of an image or text item, and for audio and video both the whole item's vector
and each segment's, so a video that shows a photographed scene for a few seconds matches that photo through the
segment, with its time range. Each row asks an int8 HNSW index (store.ann.AnnIndex; exact float rescoring) for its
k nearest rows; a row whose k-th neighbour is still above the threshold asks again for more, so a large group of
near-copies is never cut at k. Rows of the same item never pair. Items joined by a pair above the threshold form
groups (connected components). Files with identical bytes were already stored as one item with several paths
(ingest deduplicates by content hash): such an item is reported as a group of its own when it has no other match.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .cluster import modality_filter

MAX_SEGMENT_MATCHES = 10   # per pair of items, the best few segment matches are reported


@dataclass
class Match:
    """Two items' rows above the threshold; times are set when the row is a segment."""

    score: float
    a_start: float | None = None
    a_end: float | None = None
    b_start: float | None = None
    b_end: float | None = None

    def to_dict(self) -> dict:
        return {"score": round(self.score, 6), "a": _span(self.a_start, self.a_end),
                "b": _span(self.b_start, self.b_end)}


@dataclass
class Pair:
    a: str
    b: str
    score: float                                          # the best score of any rows of the two items
    matches: list[Match] = field(default_factory=list)   # best first; segments carry their time ranges

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "score": round(self.score, 6), "matches": [m.to_dict() for m in self.matches]}


@dataclass
class DupeGroup:
    members: list[dict]          # id, modality, paths (several paths: identical files), best_score
    pairs: list[Pair]
    best_score: float

    @property
    def ids(self) -> list[str]:
        return [m["id"] for m in self.members]

    def to_dict(self) -> dict:
        return {"size": len(self.members), "best_score": round(self.best_score, 6), "members": self.members,
                "pairs": [p.to_dict() for p in self.pairs]}


@dataclass
class DupesResult:
    groups: list[DupeGroup]
    threshold: float
    k: int
    rows: int                     # vectors compared (items and segments)
    items: int
    seconds: float

    def group_of(self, item_id: str) -> DupeGroup | None:
        return next((g for g in self.groups if item_id in g.ids), None)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "k": self.k, "rows": self.rows, "items": self.items,
                "seconds": round(self.seconds, 3), "groups": [g.to_dict() for g in self.groups]}


@dataclass
class _Rows:
    item: np.ndarray              # item index per row
    start: np.ndarray             # NaN for whole-item rows
    end: np.ndarray
    vectors: np.ndarray
    ids: list[str]                # per item
    modalities: list[str]
    paths: list[list[str]]


def find_dupes(col, threshold: float = 0.95, *, k: int = 10, where: str | None = None,
               modalities: str | Sequence[str] | None = None, max_neighbours: int = 1024,
               identical: bool = True) -> DupesResult:
    """Groups of items whose vectors (or segments' vectors) have cosine similarity >= `threshold`."""
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold is a cosine similarity in [-1, 1]; got {threshold}")
    if k < 1 or max_neighbours < k:
        raise ConfigError(f"need 1 <= k <= max_neighbours; got k={k}, max_neighbours={max_neighbours}")
    t0 = time.perf_counter()
    rows = _load_rows(col, where, col.check_modalities(modalities))
    pairs = _pairs(rows, threshold, k, max_neighbours)
    groups = _groups(rows, pairs, identical)
    return DupesResult(groups, threshold, k, len(rows.item), len(rows.ids), time.perf_counter() - t0)


def _load_rows(col, where: str | None, mods: list[str] | None) -> _Rows:
    # Segment rows copy their item's fields, but the item rows are the truth for filters (as in search).
    items = col.items(modality_filter(where, mods), ["id", "modality", "paths"])
    ids = items.column("id").to_pylist()
    index_of = {iid: n for n, iid in enumerate(ids)}
    t = col.store.scan(modality_filter(None, mods), ["id", "start", "end", "vector"])
    item = np.asarray([index_of.get(i, -1) for i in t.column("id").to_pylist()], np.int64)
    keep = item >= 0
    n = t.num_rows
    vectors = (np.asarray(t.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(n, col.dim)
               if n else np.zeros((0, col.dim), np.float32))
    nan = float("nan")
    return _Rows(item=item[keep],
                 start=np.asarray([nan if s is None else s for s in t.column("start").to_pylist()], np.float64)[keep],
                 end=np.asarray([nan if s is None else s for s in t.column("end").to_pylist()], np.float64)[keep],
                 vectors=np.ascontiguousarray(vectors[keep]), ids=ids,
                 modalities=items.column("modality").to_pylist(),
                 paths=[p or [] for p in items.column("paths").to_pylist()])


def _pairs(rows: _Rows, threshold: float, k: int, max_neighbours: int) -> dict[tuple[int, int], Pair]:
    """k-NN of every row through the ANN index; row pairs of different items above the threshold, by item pair."""
    from ..store.ann import AnnIndex

    n = len(rows.item)
    found: dict[tuple[int, int], Pair] = {}
    if n < 2:
        return found
    index = AnnIndex.build(rows.vectors, np.arange(n, dtype=np.int64))
    seen_rows: set[tuple[int, int]] = set()
    todo, want = np.arange(n), min(k + 1, n)          # +1: a row finds itself
    while len(todo):
        again = []
        for s in range(0, len(todo), 4096):           # bounds the (queries, candidates) arrays
            batch = todo[s:s + 4096]
            scores, nbrs = index.search(rows.vectors[batch], want, rescore=lambda ids: rows.vectors[ids])
            hit = (nbrs >= 0) & (scores >= threshold)
            hit &= rows.item[np.where(hit, nbrs, 0)] != rows.item[batch][:, None]
            for qi, c in zip(*np.nonzero(hit)):       # only the few qualifying pairs reach Python
                _add(found, seen_rows, rows, int(batch[qi]), int(nbrs[qi, c]), float(scores[qi, c]))
            if want < n:                              # its last neighbour still qualifies: there may be more
                again.extend(batch[np.isfinite(scores[:, -1]) & (scores[:, -1] >= threshold)].tolist())
        if not again or want >= min(n, max_neighbours):
            break
        todo, want = np.asarray(again), min(want * 4, n, max_neighbours)
    return found


def _add(found, seen_rows, rows: _Rows, q: int, j: int, score: float) -> None:
    a, b = (q, j) if rows.item[q] < rows.item[j] else (j, q)
    if (a, b) in seen_rows:                           # each row pair is found from both ends
        return
    seen_rows.add((a, b))
    key = (int(rows.item[a]), int(rows.item[b]))
    pair = found.get(key)
    if pair is None:
        pair = found[key] = Pair(rows.ids[key[0]], rows.ids[key[1]], score)
    pair.score = max(pair.score, score)
    if not (np.isnan(rows.start[a]) and np.isnan(rows.start[b])):   # a segment took part: say which one
        pair.matches.append(Match(score, *_times(rows, a), *_times(rows, b)))


def _times(rows: _Rows, r: int) -> tuple[float | None, float | None]:
    return (None, None) if np.isnan(rows.start[r]) else (float(rows.start[r]), float(rows.end[r]))


def _span(start: float | None, end: float | None) -> dict | None:
    return None if start is None else {"start": round(start, 3), "end": round(end, 3)}


def _groups(rows: _Rows, pairs: dict[tuple[int, int], Pair], identical: bool) -> list[DupeGroup]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(rows.ids)
    edges = np.asarray(list(pairs), np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    linked = np.zeros(n, bool)
    linked[edges.ravel()] = True
    by_component: dict[int, list[tuple[tuple[int, int], Pair]]] = {}
    for key, pair in pairs.items():
        by_component.setdefault(int(component[key[0]]), []).append((key, pair))
    groups = []
    for members_pairs in by_component.values():
        members = sorted({i for key, _ in members_pairs for i in key})
        best = {i: max(p.score for key, p in members_pairs if i in key) for i in members}
        ordered = sorted((p for _, p in members_pairs), key=lambda p: -p.score)
        for p in ordered:
            p.matches = sorted(p.matches, key=lambda m: -m.score)[:MAX_SEGMENT_MATCHES]
        groups.append(DupeGroup([_member(rows, i, best[i]) for i in sorted(members, key=lambda i: -best[i])],
                                ordered, max(best.values())))
    if identical:   # identical bytes at several paths, with no near-duplicate besides
        groups += [DupeGroup([_member(rows, i, 1.0)], [], 1.0)
                   for i in range(n) if not linked[i] and len(rows.paths[i]) > 1]
    return sorted(groups, key=lambda g: (-len(g.members), -g.best_score))


def _member(rows: _Rows, i: int, best: float) -> dict:
    return {"id": rows.ids[i], "modality": rows.modalities[i], "paths": rows.paths[i], "best_score": round(best, 6)}
