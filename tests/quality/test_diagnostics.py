"""Diagnostics on collections with planted properties: a modality gap of known size, hubs, a known effective
dimensionality, outliers, near-duplicates and failures. The numbers must find what was planted (and not find it in
controls). Vectors are generated (a pure math test); the collection is a real one, pinned to the small trained shapes
space."""
from __future__ import annotations

import numpy as np
import pytest

import omnivec
from omnivec.quality.diagnostics import diagnose, load_vectors, modality_gap, neighbours

D = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_collection(path, space, groups: dict[str, list[tuple[str, np.ndarray]]]):
    """groups: modality -> [(path prefix, vectors)]; item paths are '/<prefix>/<i>' so tests can name them."""
    col = omnivec.open_collection(path, space=space, create=True)
    for modality, parts in groups.items():
        for prefix, vecs in parts:
            names = [f"/{prefix}/{i}" for i in range(len(vecs))]
            col.add_vectors(vecs, ids=names, modality=modality, paths=[[n] for n in names])
    return col


def gapped(rng, n: int, h: float, sign: float) -> np.ndarray:
    """Unit vectors whose first coordinate is sign * h and whose rest is a random direction: the centroids of the
    two signs lie 2h apart (up to sampling noise)."""
    rest = unit(rng.normal(size=(n, D - 1)))
    return np.hstack([np.full((n, 1), sign * h), np.sqrt(1 - h * h) * rest]).astype(np.float32)


@pytest.fixture(scope="module")
def gap_col(tmp_path_factory, shapes_clip):
    assert shapes_clip.dim == D
    rng = np.random.default_rng(0)
    return make_collection(tmp_path_factory.mktemp("gap") / "c", shapes_clip,
                           {"text": [("t", gapped(rng, 500, 0.25, -1))], "image": [("i", gapped(rng, 500, 0.25, 1))]})


def test_planted_modality_gap_is_measured_at_its_size(gap_col):
    d = diagnose(gap_col, k=10)
    assert d["items"] == 1000 and d["modalities"] == {"text": 500, "image": 500}
    (pair,) = d["gap"]["pairs"]
    assert pair["modalities"] == ["image", "text"]
    assert pair["centroid_distance"] == pytest.approx(0.5, abs=0.03)
    # same-modality pairs share +h^2 on the gap axis, cross-modal pairs -h^2: cross scores sit below both
    ms = pair["mean_score"]
    assert ms["cross"] == pytest.approx(-0.0625, abs=0.01)
    assert ms["within_text"] == pytest.approx(0.0625, abs=0.01)
    assert ms["within_image"] == pytest.approx(0.0625, abs=0.01)
    best = pair["mean_best_match"]
    assert best["text->image"] < best["text->text"] and best["image->text"] < best["image->image"]


def test_no_gap_control(tmp_path, shapes_clip):
    rng = np.random.default_rng(1)
    col = make_collection(tmp_path / "c", shapes_clip, {"text": [("t", gapped(rng, 500, 0.0, -1))],
                                                      "image": [("i", gapped(rng, 500, 0.0, 1))]})
    (pair,) = modality_gap(load_vectors(col))["pairs"]
    assert pair["centroid_distance"] < 0.12  # sampling noise only: about sqrt(2 / 500)
    assert abs(pair["mean_score"]["cross"]) < 0.01


def test_score_distributions_give_thresholds(gap_col):
    d = diagnose(gap_col)
    pairs = {(p["query"], p["target"]): p for p in d["scores"]["pairs"]}
    assert set(pairs) == {("image", "image"), ("image", "text"), ("text", "image"), ("text", "text")}
    vs = load_vectors(gap_col)
    t, i = vs.vectors[vs.modalities == "text"], vs.vectors[vs.modalities == "image"]
    cross = pairs[("text", "image")]
    # 500 x 500 pairs exceed the sample cap, so quantiles are estimated: close to the exact ones
    exact = np.quantile((t @ i.T).ravel(), [0.5, 0.99])
    assert cross["random_pairs"]["quantiles"]["p50"] == pytest.approx(exact[0], abs=0.01)
    assert cross["noise_floor_p99"] == pytest.approx(exact[1], abs=0.02)
    assert cross["best_match"]["quantiles"]["p50"] == pytest.approx(np.median((t @ i.T).max(1)), abs=1e-5)
    assert sum(cross["random_pairs"]["histogram"]) == cross["random_pairs"]["count"]
    assert len(cross["edges"]) == len(cross["random_pairs"]["histogram"]) + 1
    # the gap shows in the thresholds: chance scores across modalities sit below chance scores within one
    assert cross["random_pairs"]["quantiles"]["p50"] < pairs[("text", "text")]["random_pairs"]["quantiles"]["p50"]


