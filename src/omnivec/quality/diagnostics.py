"""Diagnostics of a collection: modality gap, hubness, effective dimensionality, outliers, near-duplicates,
score distributions per pair of modalities (to choose thresholds) and the failure rate by reason.

    report = diagnose(omnivec.open_collection("home"))
    report["hubness"]["overall"]["skewness"], report["gap"]["pairs"][0]["centroid_distance"]

Everything works on the item rows (one pooled vector per item; audio/video windows are left out). Collections larger
than `max_items` are measured on a seeded random sample, and the result says so.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..errors import ConfigError

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
HIST_BINS = 40
OUTLIER_Z = 3.5        # modified z-score cut (Iglewicz and Hoaglin) on the mean similarity to the k nearest neighbours
MAX_PAIR_SAMPLE = 20000


@dataclass
class VectorSet:
    """Item vectors with what is needed to name them: ids, modalities, first paths and (optionally) times."""
    vectors: np.ndarray          # (n, d), unit rows
    ids: list[str]
    modalities: np.ndarray       # (n,) str
    paths: list[str]
    total: int                   # items before sampling
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sampled(self) -> bool:
        return len(self) < self.total

    def subset(self, mask: np.ndarray) -> "VectorSet":
        pos = np.flatnonzero(mask)
        return VectorSet(self.vectors[pos], [self.ids[i] for i in pos], self.modalities[pos],
                         [self.paths[i] for i in pos], int(len(pos)),
                         None if self.times is None else self.times[pos])

    def item(self, i: int, **extra) -> dict:
        return {"id": self.ids[i], "modality": str(self.modalities[i]), "path": self.paths[i], **extra}


def load_vectors(col, where: str | None = None, *, max_items: int | None = 5000, seed: int = 0,
                 time_column: str | None = None) -> VectorSet:
    """The item vectors of a collection (optionally filtered by SQL `where`), sampled down to `max_items`."""
    columns = ["id", "modality", "paths", "vector"] + ([time_column] if time_column else [])
    if time_column and time_column not in col.store.columns():
        raise ConfigError(f"collection {col.name!r} has no column {time_column!r}; columns: "
                          f"{', '.join(c for c in col.store.columns() if c != 'vector')}")
    t = col.items(where, columns)   # a bad filter is a ConfigError naming it (Collection.items)
    n = t.num_rows
    vectors = (np.asarray(t.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(n, col.dim)
               if n else np.zeros((0, col.dim), np.float32))
    times = _numeric_times(t.column(time_column).to_pylist(), time_column) if time_column else None
    vs = VectorSet(vectors, t.column("id").to_pylist(), np.asarray(t.column("modality").to_pylist(), dtype=str),
                   [(p or [""])[0] for p in t.column("paths").to_pylist()], n, times)
    return cap(vs, max_items, seed)


def cap(vs: VectorSet, max_items: int | None, seed: int = 0) -> VectorSet:
    """A seeded random sample of at most max_items items (remembering how many there were)."""
    if max_items is None or len(vs) <= max_items:
        return vs
    keep = np.zeros(len(vs), bool)
    keep[np.random.default_rng(seed).choice(len(vs), max_items, replace=False)] = True
    sub = vs.subset(keep)
    sub.total = vs.total
    return sub


def to_epoch(value) -> float:
    """A time as epoch seconds: numbers as they are, ISO 8601 strings (UTC unless they say otherwise)."""
    from datetime import datetime, timezone

    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        d = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is neither a number nor an ISO 8601 time") from None
    return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()


def _numeric_times(values: list, column: str) -> np.ndarray:
    """A column's values as epoch seconds (see to_epoch); missing values as NaN."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is not None:
            try:
                out[i] = to_epoch(v)
            except ValueError as e:
                raise ConfigError(f"column {column!r}: {e}") from None
    return out


