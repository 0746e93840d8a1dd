"""Metrics: CLIP_benchmark's own code and omnivec's metrics give the same numbers on the same embeddings (from the
trained shapes model); the IR metrics CLIP_benchmark lacks match worked examples and scikit-learn."""
from __future__ import annotations

import builtins
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from clip_benchmark.metrics import zeroshot_classification as cb_classification
from clip_benchmark.metrics import zeroshot_retrieval as cb_retrieval
from sklearn.metrics import average_precision_score, ndcg_score

from omnivec.quality.metrics import classification_metrics, retrieval_metrics
from omnivec.spaces.prompts import DEFAULT_TEMPLATES
from omnivec.train.shapes import evaluation_scenes, sample_scenes

KS = [1, 5, 10]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def same(ours: float, theirs: float) -> bool:
    """Equal at the precision CLIP_benchmark reports: it averages in float32 (26/40 comes out as 0.64999998)."""
    return np.float32(ours) == np.float32(theirs)


class Lookup(torch.nn.Module):
    """Stands in for a CLIP model in CLIP_benchmark's loops: its "tokens" and "images" are row numbers of
    embeddings computed by omnivec, so both sides score exactly the same vectors."""

    def __init__(self, images: np.ndarray, texts: np.ndarray):
        super().__init__()
        self.images, self.texts = torch.from_numpy(images), torch.from_numpy(texts)

    def encode_image(self, rows):
        return self.images[rows]

    def encode_text(self, rows):
        return self.texts[rows]


class Loader(list):
    """A list of batches with the `.dataset.classes` CLIP_benchmark's classification reads."""

    def __init__(self, batches, classes=None):
        super().__init__(batches)
        self.dataset = SimpleNamespace(classes=classes)


@pytest.fixture(autouse=True)
def numpy2_scalars(monkeypatch):
    """CLIP_benchmark's `accuracy` calls float() on a one-element array, which NumPy 2 refuses. Its module gets a
    float() that takes the one element; every formula of CLIP_benchmark still runs as written."""
    def one_element_float(x=0.0):
        return builtins.float(x.item() if isinstance(x, np.ndarray) else x)

    monkeypatch.setattr(cb_classification, "float", one_element_float, raising=False)


@pytest.fixture(scope="module")
def captioned(shapes_clip):
    """40 held-out scenes (one per colour and shape), two captions each, so image->text has several right answers.
    "a red circle on blue" and "a red circle": the model half knows shape: recall is neither 0 nor 1."""
    scenes = evaluation_scenes(seed=31)
    captions = [[s.caption("on"), s.caption("short")] for s in scenes]
    images = shapes_clip.embed_image([s.render(64) for s in scenes])
    flat = [c for pair in captions for c in pair]
    texts = shapes_clip.embed_text(flat)
    return captions, images, texts, flat


def test_retrieval_recall_equals_clip_benchmark(captioned):
    captions, images, texts, flat = captioned
    row = {c: i for i, c in enumerate(flat)}
    batches = [(torch.arange(s, min(s + 8, len(captions))), captions[s:s + 8]) for s in range(0, len(captions), 8)]
    tokenize = lambda ts: torch.tensor([row[t] for t in ts])  # noqa: E731
    theirs = cb_retrieval.evaluate(Lookup(images, texts), Loader(batches), tokenize, "cpu", amp=False,
                                   recall_k_list=KS)
    relevance = np.zeros((len(flat), len(images)), bool)
    relevance[np.arange(len(flat)), np.repeat(np.arange(len(images)), 2)] = True
    scores = texts @ images.T
    t2i = retrieval_metrics(scores, relevance, KS)
    i2t = retrieval_metrics(scores.T, relevance.T, KS)
    for k in KS:
        assert same(t2i[f"recall@{k}"], theirs[f"image_retrieval_recall@{k}"])
        assert same(i2t[f"recall@{k}"], theirs[f"text_retrieval_recall@{k}"])
    # not a trivial agreement: at k=1 the model gets some right and some wrong, and a larger k recovers some misses
    # (whether k=5 recovers all of them depends on the model's seed, so that is not asked)
    assert 0 < t2i["recall@1"] < t2i["recall@5"] and 0 < i2t["recall@1"] < i2t["recall@10"]
    # the per-query function itself, on one matrix: CLIP-style recall is "any relevant item in the top k"
    per_query = cb_retrieval.recall_at_k(torch.from_numpy(scores), torch.from_numpy(relevance), k=1)
    assert same(t2i["recall@1"], float((per_query > 0).float().mean()))


