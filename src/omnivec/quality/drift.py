"""Drift: has what is indexed, or what is asked, moved?

Two samples of vectors (two windows of a collection by `added` time or a metadata column, two collections of one
space, or windows of a query log over time) are compared with
  - MMD with an RBF kernel (bandwidth by the median heuristic) and a permutation p-value,
  - a domain classifier's AUC (logistic regression, cross-validated): 0.5 = indistinguishable, 1.0 = separable,
and the dimensions and items that moved most are named. Query logs also give the "no good match" rate: the share of
queries whose best score is under a threshold.

The query log is JSONL, one query per line: {"time", "modality", "latency_ms", "best_score", "results",
"vector" (optional)}; a line with "text" (or "query") and no vector is embedded with the collection's space.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .diagnostics import VectorSet, cap, load_vectors, to_epoch

MAX_PER_SIDE = 1000     # MMD's kernel matrix is (2n)^2: larger samples are subsampled (seeded)


@dataclass
class MMDResult:
    mmd2: float              # unbiased estimate of the squared MMD
    p_value: float
    bandwidth: float         # sigma of the RBF kernel exp(-|x-y|^2 / (2 sigma^2))
    permutations: int
    sizes: tuple[int, int]
    null_p95: float          # the MMD^2 that chance alone exceeds 5% of the time (permutation null)

    def to_dict(self) -> dict:
        return {"mmd2": self.mmd2, "p_value": self.p_value, "bandwidth": self.bandwidth,
                "permutations": self.permutations, "sizes": list(self.sizes), "null_p95": self.null_p95}


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


def median_bandwidth(z: np.ndarray) -> float:
    """The median heuristic: sigma^2 = median squared distance over distinct pairs / 2 (Gretton et al. 2012)."""
    from sklearn.metrics.pairwise import euclidean_distances

    d2 = euclidean_distances(z, squared=True)
    med = float(np.median(d2[np.triu_indices(len(z), 1)]))
    return float(np.sqrt(med / 2)) if med > 0 else 1.0


def mmd_test(x: np.ndarray, y: np.ndarray, *, permutations: int = 500, seed: int = 0,
             max_per_side: int = MAX_PER_SIDE) -> MMDResult:
    """Two-sample test of whether x and y come from one distribution.

    Written here because neither scipy nor scikit-learn has MMD; the permutations reuse one kernel matrix and
    are evaluated together as one matrix product, which scipy.stats.permutation_test cannot do."""
    from sklearn.metrics.pairwise import rbf_kernel

    rng = np.random.default_rng(seed)
    x = _subsample(np.asarray(x, np.float64), max_per_side, rng)
    y = _subsample(np.asarray(y, np.float64), max_per_side, rng)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ConfigError(f"a two-sample test needs at least 2 vectors on each side; got {m} and {n}")
    z = np.vstack([x, y])
    sigma = median_bandwidth(z)
    kern = rbf_kernel(z, gamma=1.0 / (2 * sigma ** 2))
    total = kern.sum()
    row = kern.sum(1)
    diag = np.diag(kern)

    def stat(a: np.ndarray) -> np.ndarray:
        # a: (N, P) 0/1 membership of the first sample, one column per labelling. With b = 1 - a:
        # a'Kb = a'K1 - a'Ka and b'Kb = 1'K1 - 2a'K1 + a'Ka, so one product K @ a gives every term.
        aka = np.einsum("ip,ip->p", a, kern @ a)
        ak1 = a.T @ row
        adiag, bdiag = a.T @ diag, diag.sum() - a.T @ diag
        kxx = (aka - adiag) / (m * (m - 1))
        kyy = (total - 2 * ak1 + aka - bdiag) / (n * (n - 1))
        kxy = (ak1 - aka) / (m * n)
        return kxx + kyy - 2 * kxy

    observed = float(stat(np.r_[np.ones(m), np.zeros(n)][:, None])[0])
    labels = np.zeros((m + n, permutations))
    for p in range(permutations):
        labels[rng.permutation(m + n)[:m], p] = 1.0
    null = stat(labels)
    p_value = (1 + int((null >= observed).sum())) / (1 + permutations)
    return MMDResult(observed, p_value, sigma, permutations, (m, n), float(np.quantile(null, 0.95)))


def classifier_auc(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0,
                   max_per_side: int = MAX_PER_SIDE) -> float | None:
    """Mean cross-validated ROC AUC of a logistic regression telling x from y (None when too few to split)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(seed)
    x, y = _subsample(np.asarray(x), max_per_side, rng), _subsample(np.asarray(y), max_per_side, rng)
    folds = min(folds, len(x), len(y))
    if folds < 2:
        return None
    z = np.vstack([x, y])
    labels = np.r_[np.zeros(len(x)), np.ones(len(y))]
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(max_iter=2000), z, labels, cv=cv, scoring="roc_auc").mean())


