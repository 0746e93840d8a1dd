"""Run spaces on the user's evaluation data: retrieval in both directions, zero-shot classification, and the cost.

Every function takes a loaded `Space` and a dataset from `datasets.py` and returns plain dicts. Items that fail to
embed are left out of the metrics and listed under `failed`; a query whose relevant items all failed is not counted.
Model loading is not timed; ms per item is the embedding wall time of the media items divided by their number.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import MediaError, OmnivecError
from ..media import Media
from ..spaces import Embedding, Space
from ..spaces.prompts import AUDIO_TEMPLATES, DEFAULT_TEMPLATES
from .datasets import AUDIO_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, RetrievalSet, ZeroShotSet
from .metrics import DEFAULT_KS, classification_metrics, retrieval_metrics


@dataclass
class Embedded:
    """Vectors of a list of inputs in input order; rows of failed inputs are zero and `ok` is False there."""

    vectors: np.ndarray
    ok: np.ndarray
    modalities: np.ndarray
    seconds: dict = field(default_factory=lambda: {"text": 0.0, "media": 0.0})   # embedding wall time
    counts: dict = field(default_factory=lambda: {"text": 0, "media": 0})
    failed: list[dict] = field(default_factory=list)


def embed_inputs(space: Space, inputs: Sequence[Any]) -> Embedded:
    """Texts (str) are embedded as text, whatever they look like; files and tar members by their content."""
    vectors = np.zeros((len(inputs), space.dim), np.float32)
    ok = np.zeros(len(inputs), bool)
    modalities = np.asarray([modality_of(x) for x in inputs], dtype=object)
    out = Embedded(vectors, ok, modalities)
    texts = [i for i, x in enumerate(inputs) if isinstance(x, str)]
    files = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
    for positions, kind in ((texts, "text"), (files, "media")):
        if not positions:
            continue
        t0 = time.perf_counter()
        results = space.embed_items([inputs[i] for i in positions], modality="text" if kind == "text" else None,
                                    on_error="return")
        out.seconds[kind] += time.perf_counter() - t0
        out.counts[kind] += len(positions)
        for i, res in zip(positions, results):
            if isinstance(res, Embedding):
                vectors[i], ok[i], modalities[i] = res.vector, True, res.modality
            else:
                out.failed.append(res.to_dict() if isinstance(res, MediaError) else {"item": str(inputs[i]),
                                                                                      "error": str(res)})
    return out


def modality_of(x: Any) -> str:
    """The modality an input will have, from its type or file suffix (content sniffing confirms it later)."""
    if isinstance(x, str):
        return "text"
    if isinstance(x, Media):
        return x.modality
    suffix = Path(x).suffix.lower()
    for modality, suffixes in (("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES), ("video", VIDEO_SUFFIXES)):
        if suffix in suffixes:
            return modality
    return "unknown"


def require_modalities(space: Space, inputs: Sequence[Any]) -> None:
    """Fail before embedding anything when the space cannot embed a modality the dataset holds."""
    for m in sorted({modality_of(x) for x in inputs} - {"unknown"}):
        space.require(m)


WARM_UP_ITEMS = 32   # a full batch: kernels are set up per batch shape, so one item alone warms up too little


def _warm_up(space: Space, inputs: Sequence[Any]) -> None:
    """Embed up to a batch of each kind untimed, so one-off start-up costs (threads, kernel set-up for the batch
    shapes the timed run uses) do not count against whichever space runs first."""
    by_kind: dict[str, list] = {}
    for x in inputs:
        group = by_kind.setdefault(modality_of(x), [])
        if len(group) < WARM_UP_ITEMS:
            group.append(x)
    for kind, group in by_kind.items():
        space.embed_items(group, modality="text" if kind == "text" else None, on_error="return")


# ---- retrieval -------------------------------------------------------------------------------------------------
def evaluate_retrieval(space: Space, data: RetrievalSet, ks: Sequence[int] = DEFAULT_KS, label: str | None = None,
                       warm_up: bool = True) -> dict:
    """Metrics per direction: queries -> items ("text->image") and items -> queries ("image->text"); queries
    of several modalities make one forward direction each."""
    require_modalities(space, list(data.queries) + list(data.items))
    if warm_up:
        _warm_up(space, list(data.queries[:WARM_UP_ITEMS]) + list(data.items[:WARM_UP_ITEMS]))
    q = embed_inputs(space, data.queries)
    it = embed_inputs(space, data.items)
    if not it.ok.any() or not q.ok.any():
        first = (it.failed or q.failed or [{}])[0]
        raise OmnivecError(f"nothing could be embedded with space {space.name!r}: first failure "
                           f"{first.get('item')}: {first.get('error')}")
    scores = q.vectors @ it.vectors.T
    directions: dict[str, dict] = {}
    _directions(directions, scores, data.relevance, q, it, ks, reverse=False)
    _directions(directions, scores.T, data.relevance.T, it, q, ks, reverse=True)
    return {
        "space": label or space.name,
        "model": space.describe(),
        "directions": directions,
        **_cost(q, it),
        "failed": q.failed + it.failed,
    }


def _directions(out: dict, scores: np.ndarray, relevance: np.ndarray, rows: Embedded, cols: Embedded,
                ks: Sequence[int], reverse: bool) -> None:
    col_mask = cols.ok
    if col_mask.sum() < 2:
        return  # one candidate cannot be ranked
    target = "+".join(sorted(set(cols.modalities[col_mask])))
    for m in sorted(set(rows.modalities[rows.ok])):
        row_mask = rows.ok & (rows.modalities == m)
        rel = relevance[row_mask][:, col_mask]
        if not (rel > 0).any():
            continue
        name = f"{m}->{target}"
        if name in out:
            name += " (reverse)" if reverse else ""
        out[name] = retrieval_metrics(scores[row_mask][:, col_mask], rel, ks)


# ---- zero-shot -------------------------------------------------------------------------------------------------
def evaluate_zeroshot(space: Space, data: ZeroShotSet, templates: Sequence[str] | None = None,
                      label: str | None = None, warm_up: bool = True) -> dict:
    """Classify each item by its nearest class prompt vector (templates ensembled per class, as CLIP does)."""
    require_modalities(space, data.items)
    if warm_up:
        _warm_up(space, data.items[:WARM_UP_ITEMS])
    it = embed_inputs(space, data.items)
    if not it.ok.any():
        first = it.failed[0]
        raise OmnivecError(f"no item could be embedded with space {space.name!r}: first failure "
                           f"{first.get('item')}: {first.get('error')}")
    mods = list(it.modalities[it.ok])
    is_audio = mods.count("audio") > len(mods) / 2
    templates = tuple(templates) if templates else (AUDIO_TEMPLATES if is_audio else DEFAULT_TEMPLATES)
    t0 = time.perf_counter()
    classifier = space.embed_labels(data.labels, templates)
    prompt_seconds = time.perf_counter() - t0
    # Cosine similarities; CLIP_benchmark multiplies by 100 first, which changes no ranking.
    logits = it.vectors[it.ok] @ classifier.T
    metrics = classification_metrics(logits, data.targets[it.ok], data.classes)
    return {
        "space": label or space.name,
        "model": space.describe(),
        **metrics,
        "templates": list(templates),
        **_cost(it),
        "prompt_seconds": round(prompt_seconds, 3),
        "failed": it.failed,
    }


# ---- side by side ----------------------------------------------------------------------------------------------
def leaders(results: list[dict], metric: str, direction: str | None = None) -> list[str]:
    """The labels of the results with the highest `metric` (in `direction` for retrieval): one, or several that
    tie. Speed never breaks a tie: it is measured, not a quality, and noisy between runs."""
    def value(r: dict) -> float:
        m = r["directions"].get(direction, {}) if direction else r
        v = m.get(metric)
        return v if v is not None and v == v else -np.inf

    top = max((value(r) for r in results), default=-np.inf)
    return [r["space"] for r in results if value(r) == top] if top > -np.inf else []


def best_by(results: list[dict], metric: str, direction: str | None = None) -> str | None:
    """The one label with the highest `metric`; None when nothing was measured or several tie (see `leaders`)."""
    top = leaders(results, metric, direction)
    return top[0] if len(top) == 1 else None


def compare_retrieval(spaces: Sequence[tuple[str, Space]], data: RetrievalSet, ks: Sequence[int] = DEFAULT_KS,
                      metric: str = "recall@1") -> dict:
    results = [evaluate_retrieval(space, data, ks, label) for label, space in spaces]
    directions = list(dict.fromkeys(d for r in results for d in r["directions"]))  # forward directions first
    return {"dataset": data.describe(), "results": results, "ranked_by": metric,
            "best": {d: best_by(results, metric, d) for d in directions},
            "tied": {d: t for d in directions if len(t := leaders(results, metric, d)) > 1}}


def compare_zeroshot(spaces: Sequence[tuple[str, Space]], data: ZeroShotSet, templates: Sequence[str] | None = None,
                     metric: str = "top1") -> dict:
    results = [evaluate_zeroshot(space, data, templates, label) for label, space in spaces]
    tied = leaders(results, metric)
    return {"dataset": data.describe(), "results": results, "ranked_by": metric, "best": best_by(results, metric),
            "tied": tied if len(tied) > 1 else []}


def _cost(*parts: Embedded) -> dict:
    """ms per media item (images, audio, video) and per text, over everything embedded for the evaluation."""
    def ms(kind: str) -> float | None:
        n = sum(p.counts[kind] for p in parts)
        return round(1000.0 * sum(p.seconds[kind] for p in parts) / n, 3) if n else None

    return {"ms_per_item": ms("media"), "ms_per_text": ms("text"),
            "seconds": round(sum(sum(p.seconds.values()) for p in parts), 3)}