def test_zeroshot_equals_clip_benchmark(shapes_clip):
    scenes = [s for s in sample_scenes(200, seed=9) if s.colour in COLOURS][:36]
    targets = np.asarray([COLOURS.index(s.colour) for s in scenes])
    images = shapes_clip.embed_image([s.render(64) for s in scenes])
    templates = [t.replace("{}", "{c}") for t in DEFAULT_TEMPLATES]  # CLIP_benchmark's placeholder is {c}
    prompts = [t.format(c=c) for c in COLOURS for t in templates]
    row = {p: i for i, p in enumerate(prompts)}
    batches = [(torch.arange(s, min(s + 8, len(scenes))), torch.from_numpy(targets[s:s + 8]))
               for s in range(0, len(scenes), 8)]
    theirs = cb_classification.evaluate(Lookup(images, shapes_clip.embed_text(prompts)), Loader(batches, COLOURS),
                                        lambda ts: torch.tensor([row[t] for t in ts]), COLOURS, templates, "cpu",
                                        amp=False)
    ours = classification_metrics(images @ shapes_clip.embed_labels(COLOURS).T, targets, COLOURS)
    assert ours["top1"] == theirs["acc1"]
    assert ours["top5"] == theirs["acc5"]
    assert ours["mean_per_class_recall"] == theirs["mean_per_class_recall"]
    assert ours["top1"] > 0.8  # the model knows colours
    matrix = np.asarray(ours["confusion_matrix"])
    assert matrix.shape == (6, 6) and matrix.sum() == len(scenes)
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(targets, minlength=6))
    assert np.mean(list(ours["per_class_accuracy"].values())) == pytest.approx(ours["mean_per_class_recall"])


def test_accuracy_equals_clip_benchmark_on_logits():
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(size=(50, 7)).astype(np.float32), rng.integers(0, 7, 50)
    acc1, acc5 = cb_classification.accuracy(torch.from_numpy(logits), torch.from_numpy(targets), topk=(1, 5))
    ours = classification_metrics(logits, targets, [str(i) for i in range(7)])
    assert (ours["top1"], ours["top5"]) == (acc1, acc5)
    # with fewer than 5 classes CLIP_benchmark reports top-5 as NaN
    few = classification_metrics(logits[:, :3], np.minimum(targets, 2), ["a", "b", "c"])
    assert math.isnan(few["top5"])


def test_ir_metrics_on_a_worked_example():
    # one query, five items ranked in column order; relevant items at ranks 2 and 4
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32)
    relevance = np.array([[0, 1, 0, 1, 0]], np.float32)
    m = retrieval_metrics(scores, relevance, ks=[1, 2, 5, 10])
    assert m["recall@1"] == 0 and m["recall@2"] == 1
    assert m["mAP@2"] == pytest.approx((1 / 2) / 2)          # precision@2 over both relevant items (trec_eval)
    assert m["mAP@5"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["MRR"] == pytest.approx(1 / 2)
    dcg, ideal = 1 / math.log2(3) + 1 / math.log2(5), 1 + 1 / math.log2(3)
    assert m["nDCG@5"] == pytest.approx(dcg / ideal)
    assert m["nDCG@10"] == m["nDCG@5"]                        # k beyond the item count: all items
    # a query with no relevant item is not counted
    both = retrieval_metrics(np.vstack([scores, scores]), np.vstack([relevance, np.zeros_like(relevance)]), ks=[5])
    assert both["queries"] == 1 and both["mAP@5"] == m["mAP@5"]


def test_ir_metrics_agree_with_scikit_learn_on_random_judgements():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(40, 30)).astype(np.float32)
    grades = rng.integers(0, 3, size=(40, 30)).astype(np.float32) * (rng.random((40, 30)) < 0.2)
    m = retrieval_metrics(scores, grades, ks=[5, 30])
    judged = (grades > 0).any(axis=1)
    assert m["queries"] == judged.sum()
    assert m["nDCG@5"] == pytest.approx(ndcg_score(grades[judged], scores[judged], k=5))
    # over the whole ranking, trec_eval's AP is scikit-learn's average precision
    ap = [average_precision_score(grades[i] > 0, scores[i]) for i in np.flatnonzero(judged)]
    assert m["mAP@30"] == pytest.approx(np.mean(ap))
    first = [1 / (1 + np.flatnonzero((grades[i] > 0)[np.argsort(-scores[i])])[0]) for i in np.flatnonzero(judged)]
    assert m["MRR"] == pytest.approx(np.mean(first))
