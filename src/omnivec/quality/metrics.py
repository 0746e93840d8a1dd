"""Retrieval and zero-shot classification metrics over score matrices.

recall@k, top-1/top-5 accuracy and mean per-class recall are defined exactly as LAION's CLIP_benchmark defines them
(metrics/zeroshot_retrieval.py, metrics/zeroshot_classification.py), so numbers are comparable with published
benchmark tables; tests/quality/test_metrics.py runs CLIP_benchmark's own functions on the same embeddings.
CLIP_benchmark has no mAP@k, nDCG@k or MRR: those follow the standard IR definitions, named where they are computed.

Rankings sort scores in descending order; exact ties keep the lower column index first (a stable sort).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10)
_CELLS_PER_BATCH = 2_000_000  # score cells ranked at once: bounds memory for large judgement sets


def retrieval_metrics(scores: np.ndarray, relevance: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict:
    """Mean metrics over the queries (rows) of `scores` (n_queries, n_items) against `relevance` (same shape;
    booleans, or graded gains where > 0 means relevant).

    recall@k (CLIP_benchmark): 1 for a query when at least one relevant item is in its top k, else 0. This is the
      "CLIP paper" recall, not the fraction of relevant items found.
    mAP@k (trec_eval's map_cut): the sum of precision@i over the ranks i <= k holding a relevant item, divided by
      the query's number of relevant items.
    nDCG@k (scikit-learn's ndcg_score): gains are the relevance grades, discount 1/log2(rank + 1), tied scores
      averaged, normalised by the ideal ordering.
    MRR (trec_eval's recip_rank over the full ranking): 1 / rank of the first relevant item.

    Queries with no relevant item are left out (as trec_eval does); `queries` says how many were counted. A k larger
    than the number of items is evaluated at the number of items.
    """
    from sklearn.metrics import ndcg_score

    scores = np.asarray(scores, np.float32)
    relevance = np.asarray(relevance, np.float32)
    if scores.shape != relevance.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevance {relevance.shape} must be matrices of one shape")
    if scores.shape[1] < 2:
        raise ValueError("ranking metrics need at least 2 candidate items")
    judged = (relevance > 0).any(axis=1)
    scores, relevance = scores[judged], relevance[judged]
    n_queries, n_items = scores.shape
    ks = sorted({int(k) for k in ks})
    top = min(max(ks), n_items)
    sums = {name: 0.0 for k in ks for name in (f"recall@{k}", f"mAP@{k}", f"nDCG@{k}")}
    sums["MRR"] = 0.0
    step = max(1, _CELLS_PER_BATCH // n_items)
    for start in range(0, n_queries, step):
        s, rel = scores[start:start + step], relevance[start:start + step]
        order = np.argsort(-s, axis=1, kind="stable")
        hits = np.take_along_axis(rel > 0, order, axis=1)          # relevant? in rank order
        n_relevant = hits.sum(axis=1)
        sums["MRR"] += float((1.0 / (hits.argmax(axis=1) + 1)).sum())
        head = hits[:, :top]
        precision = np.cumsum(head, axis=1) / np.arange(1, top + 1)
        for k in ks:
            kk = min(k, n_items)
            sums[f"recall@{k}"] += float(head[:, :kk].any(axis=1).sum())
            sums[f"mAP@{k}"] += float(((precision[:, :kk] * head[:, :kk]).sum(axis=1) / n_relevant).sum())
            sums[f"nDCG@{k}"] += float(ndcg_score(rel, s, k=kk)) * len(s)
    out = {name: (total / n_queries if n_queries else math.nan) for name, total in sums.items()}
    return {"queries": int(n_queries), **out}


def classification_metrics(logits: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> dict:
    """Zero-shot classification of n examples into C classes from `logits` (n, C) and true class ids `targets` (n,).

    top1 / top5 (CLIP_benchmark's `accuracy`): the fraction of examples whose class is among the k best-scoring;
      top5 is NaN when there are fewer than 5 classes, as CLIP_benchmark reports it.
    mean_per_class_recall (CLIP_benchmark): scikit-learn's balanced_accuracy_score of the top-1 predictions.
    per_class_accuracy: each class's recall (its diagonal of the confusion matrix over its row sum).
    confusion_matrix: rows are true classes, columns predicted ones, in the order of `classes`.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    logits = np.asarray(logits, np.float32)
    targets = np.asarray(targets, np.int64)
    n_classes = len(classes)
    if logits.ndim != 2 or logits.shape != (len(targets), n_classes):
        raise ValueError(f"logits {logits.shape} must be (examples, classes) = ({len(targets)}, {n_classes})")
    if len(targets) == 0:
        raise ValueError("no examples to classify")
    ranked = np.argsort(-logits, axis=1, kind="stable")[:, :min(5, n_classes)]
    correct = ranked == targets[:, None]
    predicted = ranked[:, 0]
    matrix = confusion_matrix(targets, predicted, labels=np.arange(n_classes))
    support = matrix.sum(axis=1)
    return {
        "examples": int(len(targets)),
        "top1": float(correct[:, 0].mean()),
        "top5": float(correct.any(axis=1).mean()) if n_classes >= 5 else math.nan,
        "mean_per_class_recall": float(balanced_accuracy_score(targets, predicted)),
        "per_class_accuracy": {c: (float(matrix[i, i] / support[i]) if support[i] else math.nan)
                               for i, c in enumerate(classes)},
        "confusion_matrix": matrix.tolist(),
        "classes": list(classes),
    }
