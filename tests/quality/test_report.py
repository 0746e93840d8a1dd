"""End to end with the trained shapes model: index a small folder (with a re-encoded copy of one image and a broken
file), run `omnivec diagnose --json` and `omnivec report` through the CLI, and render the HTML report in headless
Chromium to check that every figure is drawn and explained."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import omnivec
from omnivec.quality.report import CAPTIONS, recall_curves
from omnivec.samples import CONCEPTS, make_sample_folder

COLOURS = [c for c, _ in CONCEPTS]


def cli(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMNIVEC_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "omnivec", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def no_nan(s: str):
    raise AssertionError(f"{s} in JSON output")


@pytest.fixture(scope="module")
def indexed(shapes_clip_dir, shapes_clip, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    home, lib = root / "home", make_sample_folder(root / "lib", per_concept=3, image_size=64)
    # the same picture saved again at another JPEG quality: other bytes, so a second item, and a near-duplicate
    Image.open(lib / "images" / "red-circle-0.jpg").save(lib / "images" / "red-circle-0-again.jpg", quality=60)
    (lib / "images" / "broken.jpg").write_bytes((lib / "images" / "blue-square-0.jpg").read_bytes()[:200])
    r = cli("index", lib, "--collection", "shapes", "--space", shapes_clip_dir, "--json", home=home)
    assert r.returncode == 1, r.stderr                              # one file failed, and the exit code says so
    return home, lib


def test_diagnose_cli_on_a_real_collection(indexed):
    home, lib = indexed
    r = cli("diagnose", "--collection", "shapes", "-k", "5", "--json", home=home)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout, parse_constant=no_nan)
    assert d["items"] == 18 + 1 + 2 and d["modalities"] == {"image": 19, "video": 2}
    assert d["failures"]["status"]["failed"] == 1 and d["failures"]["failure_rate"] == pytest.approx(1 / 22)
    assert sum(d["failures"]["failed_by_stage"].values()) == 1
    pairs = [{Path(e["a"]["path"]).name, Path(e["b"]["path"]).name} for e in d["duplicates"]["examples"]]
    assert {"red-circle-0.jpg", "red-circle-0-again.jpg"} in pairs
    (gap,) = d["gap"]["pairs"]
    assert gap["modalities"] == ["image", "video"] and gap["centroid_distance"] > 0
    assert {(p["query"], p["target"]) for p in d["scores"]["pairs"]} == {
        ("image", "image"), ("image", "video"), ("video", "image"), ("video", "video")}
    hub = d["hubness"]["overall"]
    assert hub["k"] == 5 and sum(hub["histogram"][i] * i for i in range(len(hub["histogram"]))) == 21 * 5
    assert d["dimensionality"]["image"]["components_90"] <= 19


def test_diagnose_without_a_collection_is_a_usage_error(indexed):
    home, _ = indexed
    r = cli("diagnose", "--collection", "nothing-here", "--json", home=home)
    assert r.returncode == 2 and "no collection" in r.stderr


def eval_result(home: Path, shapes_clip) -> dict:
    """text -> image recall@k with colour prompts, computed here on the collection's own vectors."""
    col = omnivec.open_collection(home / "collections" / "shapes")
    rows = col.items("modality = 'image'", ["paths", "vector"]).to_pylist()
    names = [Path(r["paths"][0]).name for r in rows]
    items = np.asarray([r["vector"] for r in rows], np.float32)
    queries = shapes_clip.embed_text([f"a {c} shape" for c in COLOURS])
    order = np.argsort(-(queries @ items.T), axis=1)
    relevant = np.asarray([[n.startswith(c + "-") for n in names] for c in COLOURS])
    hits = np.take_along_axis(relevant, order, axis=1)
    # laid out as `omnivec eval retrieval --json` lays it out
    return {"results": [{"space": "shapes-clip", "directions": {"text->image": {
        f"recall@{k}": float(hits[:, :k].any(1).mean()) for k in (1, 5, 10)}}}]}


def write_log(path: Path) -> int:
    """A query log of texts over four hours (embedded by the report with the collection's space)."""
    texts = [f"a {c} shape" for c in COLOURS] + ["a large shape on a white background", "a small star"]
    lines = [{"time": 1_700_000_000 + 60 * i, "modality": "text", "latency_ms": 3.0, "results": 10,
              "text": texts[i % len(texts)]} for i in range(48)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return len(lines)


@pytest.fixture(scope="module")
def report(indexed, shapes_clip, tmp_path_factory):
    home, _ = indexed
    out = tmp_path_factory.mktemp("out")
    (out / "eval.json").write_text(json.dumps(eval_result(home, shapes_clip)))
    n = write_log(out / "queries.jsonl")
    r = cli("report", "--collection", "shapes", "--out", out / "report.html", "--eval", out / "eval.json",
            "--log", out / "queries.jsonl", "-k", "5", "--json", home=home)
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout), n