def moved_dimensions(x: np.ndarray, y: np.ndarray, top: int = 10) -> list[dict]:
    """Dimensions ranked by the standardised difference of their means (Cohen's d with the pooled deviation)."""
    mx, my = x.mean(0), y.mean(0)
    pooled = np.sqrt((x.var(0, ddof=1) * (len(x) - 1) + y.var(0, ddof=1) * (len(y) - 1)) / (len(x) + len(y) - 2))
    effect = (my - mx) / np.where(pooled > 0, pooled, np.inf)
    order = np.argsort(-np.abs(effect), kind="stable")[:top]
    return [{"dim": int(i), "effect_size": float(effect[i]), "mean_before": float(mx[i]), "mean_after": float(my[i])}
            for i in order]


def moved_items(a: VectorSet, b: VectorSet, bandwidth: float, top: int = 10,
                max_per_side: int = MAX_PER_SIDE, seed: int = 0) -> dict:
    """The items that carry the difference, by the MMD witness function f(v) = mean k(v, b) - mean k(v, a): the
    items of b most unlike a ("new") and the items of a most unlike b ("gone")."""
    from sklearn.metrics.pairwise import rbf_kernel

    rng = np.random.default_rng(seed)
    gamma = 1.0 / (2 * bandwidth ** 2)
    ref_a = _subsample(a.vectors, max_per_side, rng)
    ref_b = _subsample(b.vectors, max_per_side, rng)

    def witness(v: np.ndarray) -> np.ndarray:
        return rbf_kernel(v, ref_b, gamma=gamma).mean(1) - rbf_kernel(v, ref_a, gamma=gamma).mean(1)

    wb, wa = witness(b.vectors), witness(a.vectors)
    return {"new": [b.item(int(i), witness=float(wb[i])) for i in np.argsort(-wb, kind="stable")[:top]],
            "gone": [a.item(int(i), witness=float(wa[i])) for i in np.argsort(wa, kind="stable")[:top]]}


def compare(a: VectorSet, b: VectorSet, *, permutations: int = 500, seed: int = 0, top: int = 10) -> dict:
    """Everything about whether b moved away from a."""
    mmd = mmd_test(a.vectors, b.vectors, permutations=permutations, seed=seed)
    return {"sizes": [len(a), len(b)], "mmd": mmd.to_dict(),
            "classifier_auc": classifier_auc(a.vectors, b.vectors, seed=seed),
            "dimensions": moved_dimensions(a.vectors.astype(np.float64), b.vectors.astype(np.float64), top),
            "items": moved_items(a, b, mmd.bandwidth, top, seed=seed),
            "modalities": [_counts(a), _counts(b)]}


def _counts(v: VectorSet) -> dict:
    mods, n = np.unique(v.modalities, return_counts=True)
    return {str(m): int(c) for m, c in zip(mods, n)}


