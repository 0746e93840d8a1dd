"""Why an item ranked where it did for a query: its score against the top hits, its rank, which of its segments
matched, whether it is a hub (close to everything), and which label prompts it and the query are nearest to.

Scores here are exact cosine similarities over every stored row. An item's score is its best row, the pooled
vector or one of its audio/video segments, as search ranks items; on a collection searched through the ANN index
the search may differ from these exact ranks in rare near-ties.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..store import Collection
from ..store.filters import sql_in

_QUERY_BATCH = 64    # hubness queries scored at once
_LABELS_SHOWN = 5


def explain(col: Collection, item: str, query: Any = None, *, vector: np.ndarray | None = None, k: int = 5,
            labels: Sequence[str] | None = None, hub_k: int = 10, hub_sample: int = 200,
            hub_queries: Sequence[str] | None = None, modalities: Sequence[str] | None = None,
            where: str | None = None, seed: int = 0) -> dict:
    """Explain `item` (an item id, content hash or stored path) for `query` (text or a file, or a query `vector`).

    Hubness is the item's k-occurrence: in how many of a sample of queries' top `hub_k` it appears, against the
    mean over all items. The sample is `hub_queries` (texts) or `hub_sample` stored items used as queries."""
    row = find_item(col, item)
    q = np.asarray(vector, np.float32) if vector is not None else col.query_vector(query)
    rows = _load_rows(col, modalities, where)
    if row["id"] not in set(rows["ids"]):
        raise ConfigError(f"item {row['id']} is not among the items searched (its modality {row['modality']!r} or "
                          f"the --where filter excludes it)")
    scores = rows["vectors"] @ q
    ids, best = _best_per_item(rows["ids"], scores)
    target = int(np.flatnonzero(ids == row["id"])[0])
    order = np.argsort(-best, kind="stable")
    score = float(best[target])
    rank = int((best > score).sum()) + 1
    top = [(str(ids[j]), float(best[j])) for j in order[:k]]
    result = {
        "query": query if isinstance(query, str) else None,
        "item": {"id": row["id"], "paths": row.get("paths") or [], "modality": row["modality"]},
        "score": score,
        "rank": rank,
        "of": int(len(ids)),
        "ties": int((best == score).sum()) - 1,
        "top_hits": _hydrate(col, top),
        "gap_to_top": float(best[order[0]]) - score,
        "gap_to_top_k": (float(best[order[k - 1]]) - score) if rank > k else 0.0,
        "k": k,
        **_match(rows, scores, row["id"]),
        "hubness": hubness(col, rows, row["id"], hub_k, hub_sample, hub_queries, seed),
    }
    if labels:
        vecs = col.space.embed_labels(list(labels))
        item_vec = rows["vectors"][(rows["ids"] == row["id"]) & (rows["kinds"] == "item")][0]
        result["labels"] = {"item": _nearest(labels, vecs @ item_vec), "query": _nearest(labels, vecs @ q)}
    result["summary"] = summarise(result)
    return result


def find_item(col: Collection, item: str) -> dict:
    """The stored item row for an item id, a content hash or one of its paths."""
    return col.get(col.find_item(item))


def _load_rows(col: Collection, modalities: Sequence[str] | None, where: str | None) -> dict:
    t = col.store.scan(None, ["id", "kind", "modality", "start", "end", "vector"])
    n = t.num_rows
    rows = {"ids": np.asarray(t.column("id").to_pylist(), dtype=object),
            "kinds": np.asarray(t.column("kind").to_pylist(), dtype=object),
            "modalities": np.asarray(t.column("modality").to_pylist(), dtype=object),
            "start": np.asarray(t.column("start").to_pylist(), dtype=object),
            "end": np.asarray(t.column("end").to_pylist(), dtype=object),
            "vectors": np.asarray(t.column("vector").combine_chunks().flatten().to_numpy(), np.float32)
            .reshape(n, col.dim) if n else np.zeros((0, col.dim), np.float32)}
    keep = np.ones(n, bool)
    if modalities:
        keep &= np.isin(rows["modalities"], list(modalities))
    if where:
        keep &= np.isin(rows["ids"], col.items(where, ["id"]).column("id").to_pylist())
    return {name: values[keep] for name, values in rows.items()}


def _best_per_item(row_ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, owner = np.unique(row_ids.astype(str), return_inverse=True)
    best = np.full(len(ids), -np.inf, np.float32)
    np.maximum.at(best, owner, scores)
    return ids.astype(object), best


def _match(rows: dict, scores: np.ndarray, iid: str) -> dict:
    """The item's pooled score and, for audio and video, each segment's score and the one that matched."""
    mine = rows["ids"] == iid
    pooled = float(scores[mine & (rows["kinds"] == "item")][0])
    seg = np.flatnonzero(mine & (rows["kinds"] == "segment"))
    segments = sorted(({"start": float(rows["start"][j]), "end": float(rows["end"][j]), "score": float(scores[j])}
                       for j in seg), key=lambda s: s["start"])
    matched = max(segments, key=lambda s: s["score"]) if segments else None
    return {"pooled_score": pooled, "segments": segments, "matched_segment": matched}


def hubness(col: Collection, rows: dict, iid: str, k: int, sample: int, queries: Sequence[str] | None,
            seed: int) -> dict:
    """k-occurrence of the item among sample queries (how often it is in their top k) against all items'."""
    items = np.flatnonzero(rows["kinds"] == "item")
    ids, vectors = rows["ids"][items], rows["vectors"][items]
    n = len(ids)
    if queries:
        q, self_pos = col.space.embed_text(list(queries)), None
    else:
        pick = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
        q, self_pos = vectors[pick], pick        # an item is not its own neighbour
    kk = min(k, n - (1 if self_pos is not None else 0))
    counts = np.zeros(n, np.int64)
    if kk > 0:
        counts = k_occurrence(vectors, q, kk, self_pos)
    target = int(np.flatnonzero(ids == iid)[0])
    expected = kk * len(q) / n
    hubs = np.argsort(-counts, kind="stable")[:3]
    return {
        "k": kk, "queries": int(len(q)), "sample": "texts" if queries else "items",
        "k_occurrence": int(counts[target]), "expected": expected,
        "ratio": counts[target] / expected if expected else None,
        "percentile": 100.0 * float((counts < counts[target]).mean()),
        "skewness": _skewness(counts),
        "top_hubs": [{"id": str(ids[j]), "k_occurrence": int(counts[j])} for j in hubs],
    }