# ---- neighbours -----------------------------------------------------------------------------------------------------
def neighbours(queries: np.ndarray, targets: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and positions of each query's k nearest targets; targets=None means the queries
    themselves, each point excluded from its own list (scikit-learn does that when no query set is passed)."""
    from sklearn.neighbors import NearestNeighbors

    base = queries if targets is None else targets
    k = min(k, len(base) - (1 if targets is None else 0))
    if k < 1:
        return np.zeros((len(queries), 0)), np.zeros((len(queries), 0), int)
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(base)
    dist, idx = nn.kneighbors(None if targets is None else queries, n_neighbors=k)
    return 1.0 - dist, idx


# ---- modality gap ---------------------------------------------------------------------------------------------------
def mean_pair_similarity(v: np.ndarray) -> float:
    """Mean cosine over all distinct pairs of unit rows, exactly, from the norm of their sum."""
    n = len(v)
    s = v.sum(0, dtype=np.float64)
    return float((s @ s - n) / (n * (n - 1))) if n > 1 else float("nan")


def modality_gap(vs: VectorSet) -> dict:
    """For each pair of modalities: distance between their centroids (Liang et al., "Mind the Gap"), and how
    cross-modal scores compare with same-modality ones (mean over all pairs, and mean best match)."""
    mods = sorted(set(vs.modalities.tolist()))
    groups = {m: vs.vectors[vs.modalities == m].astype(np.float64) for m in mods}
    pairs = []
    for a, b in combinations(mods, 2):
        va, vb = groups[a], groups[b]
        ca, cb = va.mean(0), vb.mean(0)
        within_a, within_b = mean_pair_similarity(va), mean_pair_similarity(vb)
        best_ab = neighbours(va, vb, 1)[0][:, 0].mean()
        best_ba = neighbours(vb, va, 1)[0][:, 0].mean()
        best_aa = neighbours(va, None, 1)[0]
        best_bb = neighbours(vb, None, 1)[0]
        pairs.append({
            "modalities": [a, b], "items": [len(va), len(vb)],
            "centroid_distance": float(np.linalg.norm(ca - cb)),
            "centroid_norms": [float(np.linalg.norm(ca)), float(np.linalg.norm(cb))],
            "mean_score": {"cross": float(ca @ cb), f"within_{a}": within_a, f"within_{b}": within_b},
            "mean_best_match": {f"{a}->{b}": float(best_ab), f"{b}->{a}": float(best_ba),
                                f"{a}->{a}": float(best_aa.mean()) if best_aa.size else None,
                                f"{b}->{b}": float(best_bb.mean()) if best_bb.size else None},
        })
    return {"modalities": {m: int(len(g)) for m, g in groups.items()}, "pairs": pairs}


# ---- hubness --------------------------------------------------------------------------------------------------------
def k_occurrence(idx: np.ndarray, n_targets: int) -> np.ndarray:
    """N_k: how many of the k-NN lists each target appears in."""
    return np.bincount(idx.ravel(), minlength=n_targets)


def hubness_stats(nk: np.ndarray, k: int, names: VectorSet | None = None, positions: np.ndarray | None = None,
                  top: int = 10) -> dict:
    """Skewness of the k-occurrence distribution (Radovanovic et al. 2010: the standardised third moment), the
    share of items no list contains (antihubs), the share of all list slots taken by the top 1% of items, and the
    hub items themselves."""
    from scipy.stats import skew

    n = len(nk)
    order = np.argsort(-nk, kind="stable")
    top1 = max(1, int(np.ceil(0.01 * n)))
    slots = nk.sum()
    out = {"k": k, "items": int(n), "skewness": float(skew(nk)) if n > 2 and nk.std() > 0 else 0.0,
           "max_occurrence": int(nk.max()) if n else 0, "antihub_rate": float((nk == 0).mean()) if n else 0.0,
           "top1pct_slot_share": float(nk[order[:top1]].sum() / slots) if slots else 0.0,
           "histogram": np.bincount(nk).tolist()}
    if names is not None:
        pos = positions if positions is not None else np.arange(n)
        lists = slots / k if k else 0
        out["hubs"] = [names.item(int(pos[i]), occurrence=int(nk[i]), list_share=float(nk[i] / lists) if lists else 0)
                       for i in order[:top] if nk[i] > 0]
    return out


def hubness(vs: VectorSet, k: int = 10, top: int = 10) -> dict:
    """Hubness among all items, and for each (query modality -> target modality) pair when there are several."""
    _, idx = neighbours(vs.vectors, None, k)
    result = {"overall": hubness_stats(k_occurrence(idx, len(vs)), idx.shape[1], vs, top=top), "pairs": []}
    mods = sorted(set(vs.modalities.tolist()))
    for a in mods:
        for b in mods:
            if a == b:
                continue
            qa, tb = np.flatnonzero(vs.modalities == a), np.flatnonzero(vs.modalities == b)
            _, idx = neighbours(vs.vectors[qa], vs.vectors[tb], k)
            result["pairs"].append({"query": a, "target": b, **hubness_stats(
                k_occurrence(idx, len(tb)), idx.shape[1], vs, tb, top=top)})
    return result


# ---- effective dimensionality ---------------------------------------------------------------------------------------
def effective_dimensionality(vectors: np.ndarray, variance: float = 0.9) -> dict:
    """Participation ratio of the covariance eigenvalues, (sum l)^2 / sum l^2, and the number of principal
    components that explain `variance` of the variance."""
    n, d = vectors.shape
    if n < 3:
        return {"items": int(n), "dim": int(d), "participation_ratio": None, f"components_{int(variance * 100)}": None}
    # Only the eigenvalues are needed: numpy's symmetric eigensolver on the d x d covariance is about 10 times
    # faster than scikit-learn's PCA, which also builds the components.
    lam = np.clip(np.linalg.eigvalsh(np.cov(vectors.astype(np.float64), rowvar=False))[::-1], 0, None)
    total = lam.sum()
    ratio = np.cumsum(lam) / total if total > 0 else np.ones_like(lam)
    return {"items": int(n), "dim": int(d),
            "participation_ratio": float(total ** 2 / (lam ** 2).sum()) if total > 0 else 0.0,
            f"components_{int(variance * 100)}": int(np.searchsorted(ratio, variance - 1e-12) + 1),
            "explained_variance_ratio": (lam[:50] / total).tolist() if total > 0 else []}


def dimensionality(vs: VectorSet) -> dict:
    out = {"overall": effective_dimensionality(vs.vectors)}
    for m in sorted(set(vs.modalities.tolist())):
        out[m] = effective_dimensionality(vs.vectors[vs.modalities == m])
    return out


# ---- outliers and duplicates ----------------------------------------------------------------------------------------
def robust_z(x: np.ndarray) -> np.ndarray:
    """Modified z-scores: (x - median) / (1.4826 * MAD), falling back to the mean absolute deviation when over half
    the values are equal."""
    med = np.median(x)
    mad = np.median(np.abs(x - med)) * 1.4826
    if mad == 0:
        mad = np.mean(np.abs(x - med)) * 1.2533
    return (x - med) / mad if mad > 0 else np.zeros_like(x)


def outliers(vs: VectorSet, k: int = 10, top: int = 20) -> dict:
    """Items whose mean similarity to their k nearest neighbours of the same modality is far below the norm
    (modified z-score under -3.5): things unlike anything else in the collection, or broken inputs."""
    flagged, per_modality = [], {}
    for m in sorted(set(vs.modalities.tolist())):
        pos = np.flatnonzero(vs.modalities == m)
        sims, _ = neighbours(vs.vectors[pos], None, k)
        if sims.shape[1] == 0:
            continue
        mean_sim = sims.mean(1)
        z = robust_z(mean_sim)
        cut = np.flatnonzero(z < -OUTLIER_Z)
        per_modality[m] = {"items": int(len(pos)), "median_knn_similarity": float(np.median(mean_sim)),
                           "outliers": int(len(cut))}
        flagged += [vs.item(int(pos[i]), knn_similarity=float(mean_sim[i]), z=float(z[i])) for i in cut]
    flagged.sort(key=lambda r: r["z"])
    return {"k": k, "rule": f"modified z-score of mean {k}-NN similarity < -{OUTLIER_Z}",
            "rate": len(flagged) / len(vs) if len(vs) else 0.0, "count": len(flagged),
            "per_modality": per_modality, "items": flagged[:top]}


def duplicates(vs: VectorSet, threshold: float = 0.98, top: int = 20) -> dict:
    """Near-duplicates: groups of same-modality items linked by cosine >= threshold (byte-identical files are
    already one item). The rate is the share of items that are redundant copies (group size - 1 per group)."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import NearestNeighbors

    pairs, redundant, grouped = [], 0, 0
    for m in sorted(set(vs.modalities.tolist())):
        pos = np.flatnonzero(vs.modalities == m)
        if len(pos) < 2:
            continue
        v = vs.vectors[pos]
        # Without a query set scikit-learn leaves each point out of its own neighbourhood: no self-links.
        graph = NearestNeighbors(radius=1.0 - threshold, metric="cosine", algorithm="brute").fit(v) \
            .radius_neighbors_graph(mode="connectivity")
        _, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels)
        redundant += int((sizes - 1).sum())
        grouped += int(sizes[sizes > 1].sum())
        coo = graph.tocoo()
        for i, j in zip(coo.row, coo.col):
            if i < j:
                pairs.append((float(v[i] @ v[j]), int(pos[i]), int(pos[j])))
    pairs.sort(key=lambda p: -p[0])
    return {"threshold": threshold, "rate": redundant / len(vs) if len(vs) else 0.0, "redundant_items": redundant,
            "items_with_duplicate": grouped, "pairs": len(pairs),
            "examples": [{"score": s, "a": vs.item(i), "b": vs.item(j)} for s, i, j in pairs[:top]]}