# ---- what to compare --------------------------------------------------------------------------------------------
def collection_windows(col, *, by: str = "added", split: float | str | None = None, where_a: str | None = None,
                       where_b: str | None = None, max_items: int | None = 5000,
                       seed: int = 0) -> tuple[VectorSet, VectorSet, dict]:
    """Two windows of one collection: SQL filters where_a/where_b, or the column `by` split at `split` (before:
    < split, after: >= split; default: the median, so both halves are alike in size)."""
    if where_a or where_b:
        if not (where_a and where_b):
            raise ConfigError("give both windows: --where-a and --where-b")
        a, b = (load_vectors(col, w, max_items=max_items, seed=seed) for w in (where_a, where_b))
        return _nonempty(a, b, where_a, where_b) + ({"where_a": where_a, "where_b": where_b},)
    vs = load_vectors(col, max_items=None, time_column=by)
    known = ~np.isnan(vs.times)
    if not known.any():
        raise ConfigError(f"column {by!r} of collection {col.name!r} has no values to split on")
    if split is None:   # the median moment, cut as time_windows cuts (it refuses a column with no spread)
        try:
            cut = float(vs.times[time_windows(vs.times, 2)[1]].min())
        except ConfigError:
            raise ConfigError(f"every item has the same {by!r} (to the second): there is no before and after to "
                              f"compare; give --split or windows with --where-a/--where-b") from None
    else:
        cut = _as_time(split, by)
    a, b = vs.subset(known & (vs.times < cut)), vs.subset(known & (vs.times >= cut))
    a, b = cap(a, max_items, seed), cap(b, max_items, seed + 1)
    return _nonempty(a, b, f"{by} < {cut}", f"{by} >= {cut}") + ({"by": by, "split": cut},)


def two_collections(col_a, col_b, *, max_items: int | None = 5000, seed: int = 0) -> tuple[VectorSet, VectorSet]:
    """Two collections can be compared only if their vectors live in one space (name, version, dimension)."""
    pa, pb = col_a.pinned, col_b.pinned
    if (pa["name"], pa["version"], pa["dim"]) != (pb["name"], pb["version"], pb["dim"]):
        raise ConfigError(f"collections {col_a.name!r} ({pa['name']} {pa['version']}) and {col_b.name!r} "
                          f"({pb['name']} {pb['version']}) are in different spaces; their vectors are not comparable")
    a = load_vectors(col_a, max_items=max_items, seed=seed)
    b = load_vectors(col_b, max_items=max_items, seed=seed + 1)
    return _nonempty(a, b, col_a.name, col_b.name)


def _nonempty(a: VectorSet, b: VectorSet, name_a: str, name_b: str) -> tuple[VectorSet, VectorSet]:
    for v, name in ((a, name_a), (b, name_b)):
        if len(v) < 2:
            raise ConfigError(f"window {name!r} holds {len(v)} items; a drift test needs at least 2 on each side")
    return a, b


def _as_time(value, column: str) -> float:
    try:
        return float(value)          # numbers, also as text from the command line
    except (TypeError, ValueError):
        pass
    try:
        return to_epoch(value)
    except ValueError as e:
        raise ConfigError(f"--split for column {column!r}: {e}") from None


# ---- over time ----------------------------------------------------------------------------------------------------
TIME_RESOLUTION_S = 1.0   # times closer than this are the same moment (one indexing batch, one second of queries)


def time_windows(times: np.ndarray, windows: int) -> list[np.ndarray]:
    """Positions of up to `windows` consecutive time windows, cut at the quantiles of the times. Windows are
    defined by time values, never by row order: records of the same moment (to TIME_RESOLUTION_S) always share
    a window, so windows may differ in size, and a column with no spread is refused (ConfigError), since any
    split of it would only compare the order rows were written in."""
    moments = np.floor(np.asarray(times, np.float64) / TIME_RESOLUTION_S)
    known = moments[~np.isnan(moments)]
    if len(np.unique(known)) < 2:
        raise ConfigError("every record has the same time (to the second), so there is nothing to compare over time: "
                          "choose a column with spread (--by) or give the windows (--where-a/--where-b)")
    ordered = np.sort(known)   # window w would start at rank w*n/windows; it starts at that record's moment
    edges = np.unique(ordered[[int(len(ordered) * w / windows) for w in range(1, windows)]])
    edges = edges[edges > known.min()]           # a cut at the earliest moment would leave its window empty
    if not len(edges):                           # most records share the earliest moment: cut just after it
        edges = np.unique(known)[1:2]
    index = np.searchsorted(edges, moments, side="right")
    return [p for p in (np.flatnonzero((index == w) & ~np.isnan(moments)) for w in range(len(edges) + 1)) if len(p)]


