"""`omnivec explain`: a red query against a mixed collection (shape images and videos, trained shapes model)
explains a blue item's low rank, names the video segment that matched, and measures hubness."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnivec import open_collection
from omnivec.cli import main
from omnivec.errors import ConfigError
from omnivec.ingest import index
from omnivec.quality.explain import explain, k_occurrence
from omnivec.samples import make_sample_folder

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]
RED_QUERY = "a picture of a red shape"


@pytest.fixture(scope="module")
def collection(tmp_path_factory, shapes_clip_dir):
    """Six colour/shape concepts x 2 images, and two videos: 1 s black, 4 s of one shape, 4 s of another."""
    folder = make_sample_folder(tmp_path_factory.mktemp("mixed"), per_concept=2, image_size=64)
    col = open_collection(tmp_path_factory.mktemp("cols") / "mixed", space=str(shapes_clip_dir), create=True)
    summary = index(col, [folder])
    assert summary.indexed == 14 and not summary.failed
    return col, folder


def test_a_blue_items_low_rank_is_explained(collection):
    col, folder = collection
    blue = folder / "images" / "blue-square-0.jpg"
    r = explain(col, str(blue), RED_QUERY, k=5, labels=COLOURS)
    # rank and score agree with what search returns for the same query
    hits = col.search(RED_QUERY, k=len(col))
    position = next(i for i, h in enumerate(hits) if str(blue) in h.paths)
    assert r["rank"] == position + 1 and r["of"] == len(col) == 14
    assert r["score"] == pytest.approx(hits[position].score, abs=1e-6)
    # every red item outranks it, by the reported gap
    red_scores = [h.score for h in hits if any("red-" in Path(p).name for p in h.paths)]
    assert r["rank"] > len(red_scores) and r["score"] < min(red_scores)
    assert r["top_hits"][0]["score"] == pytest.approx(hits[0].score, abs=1e-6)
    assert r["gap_to_top"] == pytest.approx(r["top_hits"][0]["score"] - r["score"]) and r["gap_to_top"] > 0
    assert r["gap_to_top_k"] == pytest.approx(r["top_hits"][4]["score"] - r["score"])
    # it reads as blue, the query as red
    assert r["labels"]["item"][0]["label"] == "blue" and r["labels"]["query"][0]["label"] == "red"
    text = " ".join(r["summary"])
    assert f"ranks {r['rank']} of 14" in text and "reads as 'blue'" in text and "query reads as 'red'" in text
    assert r["matched_segment"] is None and r["segments"] == []


def test_the_matching_video_segment_is_named(collection, capsys):
    col, folder = collection
    video = folder / "videos" / "red-circle-then-blue-square.mp4"
    red = explain(col, str(video), RED_QUERY)
    blue = explain(col, str(video), "a picture of a blue shape")
    # frames 1-4 s show the red circle (segment 0-5 s), frames 5-8 s the blue square (segment 5-9 s)
    assert (red["matched_segment"]["start"], red["matched_segment"]["end"]) == (0.0, 5.0)
    assert (blue["matched_segment"]["start"], blue["matched_segment"]["end"]) == (5.0, 9.0)
    assert [(s["start"], s["end"]) for s in red["segments"]] == [(0.0, 5.0), (5.0, 9.0)]
    # an item's score is its best row, as search ranks it
    assert red["score"] == pytest.approx(max(red["pooled_score"], red["matched_segment"]["score"]))
    assert red["matched_segment"]["score"] > red["pooled_score"]
    assert red["rank"] < blue["of"] and "segment 0.0-5.0 s" in " ".join(red["summary"])
    # the same through the command line, by item id
    with pytest.raises(SystemExit) as e:
        main(["explain", RED_QUERY, red["item"]["id"], "--collection", str(col.folder), "--json"])
    assert e.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["matched_segment"] == red["matched_segment"] and printed["rank"] == red["rank"]
    with pytest.raises(SystemExit) as e:
        main(["explain", RED_QUERY, str(video), "--collection", str(col.folder), "--labels", "red,blue"])
    out = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and "segments of the item" in out and "hubness:" in out and "nearest labels" in out


def test_hubness_counts_and_unknown_items(collection):
    col, folder = collection
    r = explain(col, str(folder / "images" / "green-triangle-0.jpg"), RED_QUERY, hub_k=3,
                hub_queries=["a green shape", "a green triangle", "a picture of a green shape", "a red shape"])
    h = r["hubness"]
    assert (h["k"], h["queries"], h["sample"]) == (3, 4, "texts") and h["expected"] == pytest.approx(3 * 4 / 14)
    assert h["k_occurrence"] >= 3   # the green queries find the green triangle
    with pytest.raises(ConfigError, match="has no item"):
        explain(col, "/nowhere/x.jpg", RED_QUERY)
    with pytest.raises(ConfigError, match="excludes it"):
        explain(col, str(folder / "images" / "blue-square-0.jpg"), RED_QUERY, modalities=["video"])


def test_k_occurrence_finds_a_planted_hub():
    # Pure math: queries scattered around one direction; the candidate on that direction is in every top-k.
    rng = np.random.default_rng(0)
    dim, n = 16, 50
    centre = np.eye(dim, dtype=np.float32)[0]
    candidates = rng.normal(size=(n, dim)).astype(np.float32)
    candidates[7] = centre
    queries = centre + 0.15 * rng.normal(size=(40, dim)).astype(np.float32)
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    counts = k_occurrence(candidates, queries, k=5)
    assert counts[7] == 40 and counts.sum() == 5 * 40 and counts.argmax() == 7
    # items as queries: each is its own nearest neighbour unless its own position is excluded
    assert (k_occurrence(candidates, candidates, k=1) == 1).all()
    others = k_occurrence(candidates, candidates, k=1, self_positions=np.arange(n))
    assert others.sum() == n and (others != 1).any()