# ---- score distributions --------------------------------------------------------------------------------------------
def distribution(scores: np.ndarray, bins: np.ndarray) -> dict:
    scores = np.asarray(scores, np.float64)
    if not scores.size:
        return {"count": 0}
    return {"count": int(scores.size), "mean": float(scores.mean()), "std": float(scores.std()),
            "quantiles": {f"p{q * 100:g}": float(np.quantile(scores, q)) for q in QUANTILES},
            "histogram": np.histogram(scores, bins)[0].tolist()}


def random_pair_scores(a: np.ndarray, b: np.ndarray | None, rng: np.random.Generator,
                       limit: int = MAX_PAIR_SAMPLE) -> np.ndarray:
    """Scores of random (query, target) pairs: every pair when few, else a sample; b=None pairs a with itself
    without self-pairs."""
    same = b is None
    b = a if same else b
    if len(a) * len(b) <= limit:
        s = (a @ b.T).astype(np.float64)
        return s[~np.eye(len(a), dtype=bool)] if same else s.ravel()
    i = rng.integers(0, len(a), limit)
    j = rng.integers(0, len(b), limit)
    if same:
        keep = i != j
        i, j = i[keep], j[keep]
    return np.einsum("ij,ij->i", a[i], b[j]).astype(np.float64)