def test_planted_hubs_are_the_top_hubs(tmp_path, shapes_clip):
    rng = np.random.default_rng(2)
    centre = unit(rng.normal(size=(1, D)))
    background = unit(centre + 0.35 * rng.normal(size=(800, D)))
    hubs = unit(centre + 0.01 * rng.normal(size=(5, D)))          # almost at the data's centre
    col = make_collection(tmp_path / "c", shapes_clip, {"image": [("bg", background), ("hub", hubs)]})
    h = diagnose(col, k=10)["hubness"]["overall"]
    assert {x["path"] for x in h["hubs"][:5]} == {f"/hub/{i}" for i in range(5)}
    # an item is in k/n = 1.2% of the lists on average; each hub is in over 10 times that
    assert all(x["list_share"] > 0.12 for x in h["hubs"][:5])
    assert h["skewness"] > 5

    control = make_collection(tmp_path / "ctl", shapes_clip, {"image": [("bg", background)]})
    hc = diagnose(control, k=10)["hubness"]["overall"]
    assert hc["skewness"] < h["skewness"] / 3
    assert h["top1pct_slot_share"] > 2 * hc["top1pct_slot_share"]


def test_cross_modal_hubs_found_per_modality_pair(tmp_path, shapes_clip):
    """Images that sit at the centre of the text queries are returned for every text query."""
    rng = np.random.default_rng(3)
    c_text, c_image = unit(rng.normal(size=(2, D)))
    texts = unit(c_text + 0.4 * rng.normal(size=(300, D)))
    images = unit(c_image + 0.4 * rng.normal(size=(300, D)))
    hubs = unit(c_text + 0.05 * c_image + 0.01 * rng.normal(size=(3, D)))
    col = make_collection(tmp_path / "c", shapes_clip,
                          {"text": [("t", texts)], "image": [("i", images), ("hub", hubs)]})
    pairs = {(p["query"], p["target"]): p for p in diagnose(col, k=5)["hubness"]["pairs"]}
    t2i = pairs[("text", "image")]
    assert {x["path"] for x in t2i["hubs"][:3]} == {"/hub/0", "/hub/1", "/hub/2"}
    assert t2i["skewness"] > 5 and all(x["list_share"] > 0.5 for x in t2i["hubs"][:3])


def test_effective_dimensionality_of_a_planted_subspace(tmp_path, shapes_clip):
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(D, 8)))[0].T                 # 8 orthonormal directions in 64-d
    low = unit(rng.normal(size=(1000, 8)) @ basis)
    full = unit(rng.normal(size=(1000, D)))
    col = make_collection(tmp_path / "c", shapes_clip, {"image": [("low", low)], "text": [("full", full)]})
    dims = diagnose(col)["dimensionality"]
    assert dims["image"]["participation_ratio"] == pytest.approx(8, abs=0.6)
    assert dims["image"]["components_90"] == 8                          # equal variances: ceil(0.9 * 8)
    assert dims["text"]["participation_ratio"] > 50 and dims["text"]["components_90"] > 45