def k_occurrence(candidates: np.ndarray, queries: np.ndarray, k: int,
                 self_positions: np.ndarray | None = None) -> np.ndarray:
    """How many of the queries have each candidate among their k nearest (by inner product)."""
    counts = np.zeros(len(candidates), np.int64)
    for start in range(0, len(queries), _QUERY_BATCH):
        s = queries[start:start + _QUERY_BATCH] @ candidates.T
        if self_positions is not None:
            s[np.arange(len(s)), self_positions[start:start + _QUERY_BATCH]] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        np.add.at(counts, top.ravel(), 1)
    return counts


def _skewness(counts: np.ndarray) -> float | None:
    from scipy.stats import skew

    return None if counts.std() == 0 else float(skew(counts))


def _nearest(labels: Sequence[str], sims: np.ndarray) -> list[dict]:
    order = np.argsort(-sims, kind="stable")[:_LABELS_SHOWN]
    return [{"label": labels[j], "score": float(sims[j])} for j in order]


def _hydrate(col: Collection, found: list[tuple[str, float]]) -> list[dict]:
    recs = {r["id"]: r for r in col.items(sql_in("id", [f[0] for f in found]), ["id", "modality", "paths"]).to_pylist()}
    return [{"rank": i + 1, "id": iid, "score": s, "modality": recs.get(iid, {}).get("modality"),
             "paths": recs.get(iid, {}).get("paths") or []} for i, (iid, s) in enumerate(found)]


def summarise(r: dict) -> list[str]:
    """The explanation in sentences, strongest evidence first."""
    name = (r["item"]["paths"] or [r["item"]["id"]])[0]
    top = r["top_hits"][0]
    lines = [f"{Path(name).name} ranks {r['rank']} of {r['of']} with score {r['score']:.4f}"
             + (f" ({r['ties']} items tie with it)" if r["ties"] else "") + "."]
    if r["rank"] > 1:
        lines.append(f"The top hit {Path((top['paths'] or [top['id']])[0]).name} scores {top['score']:.4f}, "
                     f"{r['gap_to_top']:.4f} higher.")
    if r["rank"] > r["k"]:
        lines.append(f"It needs {r['gap_to_top_k']:.4f} more to enter the top {r['k']}.")
    seg = r["matched_segment"]
    if seg:
        lines.append(f"Its best match is the segment {seg['start']:.1f}-{seg['end']:.1f} s (score {seg['score']:.4f}; "
                     f"the whole item's pooled vector scores {r['pooled_score']:.4f}).")
    h = r["hubness"]
    if h["expected"] and h["k_occurrence"] >= 3 * h["expected"]:
        lines.append(f"It is a hub: among the {h['k']} nearest items of {h['k_occurrence']} of {h['queries']} "
                     f"sampled {h['sample']} ({h['ratio']:.1f} times the mean), so it ranks high for many unrelated "
                     f"queries.")
    elif h["k_occurrence"] == 0:
        lines.append(f"It is an anti-hub: among the {h['k']} nearest items of none of {h['queries']} sampled "
                     f"{h['sample']}, so it is far from most of the collection.")
    labels = r.get("labels")
    if labels and labels["item"] and labels["query"] and labels["item"][0]["label"] != labels["query"][0]["label"]:
        lines.append(f"It reads as {labels['item'][0]['label']!r} (score {labels['item'][0]['score']:.4f}) while the "
                     f"query reads as {labels['query'][0]['label']!r} (score {labels['query'][0]['score']:.4f}).")
    return lines
