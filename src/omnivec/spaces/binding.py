"""Learning a map from one space's text vectors to another's, from text alone, and measuring it on held-out text.

Both spaces embed the same sentences; a map M takes space B's vector of a sentence to (near) space A's vector of it.
Candidates: ridge regression over a grid of penalties, orthogonal Procrustes (a rotation between the centred
clouds), an anchor map over a grid of temperatures (each input becomes a softmax-weighted mix of the A vectors of the
corpus sentences nearest to it in B), and optionally a one-hidden-layer MLP over a grid of weight decays.

Sentences are split three ways: candidates are fitted on "fit", chosen on "validation", and the chosen recipe is
refitted on fit + validation and reported on "heldout", which nothing was fitted or chosen on.

Why the validation score also perturbs its inputs: the map is fitted on text but used on sounds (or pictures), whose
vectors sit off the text cloud in B (the modality gap; a paired sound and caption have a cosine well below 1). A map
that is exact on text can still be wild a little way off it: on the tiny models of the tests, the ridge penalty that
scored best on text sent sounds to the wrong pictures every time, while the same penalty family scored well on inputs
turned GAP_COSINE away from the text. So candidates are ranked on clean plus perturbed validation text.

Every map is stored as named arrays (loading needs no scikit-learn): affine layers with ReLU between them (ridge,
Procrustes, MLP), or anchor keys and values (anchor map).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-4, 2, 13))
ANCHOR_TEMPERATURES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
MLP_ALPHAS = (1e-4, 1e-2, 1.0)
MLP_ITERATIONS = 400
SPLIT = (0.7, 0.15, 0.15)          # fit, validation, held-out
MIN_SENTENCES = 40
MAX_ANCHORS = 4096                 # larger corpora are summarised by k-means centroids
NEIGHBOURS = 10
GAP_COSINE = 0.9                   # perturbed validation inputs keep this cosine to the clean vector
GAP_DRAWS = 3


def unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass
class TextMap:
    """A fitted map; calling it maps rows of B vectors to unit rows of A vectors."""

    kind: str                          # "ridge" | "procrustes" | "mlp" | "anchors"
    params: dict = field(default_factory=dict)
    input_dim: int = field(init=False, default=0)
    output_dim: int = field(init=False, default=0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, np.float32)
        if h.ndim != 2 or h.shape[1] != self.input_dim:
            raise ConfigError(f"the {self.kind} map takes {self.input_dim}-d vectors, got shape {h.shape}")
        return unit(self._apply(h))

    def _apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError


@dataclass
class AffineMap(TextMap):
    """x -> relu(... relu(x W0 + b0) ...) Wn + bn."""

    weights: list[np.ndarray] = field(default_factory=list)   # (in, out) per layer
    biases: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self):
        self.input_dim, self.output_dim = int(self.weights[0].shape[0]), int(self.weights[-1].shape[1])

    def _apply(self, x: np.ndarray) -> np.ndarray:
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        return x

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"layer{i}.weight"] = np.ascontiguousarray(w, np.float32)
            out[f"layer{i}.bias"] = np.ascontiguousarray(b, np.float32)
        return out


@dataclass
class AnchorMap(TextMap):
    """x -> sum_i softmax_i(x . key_i / temperature) value_i: B's own similarities pick the corpus sentences an input
    is like (what a contrastive model's similarities are trained for, across its modalities), and the output is
    their A vectors. The temperature is the regulariser: small copies the nearest sentence, large averages many."""

    keys: np.ndarray = None            # (n, d_b) unit B vectors of anchor sentences
    values: np.ndarray = None          # (n, d_a) their unit A vectors

    def __post_init__(self):
        self.input_dim, self.output_dim = int(self.keys.shape[1]), int(self.values.shape[1])

    def _apply(self, x: np.ndarray) -> np.ndarray:
        logits = (x @ self.keys.T) / float(self.params["temperature"])
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        return (w / w.sum(axis=1, keepdims=True)) @ self.values

    def arrays(self) -> dict[str, np.ndarray]:
        return {"anchors.keys": np.ascontiguousarray(self.keys, np.float32),
                "anchors.values": np.ascontiguousarray(self.values, np.float32)}


def map_from_arrays(kind: str, arrays: dict[str, np.ndarray], params: dict | None = None) -> TextMap:
    """Rebuild a saved map; a missing or misshapen array is a ConfigError naming it."""
    params = dict(params or {})
    if kind == "anchors":
        try:
            keys, values = (np.asarray(arrays[k], np.float32) for k in ("anchors.keys", "anchors.values"))
        except KeyError as e:
            raise ConfigError(f"map weights are incomplete: no {e.args[0]}") from None
        if keys.ndim != 2 or values.ndim != 2 or len(keys) != len(values) or "temperature" not in params:
            raise ConfigError(f"anchor map: keys {keys.shape} and values {values.shape} do not pair up, or no "
                              f"temperature in {params}")
        return AnchorMap(kind, params, keys=keys, values=values)
    n = len([k for k in arrays if k.endswith(".weight")])
    try:
        weights = [np.asarray(arrays[f"layer{i}.weight"], np.float32) for i in range(n)]
        biases = [np.asarray(arrays[f"layer{i}.bias"], np.float32) for i in range(n)]
    except KeyError as e:
        raise ConfigError(f"map weights are incomplete: no {e.args[0]}") from None
    if not n or any(w.ndim != 2 or w.shape[1] != b.shape[0] for w, b in zip(weights, biases)) or \
            any(a.shape[1] != b.shape[0] for a, b in zip(weights, weights[1:])):
        raise ConfigError(f"map weights do not chain: {[w.shape for w in weights]}")
    return AffineMap(kind, params, weights=weights, biases=biases)


# ---- measuring ---------------------------------------------------------------------------------------------------
def neighbour_recall(mapped: np.ndarray, target: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean overlap of two neighbour lists among the target vectors, per sentence i: the k nearest to i's true
    vector and the k nearest to i's mapped vector (i itself excluded from both). 1.0: the map keeps neighbourhoods."""
    k = min(k, len(target) - 1)
    if k < 1:
        raise ConfigError("neighbour recall needs at least two sentences")
    true_sims, mapped_sims = target @ target.T, mapped @ target.T
    np.fill_diagonal(true_sims, -np.inf)
    np.fill_diagonal(mapped_sims, -np.inf)
    true_nn = np.argsort(-true_sims, axis=1, kind="stable")[:, :k]
    mapped_nn = np.argsort(-mapped_sims, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(true_nn, mapped_nn)]))