def score_distributions(vs: VectorSet, seed: int = 0) -> dict:
    """For each ordered pair of modalities, the scores of random pairs (what an unrelated item scores) and of each
    query item's best match. A search threshold above the random pairs' p99 keeps chance matches out."""
    rng = np.random.default_rng(seed)
    mods = sorted(set(vs.modalities.tolist()))
    pairs = []
    for a in mods:
        for b in mods:
            va, vb = vs.vectors[vs.modalities == a], vs.vectors[vs.modalities == b]
            if a == b and len(va) < 2:
                continue
            rand = random_pair_scores(va, None if a == b else vb, rng)
            best = neighbours(va, None if a == b else vb, 1)[0][:, 0]
            lo, hi = float(min(rand.min(), best.min())), float(max(rand.max(), best.max()))
            if hi - lo < 0.05:  # one or a few alike scores: a readable window around them
                lo, hi = (lo + hi) / 2 - 0.025, (lo + hi) / 2 + 0.025
            edges = np.linspace(lo, hi + 1e-9, HIST_BINS + 1)
            pairs.append({"query": a, "target": b, "edges": edges.tolist(),
                          "random_pairs": distribution(rand, edges), "best_match": distribution(best, edges),
                          "noise_floor_p99": float(np.quantile(rand, 0.99))})
    return {"pairs": pairs}


# ---- failures -------------------------------------------------------------------------------------------------------
def failures(col, top: int = 10) -> dict:
    """What happened to every file offered to the collection: indexed, skipped (why) and failed (at which stage,
    with the commonest messages, numbers and quoted names blanked so that alike messages count together)."""
    files = col.store.all_files().to_pylist()
    status = Counter(f["status"] for f in files)
    skipped = Counter(f["reason"] for f in files if f["status"] == "skipped")
    errors = col.errors()
    by_stage = Counter(e["stage"] for e in errors)
    messages = Counter((e["stage"], _message_shape(e["error"])) for e in errors)
    seen = len(files)
    return {"files": seen, "status": dict(status), "failure_rate": status.get("failed", 0) / seen if seen else 0.0,
            "skip_rate": status.get("skipped", 0) / seen if seen else 0.0,
            "failed_by_stage": dict(by_stage.most_common()), "skipped_by_reason": dict(skipped.most_common()),
            "top_errors": [{"stage": s, "error": m, "count": c} for (s, m), c in messages.most_common(top)]}


def _message_shape(message: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message or ""))


def json_ready(obj):
    """Plain JSON values: numpy types as Python ones, NaN and infinities as null (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


# ---- all together ---------------------------------------------------------------------------------------------------
def diagnose_vectors(vs: VectorSet, *, k: int = 10, duplicate_threshold: float = 0.98, seed: int = 0) -> dict:
    if len(vs) < 3:
        raise ConfigError(f"diagnostics need at least 3 items; got {len(vs)}")
    return json_ready({
        "items": len(vs), "measured": len(vs), "sampled": vs.sampled, "dim": int(vs.vectors.shape[1]),
        "modalities": dict(Counter(vs.modalities.tolist())), "gap": modality_gap(vs), "hubness": hubness(vs, k),
        "dimensionality": dimensionality(vs), "outliers": outliers(vs, k),
        "duplicates": duplicates(vs, duplicate_threshold), "scores": score_distributions(vs, seed)})


def diagnose(col, *, k: int = 10, max_items: int = 5000, duplicate_threshold: float = 0.98, seed: int = 0,
             vectors: VectorSet | None = None) -> dict:
    """Every diagnostic of a collection, as one JSON-ready dict (on `vectors` when already loaded from it)."""
    vs = vectors if vectors is not None else load_vectors(col, max_items=max_items, seed=seed)
    if len(vs) < 3:
        raise ConfigError(f"collection {col.name!r} has {len(vs)} items; diagnostics need at least 3")
    found = diagnose_vectors(vs, k=k, duplicate_threshold=duplicate_threshold, seed=seed)
    return json_ready({"collection": col.name, "space": col.pinned, **found, "items": vs.total,
                       "failures": failures(col)})
