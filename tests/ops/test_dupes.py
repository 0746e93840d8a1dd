"""Near-duplicates end to end with the trained shapes model: planted copies (identical bytes, re-encoded JPEGs,
resized copies, the scene shown inside a video) are grouped, distinct scenes are not; the ANN path scales."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_run import cli, main
import omnivec
from omnivec.ops.dupes import find_dupes
from omnivec.samples import write_video
from omnivec.train.shapes import Scene

# The model tells colour and background apart well and shape only weakly, so the distinct scenes differ from the
# planted one, and from each other, in (colour, background); see the helpers' notes on the shapes model.
PLANTED = Scene("circle", "red", "large", "white", 0.45, 0.5, 0.3, 0.0)
DISTINCT = [("blue", "white"), ("green", "black"), ("yellow", "blue"), ("purple", "yellow"), ("orange", "black"),
            ("red", "black")]


def _scene(colour: str, background: str, shape: str = "square") -> Scene:
    return Scene(shape, colour, "large", background, 0.5, 0.5, 0.3, 10.0)






@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dupes")
    img = PLANTED.render(96)
    img.save(root / "scene.png")
    (root / "copies").mkdir()
    shutil.copy(root / "scene.png", root / "copies" / "scene-copy.png")           # identical bytes
    img.save(root / "copies" / "scene-q90.jpg", quality=90)                       # re-encoded
    img.save(root / "copies" / "scene-q50.jpg", quality=50)
    img.resize((80, 80), Image.Resampling.BICUBIC).save(root / "copies" / "scene-80.png")   # resized
    img.resize((120, 120), Image.Resampling.BILINEAR).save(root / "copies" / "scene-120.jpg", quality=85)
    (root / "others").mkdir()
    for colour, background in DISTINCT:
        _scene(colour, background).render(96).save(root / "others" / f"{colour}-on-{background}.png")
    # video segments are 5 s long (the space's default): each scene fills one segment
    second = lambda s: [s.render(96)] * 10                                          # noqa: E731 - 5 s at 2 fps
    (root / "videos").mkdir()
    write_video(root / "videos" / "other-then-scene.mp4", second(_scene("green", "white")) + second(PLANTED), fps=2)
    shared = _scene("blue", "yellow", "star")
    write_video(root / "videos" / "a-then-shared.mp4", second(_scene("yellow", "black")) + second(shared), fps=2)
    write_video(root / "videos" / "shared-then-b.mp4", second(shared) + second(_scene("orange", "blue")), fps=2)
    return root


@pytest.fixture(scope="module")
def indexed(folder, shapes_clip_dir, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    r = cli("index", folder, "--collection", "dupes", "--space", shapes_clip_dir, "--json", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["indexed"] == 5 + len(DISTINCT) + 3   # the identical copy is the same item
    return home


def _names(member: dict) -> set[str]:
    return {Path(p).name for p in member["paths"]}


def test_cli_groups_planted_copies_and_the_video_segment(indexed, monkeypatch, capsys):
    code, stdout, stderr = main("dupes", "--collection", "dupes", "--json", home=indexed, monkeypatch=monkeypatch,
                                capsys=capsys)
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["threshold"] == 0.95
    groups = report["groups"]
    names = [set().union(*(_names(m) for m in g["members"])) for g in groups]
    planted = {"scene.png", "scene-copy.png", "scene-q90.jpg", "scene-q50.jpg", "scene-80.png", "scene-120.jpg",
               "other-then-scene.mp4"}
    assert planted in names, names
    assert {"a-then-shared.mp4", "shared-then-b.mp4"} in names, names
    assert len(groups) == 2, names                  # no false groups: the distinct scenes are in none
    group = groups[names.index(planted)]
    assert any(_names(m) == {"scene.png", "scene-copy.png"} for m in group["members"])   # identical bytes: one item
    assert all(p["score"] >= 0.95 for g in groups for p in g["pairs"])

    # the video is in the group through its second segment, and the report says when
    by_id = {m["id"]: m for m in group["members"]}
    video = next(m["id"] for m in group["members"] if m["modality"] == "video")
    spans = [(m["a"] if p["a"] == video else m["b"]) for p in group["pairs"] if video in (p["a"], p["b"])
             for m in p["matches"]]
    assert spans and all(s == {"start": 5.0, "end": 10.0} for s in spans), spans
    assert {by_id[x]["modality"] for p in group["pairs"] if video in (p["a"], p["b"]) for x in (p["a"], p["b"])} \
        == {"image", "video"}

    # two videos sharing a scene: the first one's second half matches the second one's first half
    shared = groups[names.index({"a-then-shared.mp4", "shared-then-b.mp4"})]
    (pair,) = shared["pairs"]
    first = next(m["id"] for m in shared["members"] if "a-then-shared.mp4" in _names(m))
    best = pair["matches"][0]
    mine, theirs = (best["a"], best["b"]) if pair["a"] == first else (best["b"], best["a"])
    assert mine == {"start": 5.0, "end": 10.0} and theirs == {"start": 0.0, "end": 5.0}


def test_python_api_threshold_and_modality_filter(indexed, shapes_clip):
    col = omnivec.open_collection(indexed / "collections" / "dupes", space=shapes_clip)
    strict = find_dupes(col, 0.95)
    scene_id = next(r["id"] for r in col.items(None, ["id", "paths"]).to_pylist()
                    if any(p.endswith("/scene.png") for p in r["paths"]))
    group = strict.group_of(scene_id)
    assert group is not None and len(group.members) == 6
    # only images: the same planted copies, and the videos drop out
    images = find_dupes(col, 0.95, modalities="image")
    assert [len(g.members) for g in images.groups] == [5]
    # the planted copies score far above any pair of distinct scenes, so a much looser threshold is still clean
    loose = find_dupes(col, 0.9, modalities="image")
    assert [sorted(g.ids) for g in loose.groups] == [sorted(images.groups[0].ids)]
    # a threshold below every score joins everything: the search is not what keeps groups apart
    everything = find_dupes(col, -1.0, modalities="image")
    assert len(everything.groups) == 1 and len(everything.groups[0].members) == len(col.items("modality = 'image'"))


def test_cli_usage_errors_and_table(indexed, monkeypatch, capsys):
    code, _, stderr = main("dupes", "--collection", "dupes", "--threshold", "2", home=indexed,
                           monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "threshold" in stderr
    code, _, stderr = main("dupes", "--collection", "dupes", "--modality", "audio", home=indexed,
                           monkeypatch=monkeypatch, capsys=capsys)
    assert code == 4 and "audio" in stderr
    r = cli("dupes", "--collection", "dupes", home=indexed)
    assert r.returncode == 0 and "2 groups" in r.stdout and "5.0-10.0 s" in r.stdout


def test_ann_path_finds_large_groups_beyond_k(shapes_clip, tmp_path):
    """Past the exhaustive-search size the k-NN queries walk the HNSW graph: a planted group of 40 near-copies is
    found whole with k=5 (rows whose k-th neighbour still qualifies ask again), and random vectors form no group.
    Vectors are given directly: this checks the search and grouping, not the model."""
    col = omnivec.open_collection(tmp_path / "synthetic", space=shapes_clip, create=True)
    rng = np.random.default_rng(0)
    d = col.dim
    base = rng.normal(size=(6000, d)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    centre = base[0]
    copies = centre + rng.normal(scale=0.02, size=(39, d)).astype(np.float32)     # cosine ~0.99 to the centre
    pair = base[1] + rng.normal(scale=0.02, size=(1, d)).astype(np.float32)
    vectors = np.concatenate([base, copies, pair])
    ids = [f"v{i}" for i in range(len(vectors))]
    col.add_vectors(vectors, ids=ids, paths=[[f"/synthetic/{i}"] for i in ids])
    result = find_dupes(col, 0.9, k=5)
    assert result.rows == 6040
    groups = sorted((sorted(Path(m["paths"][0]).name for m in g.members) for g in result.groups), key=len)
    assert groups == [sorted(["v1", "v6039"]), sorted(["v0"] + [f"v{i}" for i in range(6000, 6039)])]