def scores(mapped: np.ndarray, target: np.ndarray, k: int = NEIGHBOURS) -> dict:
    """recall_at_10 (neighbour_recall), mean_cosine of mapped to true, match_at_1 (a mapped vector's nearest true
    vector is its own sentence's)."""
    sims = mapped @ target.T
    return {f"recall_at_{k}": neighbour_recall(mapped, target, k),
            "mean_cosine": float(np.mean(np.sum(mapped * target, axis=1))),
            "match_at_1": float(np.mean(sims.argmax(axis=1) == np.arange(len(target))))}


def perturb(x: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Each row turned by a random direction to the given cosine with itself."""
    noise = rng.normal(size=x.shape)
    noise -= np.sum(noise * x, axis=1, keepdims=True) * x
    return unit(cosine * x + np.sqrt(1.0 - cosine**2) * unit(noise))


def robust_scores(m: TextMap, source: np.ndarray, target: np.ndarray, seed: int) -> dict:
    """Scores on clean inputs, and averaged over GAP_DRAWS perturbations to GAP_COSINE (keys prefixed "off_text_")."""
    rng = np.random.default_rng(seed)
    clean = scores(m(source), target)
    draws = [scores(m(perturb(source, GAP_COSINE, rng)), target) for _ in range(GAP_DRAWS)]
    off = {f"off_text_{k}": float(np.mean([d[k] for d in draws])) for k in clean}
    return {**clean, **off}


def selection_score(s: dict, k: int = NEIGHBOURS) -> float:
    # What the report shows, summed: neighbourhoods kept and vectors landed on, on and a little off the text.
    return sum(s[p + m] for p in ("", "off_text_") for m in (f"recall_at_{k}", "mean_cosine"))


# ---- fitting -----------------------------------------------------------------------------------------------------
def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> AffineMap:
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=alpha, fit_intercept=True).fit(x, y)
    return AffineMap("ridge", {"alpha": alpha}, weights=[model.coef_.T.astype(np.float32)],
                     biases=[np.atleast_1d(model.intercept_).astype(np.float32)])


def fit_procrustes(x: np.ndarray, y: np.ndarray) -> AffineMap:
    """The rotation R (semi-orthogonal when the dimensions differ) that best turns centred x into centred y."""
    from scipy.linalg import orthogonal_procrustes

    mx, my = x.mean(0), y.mean(0)
    d = max(x.shape[1], y.shape[1])
    # scipy wants equal shapes: zero columns pad the smaller side, and the matching rows/columns of R are dropped.
    xp, yp = np.zeros((len(x), d)), np.zeros((len(y), d))
    xp[:, :x.shape[1]], yp[:, :y.shape[1]] = x - mx, y - my
    r, _ = orthogonal_procrustes(xp, yp)
    r = r[:x.shape[1], :y.shape[1]].astype(np.float32)
    return AffineMap("procrustes", {}, weights=[r], biases=[(my - mx @ r).astype(np.float32)])


def fit_anchors(x: np.ndarray, y: np.ndarray, temperature: float, seed: int) -> AnchorMap:
    keys, values = unit(x), unit(y)
    if len(keys) > MAX_ANCHORS:
        from sklearn.cluster import MiniBatchKMeans

        labels = MiniBatchKMeans(MAX_ANCHORS, random_state=seed, n_init=1).fit_predict(keys)
        used = np.unique(labels)
        keys = unit(np.stack([x[labels == c].mean(0) for c in used]))
        values = unit(np.stack([y[labels == c].mean(0) for c in used]))
    return AnchorMap("anchors", {"temperature": temperature}, keys=keys, values=values)


def fit_mlp(x: np.ndarray, y: np.ndarray, alpha: float, seed: int) -> AffineMap:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    hidden = int(min(512, 2 * max(x.shape[1], y.shape[1])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the iteration cap is the budget, not a failure
        model = MLPRegressor(hidden_layer_sizes=(hidden,), activation="relu", alpha=alpha, max_iter=MLP_ITERATIONS,
                             random_state=seed).fit(x, y)
    return AffineMap("mlp", {"alpha": alpha, "hidden": hidden}, weights=[w.astype(np.float32) for w in model.coefs_],
                     biases=[b.astype(np.float32) for b in model.intercepts_])


def candidates(mlp: bool) -> list[tuple[str, dict]]:
    out = [("ridge", {"alpha": a}) for a in RIDGE_ALPHAS] + [("procrustes", {})]
    out += [("anchors", {"temperature": t}) for t in ANCHOR_TEMPERATURES]
    return out + ([("mlp", {"alpha": a}) for a in MLP_ALPHAS] if mlp else [])


def fit(kind: str, params: dict, x: np.ndarray, y: np.ndarray, seed: int = 0) -> TextMap:
    if kind == "ridge":
        return fit_ridge(x, y, params["alpha"])
    if kind == "procrustes":
        return fit_procrustes(x, y)
    if kind == "anchors":
        return fit_anchors(x, y, params["temperature"], seed)
    if kind == "mlp":
        return fit_mlp(x, y, params["alpha"], seed)
    raise ConfigError(f"unknown map kind {kind!r}")


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_fit, n_val = int(round(SPLIT[0] * n)), int(round(SPLIT[1] * n))
    return order[:n_fit], order[n_fit:n_fit + n_val], order[n_fit + n_val:]


@dataclass
class Binding:
    map: TextMap
    report: dict


def learn_map(source: np.ndarray, target: np.ndarray, *, seed: int = 0, mlp: bool = True) -> Binding:
    """Fit the map source -> target (row i of each: one sentence), chosen and reported on held-out sentences."""
    source, target = np.asarray(source, np.float32), np.asarray(target, np.float32)
    if source.ndim != 2 or target.ndim != 2 or len(source) != len(target):
        raise ConfigError(f"source vectors {source.shape} and target vectors {target.shape} do not pair up")
    if len(source) < MIN_SENTENCES:
        raise ConfigError(f"the corpus has {len(source)} distinct sentences; binding needs at least {MIN_SENTENCES} "
                          f"(more is better: a few hundred varied captions)")
    fit_i, val_i, test_i = split(len(source), seed)
    tried = []
    for kind, params in candidates(mlp):
        m = fit(kind, params, source[fit_i], target[fit_i], seed)
        s = robust_scores(m, source[val_i], target[val_i], seed)
        tried.append({"kind": kind, "params": params, **{k: round(v, 4) for k, v in s.items()},
                      "score": round(selection_score(s), 4)})
    best = max(tried, key=lambda t: t["score"])
    train_i = np.concatenate([fit_i, val_i])
    chosen = fit(best["kind"], best["params"], source[train_i], target[train_i], seed)
    heldout = robust_scores(chosen, source[test_i], target[test_i], seed + 1)
    mean_map = AffineMap("mean", {}, weights=[np.zeros((source.shape[1], target.shape[1]), np.float32)],
                         biases=[target[train_i].mean(0)])
    baseline = scores(mean_map(source[test_i]), target[test_i])
    report = {"kind": chosen.kind, "params": chosen.params, "sentences": len(source),
              "split": {"fit": len(fit_i), "validation": len(val_i), "heldout": len(test_i)},
              "heldout": {k: round(v, 4) for k, v in heldout.items()},
              # what always answering the mean target vector scores: a map worth having beats it clearly
              "heldout_mean_vector_baseline": {k: round(v, 4) for k, v in baseline.items()},
              "gap_cosine": GAP_COSINE, "validation": tried}
    return Binding(chosen, report)