def drift_over_time(vs: VectorSet, windows: int = 4, *, permutations: int = 300, seed: int = 0) -> list[dict]:
    """Each time window against the first one (the reference)."""
    if vs.times is None:
        raise ConfigError("drift over time needs times")
    if windows < 2:
        raise ConfigError("drift over time needs at least 2 windows")
    parts = time_windows(vs.times, windows)
    ref = vs.subset(np.isin(np.arange(len(vs)), parts[0]))
    out = []
    for n, pos in enumerate(parts):
        w = vs.subset(np.isin(np.arange(len(vs)), pos))
        row = {"window": n, "start": float(vs.times[pos].min()), "end": float(vs.times[pos].max()), "items": len(w),
               "modalities": _counts(w)}
        if n > 0 and len(w) >= 2 and len(ref) >= 2:
            mmd = mmd_test(ref.vectors, w.vectors, permutations=permutations, seed=seed + n)
            row.update(mmd2=mmd.mmd2, p_value=mmd.p_value, null_p95=mmd.null_p95,
                       classifier_auc=classifier_auc(ref.vectors, w.vectors, seed=seed))
        out.append(row)
    return out


# ---- query logs ---------------------------------------------------------------------------------------------------
@dataclass
class QueryLog:
    times: np.ndarray            # epoch seconds
    modalities: np.ndarray       # str
    best_scores: np.ndarray      # NaN where unknown
    latency_ms: np.ndarray       # NaN where unknown
    vectors: np.ndarray | None   # (n, d) unit rows, for the lines that have (or were given) one
    has_vector: np.ndarray       # (n,) bool
    path: str
    texts: list[str]             # the query text of each line ("" when it had none), to name queries
    unembedded_texts: int = 0    # texts left without a vector (no space given)

    def __len__(self) -> int:
        return len(self.times)

    def vector_set(self) -> VectorSet:
        pos = np.flatnonzero(self.has_vector)
        ids = [f"line {i + 1}" for i in pos]
        return VectorSet(self.vectors, ids, self.modalities[pos], [self.texts[i] for i in pos], len(pos),
                         self.times[pos])


