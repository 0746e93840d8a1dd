"""Recommendation: "more like these, less like those", across modalities, with diversity and exclusions.

    recs = recommend(col, like=["beach.jpg"], text="at night", modalities=["audio", "video"], k=10, diversity=0.3,
                     exclude=seen_ids)
    recs.hits        # Hit objects: id, score (similarity to the query), modality, paths, start/end of a segment

Examples are stored item ids, files (a file already indexed uses its stored vector, any other is embedded with the
collection's space) or raw vectors. Results are searched through the collection (exact or ANN, with its filters);
for audio and video the score is that of the best-matching segment, whose time range the hit carries.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, MediaError, ModalityError
from ..store.filters import sql_in

# Default weights (see query_vector): the likes together weigh as much as the text, the unlikes half as much.
LIKE_WEIGHT = 1.0
TEXT_WEIGHT = 1.0
UNLIKE_WEIGHT = 0.5
POOL_FACTOR = 5          # MMR re-ranks this many times k candidates (at least MIN_POOL)
MIN_POOL = 50


@dataclass
class Example:
    """One resolved positive or negative example."""

    source: str                 # what the caller passed: an id, a path, "<text>", "<vector>"
    vector: np.ndarray
    weight: float
    item: str | None = None     # its item id when it is stored in the collection

    def to_dict(self) -> dict:
        return {"source": self.source, "item": self.item, "weight": round(self.weight, 6)}


@dataclass
class Recommendations:
    hits: list                  # store.Hit, best first (MMR order when diversity > 0)
    query: np.ndarray
    likes: list[Example] = field(default_factory=list)
    unlikes: list[Example] = field(default_factory=list)
    texts: list[Example] = field(default_factory=list)
    diversity: float = 0.0
    excluded: int = 0

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def to_dict(self) -> dict:
        return {"hits": [{"rank": i + 1, **h.to_dict()} for i, h in enumerate(self.hits)],
                "likes": [e.to_dict() for e in self.likes], "unlikes": [e.to_dict() for e in self.unlikes],
                "texts": [e.to_dict() for e in self.texts], "diversity": self.diversity, "excluded": self.excluded}


def recommend(col, like: Iterable = (), unlike: Iterable = (), text: str | Sequence[str] | None = None, *,
              like_weights: Sequence[float] | None = None, unlike_weights: Sequence[float] | None = None,
              text_weight: float = TEXT_WEIGHT, modalities: str | Sequence[str] | None = None, k: int = 10,
              diversity: float = 0.0, exclude: Iterable[str] = (), exclude_examples: bool = True,
              where: str | None = None) -> Recommendations:
    """Items of `modalities` (default: any) like the `like` examples and the `text`, unlike the `unlike` ones.

    `diversity` in [0, 1] is 1 - MMR's lambda: 0 ranks by relevance alone; higher values prefer results unlike
    those already chosen. `exclude` holds item ids or paths never to return (already seen); the examples themselves
    are excluded too unless `exclude_examples=False`."""
    if k < 1:
        raise ConfigError(f"k must be >= 1; got {k}")
    if not 0.0 <= diversity <= 1.0:
        raise ConfigError(f"diversity is in [0, 1] (1 - MMR's lambda); got {diversity}")
    mods = col.check_modalities(modalities)
    likes = _examples(col, list(like), like_weights, LIKE_WEIGHT, "like")
    unlikes = _examples(col, list(unlike), unlike_weights, UNLIKE_WEIGHT, "unlike")
    texts = [Example(f"<text: {t}>", col.space.embed_text([t])[0], text_weight / len(_listify(text)))
             for t in _listify(text)]
    if not likes and not texts:
        raise ConfigError("a recommendation needs something to like: --like items or files, or --text")
    q = query_vector(likes + texts, unlikes)
    skip = resolve_items(col, exclude)
    if exclude_examples:
        skip |= {e.item for e in likes + unlikes if e.item}
    pool = k if diversity == 0 else max(POOL_FACTOR * k, MIN_POOL)
    hits = col.search_vector(q, k=pool, modalities=mods, where=where, exclude=skip)
    if diversity > 0:
        hits = mmr(hits, _item_vectors(col, [h.id for h in hits]), k, 1.0 - diversity)
    return Recommendations(hits[:k], q, likes, unlikes, texts, diversity, len(skip))


def query_vector(positives: Sequence[Example], negatives: Sequence[Example] = ()) -> np.ndarray:
    """Rocchio's relevance feedback without an initial query: q = sum_i w_i pos_i - sum_j v_j neg_j, normalised.

    Adding the positives moves the query towards what they share; subtracting the negatives moves it away from
    what they have and the positives lack. Negatives default to half the positives' weight because negative
    feedback is the less reliable signal (the usual Rocchio settings weigh it well below the positives):
    subtracting too much pushes the query into an empty region of the space, where every score is low and the
    ranking is noise. A photo plus a text ("at night") is
    the same sum, with the text as one more positive."""
    q = sum(e.weight * e.vector for e in positives) - sum((e.weight * e.vector for e in negatives),
                                                          np.zeros_like(positives[0].vector))
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n < 1e-6:
        raise ConfigError("the liked and unliked examples cancel out: nothing is left to recommend from")
    return (q / n).astype(np.float32)


def mmr(hits: list, vectors: dict[str, np.ndarray], k: int, lam: float) -> list:
    """Maximal marginal relevance (Carbonell & Goldstein, 1998): repeatedly take the candidate maximising
    lam * relevance - (1 - lam) * (its highest similarity to an item already taken).

    Hand-written: it is a dozen lines of numpy, and the libraries that offer it (e.g. LangChain) would be a large
    dependency for it."""
    if not hits:
        return []
    rel = np.asarray([h.score for h in hits], np.float32)
    V = np.stack([vectors[h.id] for h in hits])
    sim = V @ V.T
    chosen: list[int] = []
    closest = np.full(len(hits), -np.inf, np.float32)   # each candidate's highest similarity to the chosen
    left = np.ones(len(hits), bool)
    while len(chosen) < min(k, len(hits)):
        score = lam * rel - (1 - lam) * (closest if chosen else 0.0)
        score[~left] = -np.inf
        j = int(np.argmax(score))
        chosen.append(j)
        left[j] = False
        closest = np.maximum(closest, sim[j])
    return [hits[j] for j in chosen]


# ---- examples and exclusions ----------------------------------------------------------------------------------------
def _examples(col, values: list, weights: Sequence[float] | None, total: float, what: str) -> list[Example]:
    if weights is not None and len(weights) != len(values):
        raise ConfigError(f"{len(weights)} {what} weights for {len(values)} {what} examples")
    out = []
    for n, v in enumerate(values):
        vec, item, source = resolve_example(col, v, what)
        w = float(weights[n]) if weights is not None else total / len(values)
        out.append(Example(source, vec, w, item))
    return out


def resolve_example(col, value, what: str = "like") -> tuple[np.ndarray, str | None, str]:
    """(vector, item id or None, description) for an item id, a content hash, a file or a vector."""
    if isinstance(value, np.ndarray):
        v = np.asarray(value, np.float32).reshape(-1)
        if v.shape[0] != col.dim:
            raise ConfigError(f"{what} vector has {v.shape[0]} dimensions; collection {col.name!r} has {col.dim}")
        return v / max(float(np.linalg.norm(v)), 1e-12), None, "<vector>"
    s = str(value)
    if os.path.exists(s):
        path = str(Path(s).expanduser().resolve())
        stored = col.items(f"array_has(paths, '{_sql(path)}')", ["id", "vector"]).to_pylist()
        if stored:
            return np.asarray(stored[0]["vector"], np.float32), stored[0]["id"], s
        try:
            return col.space.embed([path])[0], None, s
        except MediaError as e:
            if e.stage == "modality":   # the file is fine; the space cannot embed its kind of content
                raise ModalityError(f"{what} {s}: {e.cause}") from None
            raise
    stored = col.items(f"id = '{_sql(s)}' OR content_hash = '{_sql(s)}'", ["id", "vector"]).to_pylist()
    if stored:
        return np.asarray(stored[0]["vector"], np.float32), stored[0]["id"], s
    raise ConfigError(f"{what} {s!r}: not an item of collection {col.name!r} and not a file")


def resolve_items(col, values: Iterable[str]) -> set[str]:
    """Item ids for ids, content hashes or paths; values that name no stored item are ignored (an already-seen
    list may well mention files this collection never held)."""
    values = [str(v).strip() for v in values if str(v).strip()]
    if not values:
        return set()
    paths = [str(Path(v).expanduser().resolve()) for v in values]
    out: set[str] = set()
    for i in range(0, len(values), 200):       # keeps each filter a reasonable length
        chunk, pchunk = values[i:i + 200], paths[i:i + 200]
        # array_has is in the filter subset every store understands (store/filters.py), array_has_any is not
        cond = " OR ".join([sql_in("id", chunk), sql_in("content_hash", chunk)] +
                           [f"array_has(paths, {_quote(p)})" for p in pchunk])
        out.update(col.items(cond, ["id"]).column("id").to_pylist())
    return out


def read_seen(path: str | Path) -> list[str]:
    """An already-seen list: one item id, content hash or path per line; `#` starts a comment line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"seen list {path}: {e.strerror or e}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _item_vectors(col, ids: list[str]) -> dict[str, np.ndarray]:
    if not ids:
        return {}
    t = col.items(sql_in("id", ids), ["id", "vector"])
    return {i: np.asarray(v, np.float32) for i, v in zip(t.column("id").to_pylist(), t.column("vector").to_pylist())}


def _listify(v) -> list:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def _sql(s: str) -> str:
    return s.replace("'", "''")


def _quote(s: str) -> str:
    return "'" + _sql(s) + "'"