def test_report_files_and_numbers(report):
    out, summary, n_queries = report
    assert summary["html"] == str(out / "report.html") and summary["json"] == str(out / "report.json")
    assert [f["id"] for f in summary["figures"]] == ["scores", "map", "hubness", "recall", "drift"]
    assert summary["figures_skipped"] == {}
    data = json.loads((out / "report.json").read_text(), parse_constant=no_nan)
    assert data["diagnostics"]["items"] == 21 and data["map"]["colour_by"] == "modality"
    expected = json.loads((out / "eval.json").read_text())["results"][0]["directions"]["text->image"]
    (curve,) = data["recall_curves"]
    assert curve["label"] == "shapes-clip / text->image" and curve["k"] == [1, 5, 10]
    assert expected["recall@1"] >= 0.8                     # colour prompts find their colour: a real curve
    assert curve["recall"] == pytest.approx([expected["recall@1"], expected["recall@5"], expected["recall@10"]])
    drift = data["drift"]
    assert drift["queries"] == n_queries and drift["with_vectors"] == n_queries and len(drift["windows"]) == 4
    assert drift["threshold_source"] == "calibrated" and 0 <= drift["no_match_rate"] <= 1
    assert all(w["p_value"] is not None for w in drift["windows"][1:])


def test_report_renders_in_chromium(report):
    from playwright.sync_api import sync_playwright

    out, summary, _ = report
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed")
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.on("request", lambda req: requests.append(req.url))
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, "
                                                      "e.naturalHeight, e.closest('section').id])")
            captions = page.eval_on_selector_all("figcaption", "els => els.map(e => e.textContent)")
            title = page.title()
        finally:
            browser.close()
    assert [i[3] for i in images] == [f"fig-{f['id']}" for f in summary["figures"]]
    assert all(done and w > 100 and h > 100 for done, w, h, _ in images), images
    assert captions == [f["caption"] for f in summary["figures"]]
    assert captions[0] == CAPTIONS["scores"] and "warning sign" in captions[3]
    assert all("warning sign" in c for c in captions)
    assert title == "omnivec report: shapes"
    # self-contained: nothing but the file itself and its embedded images is loaded
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_recall_curves_found_in_any_nesting():
    result = {"spaces": [{"space": "a", "text->image": {"recall@5": 0.5, "recall@1": 0.25, "mAP@5": 0.3}},
                         {"space": "b", "recall@1": 0.1}], "top1": 0.9}
    assert recall_curves(result) == [("spaces / a / text->image", [1, 5], [0.25, 0.5]), ("spaces / b", [1], [0.1])]
    evaluated = {"dataset": {}, "results": [{"space": "s1", "directions": {"text->image": {"recall@1": 0.5},
                                                                           "image->text": {"recall@1": 0.4}}}]}
    assert [c[0] for c in recall_curves(evaluated)] == ["s1 / text->image", "s1 / image->text"]


def test_map_colours_planted_clusters_when_there_is_one_modality():
    from sklearn.metrics import adjusted_rand_score

    from omnivec.quality.diagnostics import VectorSet
    from omnivec.quality.report import map_2d

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64))
    planted = np.repeat(np.arange(3), 40)
    v = centres[planted] + 0.1 * rng.normal(size=(120, 64))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    vs = VectorSet(v, [str(i) for i in range(120)], np.array(["image"] * 120), [f"/{g}/{i}" for i, g in
                                                                                 enumerate(planted)], 120)
    info, coords, labels = map_2d(vs)
    assert info["colour_by"] == "cluster" and coords.shape == (120, 2)
    # the number of clusters is chosen by silhouette: the three planted groups, exactly
    assert len(info["clusters"]) == 3 and adjusted_rand_score(planted, labels) == 1.0
    for c in info["clusters"]:
        assert c["size"] == 40 and len({p.split("/")[1] for p in c["examples"]}) == 1
    assert map_2d(vs, "modality")[0]["colour_by"] == "modality"
    with pytest.raises(omnivec.ConfigError, match="colour by"):
        map_2d(vs, "rainbow")


def test_report_drift_over_a_collection_column(indexed, tmp_path):
    from omnivec.quality.report import build_report, write_report

    from omnivec.ingest import index
    from omnivec.samples import scene

    home, _ = indexed
    # Drift windows are cut by time (to the second), never by row order: a copy of the collection gets a second
    # batch of three images a second or more after the first run.
    shutil.copytree(home / "collections" / "shapes", tmp_path / "shapes")
    col = omnivec.open_collection(tmp_path / "shapes")
    latest = max(col.items(None, ["added"]).column("added").to_pylist())
    time.sleep(max(0.0, 1.05 - (time.time() - int(latest))))
    later = tmp_path / "later"
    later.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        scene(rng, "yellow", "star").render(64).save(later / f"yellow-star-later-{i}.png")
    assert index(col, [later]).indexed == 3
    data = build_report(col, drift_by="added", windows=2, k=5, permutations=99)
    assert [f["id"] for f in data["figures"]] == ["scores", "map", "hubness", "drift"]
    assert data["figures_skipped"] == {"recall": "no evaluation result given (--eval)"}
    assert data["drift"]["source"] == "collection by added"
    w = data["drift"]["windows"]
    # Two windows in time order that share no second; the later batch is in the last one.
    assert len(w) == 2 and sum(x["items"] for x in w) == 24 and w[-1]["items"] >= 3 and 0 < w[-1]["p_value"] <= 1
    assert int(w[0]["end"]) < int(w[1]["start"])
    html_path, json_path = write_report(data, tmp_path / "r.html", tmp_path / "numbers.json")
    assert "Not drawn" in html_path.read_text() and json.loads(json_path.read_text())["figures"] == data["figures"]
    with pytest.raises(omnivec.ConfigError, match="overwrite"):
        write_report(data, tmp_path / "r.json")