def test_outliers_are_the_planted_strangers(tmp_path, shapes_clip):
    rng = np.random.default_rng(5)
    centre = unit(rng.normal(size=(1, D)))
    crowd = unit(centre + 0.15 * rng.normal(size=(600, D)))
    strangers = unit(rng.normal(size=(4, D)))                           # random directions: unlike the crowd
    col = make_collection(tmp_path / "c", shapes_clip, {"image": [("crowd", crowd), ("odd", strangers)]})
    o = diagnose(col, k=10)["outliers"]
    # the strangers are flagged first; a Gaussian crowd's own edge may add a few, but not more than 1%
    assert {x["path"] for x in o["items"][:4]} == {f"/odd/{i}" for i in range(4)}
    assert 4 <= o["count"] <= 4 + 6 and o["rate"] == pytest.approx(o["count"] / 604)
    assert o["items"][3]["z"] < -6 and all(x["z"] < -3.5 for x in o["items"])


def test_near_duplicates_counted(tmp_path, shapes_clip):
    rng = np.random.default_rng(6)
    base = unit(rng.normal(size=(500, D)))
    copies = unit(base[:20] + 0.01 * rng.normal(size=(20, D)))         # cosine about 0.998 with their originals
    col = make_collection(tmp_path / "c", shapes_clip, {"image": [("base", base), ("copy", copies)]})
    dup = diagnose(col, duplicate_threshold=0.98)["duplicates"]
    assert dup["redundant_items"] == 20 and dup["pairs"] == 20 and dup["items_with_duplicate"] == 40
    assert dup["rate"] == pytest.approx(20 / 520)
    for ex in dup["examples"]:
        a, b = sorted([ex["a"]["path"], ex["b"]["path"]])
        assert a.startswith("/base/") and b == "/copy/" + a.split("/")[-1] and ex["score"] > 0.98
    assert diagnose(col, duplicate_threshold=0.9999)["duplicates"]["redundant_items"] == 0


def test_failure_rate_by_reason(tmp_path, shapes_clip):
    rng = np.random.default_rng(7)
    col = make_collection(tmp_path / "c", shapes_clip, {"image": [("ok", unit(rng.normal(size=(10, D))))]})
    files = [{"path": f"/ok/{i}", "content_hash": "h", "size": 1, "mtime_ns": 1, "status": "indexed", "reason": None}
             for i in range(10)]
    files += [{"path": f"/a/{i}.wav", "content_hash": "h", "size": 1, "mtime_ns": 1, "status": "skipped",
               "reason": "audio not covered by space tiny"} for i in range(2)]
    failed = [("/b/x.jpg", "decode", "cannot decode 'x.jpg': truncated at byte 300"),
              ("/b/y.jpg", "decode", "cannot decode 'y.jpg': truncated at byte 512"),
              ("/b/z.png", "limits", "decompression bomb: 400000000 pixels")]
    files += [{"path": p, "content_hash": None, "size": 1, "mtime_ns": 1, "status": "failed", "reason": e}
              for p, _, e in failed]
    col.store.upsert_files(files)
    col.store.add_errors([{"path": p, "stage": s, "error": e, "time": 0.0} for p, s, e in failed])
    f = diagnose(col)["failures"]
    assert f["files"] == 15 and f["failure_rate"] == pytest.approx(3 / 15) and f["skip_rate"] == pytest.approx(2 / 15)
    assert f["failed_by_stage"] == {"decode": 2, "limits": 1}
    assert f["skipped_by_reason"] == {"audio not covered by space tiny": 2}
    assert f["top_errors"][0] == {"stage": "decode", "error": "cannot decode '…': truncated at byte N", "count": 2}


def test_neighbours_leave_each_point_out_even_with_exact_copies():
    v = unit(np.random.default_rng(8).normal(size=(6, D)))
    v = np.vstack([v, v[:1]])                                          # row 6 is row 0 again
    sims, idx = neighbours(v, None, 2)
    assert all(i not in row for i, row in enumerate(idx))
    assert idx[0, 0] == 6 and idx[6, 0] == 0 and sims[0, 0] == pytest.approx(1.0)


def test_too_small_collection_is_a_clear_error(tmp_path, shapes_clip):
    col = make_collection(tmp_path / "c", shapes_clip, {"image": [("x", unit(np.ones((2, D))))]})
    with pytest.raises(omnivec.ConfigError, match="at least 3"):
        diagnose(col)