def read_query_log(path: str | Path, space=None) -> QueryLog:
    """Read a JSONL query log. Lines with a "text" (or "query") string and no "vector" are embedded with `space`
    (a Space, or a function returning one, called only when there are texts) when one is given. A malformed line
    is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"query log {path} does not exist")
    times, mods, best, lat, labels, vecs, texts = [], [], [], [], [], {}, {}
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                t = to_epoch(rec["time"])
            except KeyError:
                raise ConfigError(f"{path}:{n}: query log line has no \"time\"") from None
            except ValueError as e:
                raise ConfigError(f"{path}:{n}: bad query log line: {e}") from None
            i = len(times)
            times.append(t)
            mods.append(str(rec.get("modality") or "text"))
            best.append(_number(rec.get("best_score"), path, n, "best_score"))
            lat.append(_number(rec.get("latency_ms"), path, n, "latency_ms"))
            text = rec.get("text", rec.get("query"))
            labels.append(text if isinstance(text, str) else "")
            if rec.get("vector") is not None:
                vecs[i] = np.asarray(rec["vector"], np.float64)
            elif isinstance(text, str):
                texts[i] = text
    if not times:
        raise ConfigError(f"query log {path} has no queries")
    if texts and space is not None:
        space = space() if callable(space) and not hasattr(space, "embed_text") else space
        embedded = space.embed_text(list(texts.values()))
        vecs.update(zip(texts, np.asarray(embedded, np.float64)))
    has = np.zeros(len(times), bool)
    has[list(vecs)] = True
    matrix = None
    if vecs:
        dims = {v.shape for v in vecs.values()}
        if len(dims) > 1:
            raise ConfigError(f"{path}: query vectors have different shapes: {sorted(dims)}")
        matrix = np.stack([vecs[i] for i in sorted(vecs)])
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = (matrix / np.where(norms > 0, norms, 1)).astype(np.float32)
    return QueryLog(np.asarray(times), np.asarray(mods, dtype=str), np.asarray(best, np.float64),
                    np.asarray(lat, np.float64), matrix, has, str(path), labels,
                    0 if space is not None else len(texts))


def _number(v, path: Path, n: int, name: str) -> float:
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}:{n}: {name} {v!r} is not a number") from None


def fill_best_scores(log: QueryLog, col) -> int:
    """Best scores the log lacks, from searching the collection with the logged vectors; returns how many."""
    missing = np.flatnonzero(np.isnan(log.best_scores) & log.has_vector)
    if not len(missing):
        return 0
    _check_dim(log, col)
    items = load_vectors(col, max_items=None)
    row_of = np.cumsum(log.has_vector) - 1
    log.best_scores[missing] = (log.vectors[row_of[missing]] @ items.vectors.T).max(1)
    return len(missing)


def _check_dim(log: QueryLog, col) -> None:
    if log.vectors is not None and log.vectors.shape[1] != col.dim:
        raise ConfigError(f"{log.path}: query vectors have {log.vectors.shape[1]} dimensions; collection "
                          f"{col.name!r} has {col.dim}")


def calibrated_threshold(log: QueryLog, col, *, quantile: float = 0.95, seed: int = 0) -> float:
    """A "no good match" threshold from the data: the best score a query earns when it keeps only what all logged
    queries share. Each null query is the logged queries' centroid plus a random direction of the same length as the
    query's own offset from it (so the common modality direction stays and the specific content is gone); the
    threshold is the `quantile` of the null queries' best scores against the collection. A real query whose best
    match is under it did no better than a query about nothing in particular."""
    if log.vectors is None:
        raise ConfigError("the query log has no vectors or texts to calibrate a threshold with; give --threshold")
    _check_dim(log, col)
    items = load_vectors(col, max_items=5000, seed=seed)
    if not len(items):
        raise ConfigError(f"collection {col.name!r} is empty; give --threshold")
    q = log.vectors.astype(np.float64)
    centre = q.mean(0)
    spread = np.linalg.norm(q - centre, axis=1, keepdims=True)
    g = np.random.default_rng(seed).normal(size=q.shape)
    null = centre + spread * g / np.linalg.norm(g, axis=1, keepdims=True)
    null /= np.linalg.norm(null, axis=1, keepdims=True)
    return float(np.quantile((null @ items.vectors.T.astype(np.float64)).max(1), quantile))


def no_match_rate(best_scores: np.ndarray, threshold: float) -> float | None:
    """The share of queries whose best score is under the threshold (queries with no known score are left out)."""
    known = best_scores[~np.isnan(best_scores)]
    return float((known < threshold).mean()) if known.size else None


def log_drift(log: QueryLog, *, windows: int = 4, threshold: float | None = None, permutations: int = 300,
              seed: int = 0) -> dict:
    """Per time window of the log: queries, modality mix, latency, no-match rate, and (with vectors) drift against
    the first window."""
    parts = time_windows(log.times, windows)
    rows = []
    for n, pos in enumerate(parts):
        lat = log.latency_ms[pos]
        lat = lat[~np.isnan(lat)]
        mods, counts = np.unique(log.modalities[pos], return_counts=True)
        rows.append({"window": n, "start": float(log.times[pos].min()), "end": float(log.times[pos].max()),
                     "queries": int(len(pos)), "modalities": {str(m): int(c) for m, c in zip(mods, counts)},
                     "latency_ms_p50": float(np.median(lat)) if lat.size else None,
                     "no_match_rate": no_match_rate(log.best_scores[pos], threshold) if threshold is not None
                     else None})
    out = {"log": log.path, "queries": len(log), "with_vectors": int(log.has_vector.sum()),
           "unembedded_texts": log.unembedded_texts, "threshold": threshold,
           "no_match_rate": no_match_rate(log.best_scores, threshold) if threshold is not None else None,
           "windows": rows}
    if log.vectors is None or log.has_vector.sum() < 4:
        out["vector_drift"] = ("skipped: the log has no query vectors; record them with `omnivec serve "
                               "--log-query-vectors`, or give --collection so logged texts are embedded")
        return out
    vs = log.vector_set()
    by_window = drift_over_time(vs, len(parts), permutations=permutations, seed=seed)
    if log.has_vector.all():  # the same windows: one table
        for row, w in zip(rows, by_window):
            row.update({k: w[k] for k in ("mmd2", "p_value", "null_p95", "classifier_auc") if k in w})
    else:                     # windows of the lines that have vectors
        out["vector_windows"] = by_window
    vparts = time_windows(vs.times, len(parts))
    first, last = (vs.subset(np.isin(np.arange(len(vs)), p)) for p in (vparts[0], vparts[-1]))
    out["first_vs_last"] = (compare(first, last, permutations=permutations, seed=seed) if min(len(first), len(last))
                            >= 2 else "skipped: fewer than 2 queries with vectors in the first or last window")
    return out
