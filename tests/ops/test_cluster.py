"""Clustering end to end with the trained shapes model: shapes of six colours (on random backgrounds, in varied
shapes) cluster by colour; clusters are named by colour labels or by central items; maps are written and valid."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score, completeness_score

from cli_run import cli, main
import omnivec
from omnivec.ops.cluster import cluster
from omnivec.samples import scene, write_video

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star", "cross")
PER_COLOUR = 12


def colour_of(path: str) -> str:
    return Path(path).name.split("-")[0]






@pytest.fixture(scope="module")
def indexed(shapes_clip_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(11)
    for colour in COLOURS:
        for i in range(PER_COLOUR):
            shape = SHAPES[i % len(SHAPES)]
            scene(rng, colour, shape).render(64).save(root / f"{colour}-{shape}-{i}.png")
    # a video, left out of the image clustering by the modality filter
    write_video(root / "red-then-blue.mp4", [scene(rng, "red", "circle").render(64)] * 10 +
                [scene(rng, "blue", "square").render(64)] * 10, fps=2)
    home = tmp_path_factory.mktemp("home")
    r = cli("index", root, "--collection", "shapes", "--space", shapes_clip_dir, "--json", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["indexed"] == len(COLOURS) * PER_COLOUR + 1
    return home


def test_cli_kmeans_by_colour_named_by_labels_with_maps(indexed, tmp_path, monkeypatch, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("# colour names; a label may carry several descriptions\nred\nblue: blue | a blue shape\n"
                      "green\nyellow\npurple: purple | violet\norange\n")
    png, page = tmp_path / "maps" / "colours.png", tmp_path / "maps" / "colours.html"
    code, stdout, stderr = main("cluster", "--collection", "shapes", "--method", "kmeans", "--k", len(COLOURS),
                                "--modality", "image", "--labels", labels, "--map", png, "--map", page, "--json",
                                home=indexed, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, stderr
    report = json.loads(stdout)
    items = report["items"]
    assert len(items) == len(COLOURS) * PER_COLOUR and {i["modality"] for i in items} == {"image"}
    truth = [colour_of(i["path"]) for i in items]
    ari = adjusted_rand_score(truth, [i["cluster"] for i in items])
    assert ari >= 0.8, ari
    # every cluster is named after the colour most of its members have, and the sizes add up
    paths = {i["id"]: i["path"] for i in items}
    for c in report["clusters"]:
        colours = [colour_of(paths[m]) for m in c["members"]]
        majority = max(set(colours), key=colours.count)
        assert c["name"] == majority, (c["name"], colours)
        assert c["size"] == len(c["members"]) and c["labels"][0]["label"] == majority
    assert sum(c["size"] for c in report["clusters"]) == len(items)
    assert sorted(report["maps"]) == sorted([str(png), str(page)])

    with Image.open(png) as im:        # a real PNG that decodes
        im.load()
        assert im.format == "PNG" and min(im.size) > 200
    html = page.read_text()
    assert html.count("<circle") == len(items)
    points = json.loads(re.search(r'<script type="application/json" id="omnivec-points">(.*?)</script>', html,
                                  re.S).group(1))
    assert len(points) == len(items)
    assert {Path(p["label"].split(" (")[0]).name for p in points} == {Path(i["path"]).name for i in items}
    names = {c["id"]: c["name"] for c in report["clusters"]}
    assert all(p["name"] == names[p["group"]] for p in points)
    assert all(0.0 <= p["x"] <= 1.0 and 0.0 <= p["y"] <= 1.0 for p in points)
    # the map keeps colours apart: same-colour points lie closer together than points of different colours
    xy = np.asarray([[p["x"], p["y"]] for p in points])
    col_of_point = np.asarray([colour_of(p["label"].split(" (")[0]) for p in points])
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    same = col_of_point[:, None] == col_of_point[None]
    off_diagonal = ~np.eye(len(points), dtype=bool)
    assert dist[same & off_diagonal].mean() < 0.5 * dist[~same].mean()


def test_python_hdbscan_and_names_from_central_items(indexed, shapes_clip):
    col = omnivec.open_collection(indexed / "collections" / "shapes", space=shapes_clip)
    # min_samples=2: with scikit-learn's default (= min_cluster_size) HDBSCAN leaves a third of these sparse,
    # varied groups as noise (measured: ARI 0.14-0.73 over three seeds; 0.97-0.98 with min_samples 1 or 2)
    result = cluster(col, "hdbscan", min_cluster_size=6, min_samples=2, modalities=["image"])
    truth = [colour_of(p[0]) for p in result.items.paths]
    # HDBSCAN finds dense groups, and which colours form one depends on the model: seed 0 of the shapes recipe
    # separates all six (ARI >= 0.8), seed 2 chains red, orange and yellow into one (ARI 0.55). What holds for
    # every seed checked (0-2, docs/training.md): no colour is split across clusters, and several are found.
    assert completeness_score(truth, result.assignments) >= 0.9, result.assignments
    assert len({a for a in result.assignments if a >= 0}) >= 3, result.assignments
    assert (result.assignments == -1).sum() <= 4
    for c in result.clusters:
        if c.id < 0:
            assert c.name == "noise"
            continue
        colours = [colour_of(result.items.paths[result.items.ids.index(m)][0]) for m in c.members]
        # without labels a cluster is named after its most central item, which has the cluster's colour (one of
        # them, when a cluster holds several colours in equal numbers)
        assert colours.count(colour_of(c.central[0]["path"])) == max(map(colours.count, colours))
        assert c.name == Path(c.central[0]["path"]).stem
        assert c.central[0]["score"] >= c.central[-1]["score"]
    assert sum(result.sizes.values()) == len(result.items)
    assert result.cluster_of(result.items.ids[0]).size >= 1


def test_umap_map_keeps_colours_apart(indexed, shapes_clip, tmp_path):
    col = omnivec.open_collection(indexed / "collections" / "shapes", space=shapes_clip)
    result = cluster(col, "kmeans", len(COLOURS), where="modality = 'image'", labels=list(COLOURS))
    out = result.save_map(tmp_path / "umap.html", projection="umap")
    assert result.projection == "umap" and out.is_file()
    points = json.loads(re.search(r'id="omnivec-points">(.*?)</script>', out.read_text(), re.S).group(1))
    xy = np.asarray([[p["x"], p["y"]] for p in points])
    colours = np.asarray([colour_of(p["label"].split(" (")[0]) for p in points])
    # each colour's points are nearer their own colour's centre than any other colour's centre
    centres = {c: xy[colours == c].mean(0) for c in COLOURS}
    nearest = [min(centres, key=lambda c: np.linalg.norm(xy[i] - centres[c])) for i in range(len(xy))]
    assert np.mean(np.asarray(nearest) == colours) >= 0.9


@pytest.mark.parametrize("args, words", [
    (["--method", "spectral"], "unknown clustering method"),
    (["--k", "500"], "k-means needs"),
    (["--map", "out.jpg"], ".png or .html"),
    (["--projection", "tsne"], "projection"),
    (["--labels", "no-such-labels.txt"], "labels file"),
])
def test_cli_usage_errors(indexed, args, words, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = main("cluster", "--collection", "shapes", *args, home=indexed, monkeypatch=monkeypatch,
                           capsys=capsys)
    assert code == 2 and words in stderr, stderr
