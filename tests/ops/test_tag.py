"""Zero-shot tagging through the CLI and the Python API, with the trained shapes model; and the metadata update
it relies on (Collection.update_metadata)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import omnivec
from omnivec.errors import ConfigError, OmnivecError
from omnivec.samples import scene

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
LABELS_TXT = """# colour labels; a label may carry several descriptions
red: red | a red shape
blue: blue | a blue shape
green: green | a green shape
yellow
purple
orange: orange | an orange shape
"""


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the omnivec CLI in this process (the exit-code mapping included)."""
    from omnivec.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return e.value.code, captured.out, captured.err


def write_shapes(folder: Path, per_colour: int, seed: int, shapes=("circle", "square", "star")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for colour in COLOURS:
        for k in range(per_colour):
            shape = shapes[k % len(shapes)]
            path = folder / f"{colour}-{shape}-{seed}-{k}.png"
            scene(rng, colour, shape).render(64).save(path)
            paths.append(path)
    return paths


def colour_of(path: str) -> str:
    return Path(path).name.split("-")[0]


@pytest.fixture(scope="module")
def tagged(shapes_clip_dir, tmp_path_factory):
    """A collection of 18 generated shape images, indexed and tagged with colour labels through the CLI."""
    from omnivec.cli import main

    root = tmp_path_factory.mktemp("tagging")
    write_shapes(root / "photos", per_colour=3, seed=1)
    (root / "labels.txt").write_text(LABELS_TXT)
    col = root / "col"
    with pytest.raises(SystemExit) as e:
        main(["index", str(root / "photos"), "--collection", str(col), "--space", str(shapes_clip_dir), "--json"])
    assert e.value.code == 0
    return root, col


def test_tag_cli_gives_each_image_its_colour(tagged, capsys):
    root, col = tagged
    code, out, err = cli(capsys, "tag", "--collection", col, "--labels", root / "labels.txt", "--top-k", "2",
                         "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["tagged"] == 18 and s["labels"] == 6 and s["unchanged"] == 0
    correct = [i["tags"][0]["label"] == colour_of(i["paths"][0]) for i in s["items"]]
    assert sum(correct) / len(correct) >= 0.9, [(i["paths"][0], i["tags"]) for i in s["items"]]
    assert all(len(i["tags"]) == 2 and i["tags"][0]["score"] >= i["tags"][1]["score"] for i in s["items"])
    # the tags are item metadata: columns to filter on, and part of each hit's metadata
    c = omnivec.open_collection(col)
    rows = c.items(None, ["paths", "tags", "tags_scores", "tags_version"]).to_pylist()
    assert {r["tags_version"] for r in rows} == {s["version"]}
    assert all(len(r["tags"]) == len(r["tags_scores"]) == 2 for r in rows)
    top_red = {i["paths"][0] for i in s["items"] if i["tags"][0]["label"] == "red"}
    assert {p[0] for p in c.items("tags[1] = 'red'", ["paths"]).column("paths").to_pylist()} == top_red
    anywhere = {i["paths"][0] for i in s["items"] if "red" in [t["label"] for t in i["tags"]]}
    assert {p[0] for p in c.items("array_has(tags, 'red')", ["paths"]).column("paths").to_pylist()} == anywhere
    hit = c.search("a blue shape", k=1)[0]
    assert hit.metadata["tags"][0] == "blue" and hit.metadata["tags_version"] == s["version"]


def test_new_only_tags_only_new_or_stale_items(tagged, capsys, tmp_path):
    root, col = tagged
    labels = root / "labels.txt"
    assert cli(capsys, "tag", "-c", col, "--labels", labels)[0] == 0
    code, out, _ = cli(capsys, "tag", "-c", col, "--labels", labels, "--new-only", "--json")
    assert code == 0 and json.loads(out)["tagged"] == 0 and json.loads(out)["unchanged"] == 18
    new = write_shapes(root / "more", per_colour=1, seed=2)
    assert cli(capsys, "index", root / "more", "-c", col, "--json")[0] == 0
    code, out, _ = cli(capsys, "tag", "-c", col, "--labels", labels, "--new-only", "--json")
    s = json.loads(out)
    assert code == 0 and s["tagged"] == len(new) and s["unchanged"] == 18
    assert {i["paths"][0] for i in s["items"]} == {str(p.resolve()) for p in new}
    # another label set (a changed description) is another version: every item is stale
    changed = tmp_path / "labels.txt"
    changed.write_text(LABELS_TXT.replace("yellow\n", "yellow: yellow | a yellow shape\n"))
    code, out, _ = cli(capsys, "tag", "-c", col, "--labels", changed, "--new-only", "--json")
    s2 = json.loads(out)
    assert s2["version"] != s["version"] and s2["tagged"] == 18 + len(new) and s2["unchanged"] == 0


def test_min_score_and_top_k(tagged, capsys):
    root, col = tagged
    code, out, _ = cli(capsys, "tag", "-c", col, "--labels", root / "labels.txt", "--top-k", "6", "--json")
    scores = sorted(t["score"] for i in json.loads(out)["items"] for t in i["tags"])
    cut = float(np.median(scores))  # a cut inside the measured range, not a guessed constant
    code, out, _ = cli(capsys, "tag", "-c", col, "--labels", root / "labels.txt", "--top-k", "6", "--min-score",
                       cut, "--field", "strong", "--json")
    s = json.loads(out)
    assert code == 0 and s["field"] == "strong"
    kept = [t["score"] for i in s["items"] for t in i["tags"]]
    assert kept and min(kept) >= cut and len(kept) < len(scores)
    c = omnivec.open_collection(col)
    untagged = c.items("strong IS NULL", ["id"]).num_rows
    assert untagged == s["untagged"]


def test_bad_labels_and_missing_collection_are_usage_errors(tagged, capsys, tmp_path):
    root, col = tagged
    dup = tmp_path / "dup.txt"
    dup.write_text("red\nblue\nred: a red thing\n")
    code, _, err = cli(capsys, "tag", "-c", col, "--labels", dup)
    assert code == 2 and "line 3" in err and "'red' is listed twice" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("red: a red shape | \n")
    code, _, err = cli(capsys, "tag", "-c", col, "--labels", empty)
    assert code == 2 and "line 1" in err
    code, _, err = cli(capsys, "tag", "-c", tmp_path / "nowhere", "--labels", root / "labels.txt")
    assert code == 2 and "no collection" in err
    code, _, err = cli(capsys, "tag", "-c", col, "--labels", tmp_path / "missing.txt")
    assert code == 2 and "missing.txt" in err
    code, _, err = cli(capsys, "tag", "-c", col, "--labels", root / "labels.txt", "--where", "colour = 'red'")
    assert code == 2 and "has no field 'colour'" in err and "tags" in err   # names the valid fields too
    code, _, err = cli(capsys, "tag", "-c", col, "--labels", root / "labels.txt", "--field", "my tags")
    assert code == 2 and "'my tags'" in err


def test_label_files_in_text_yaml_and_json_agree(tmp_path, shapes_clip):
    from omnivec.ops.tag import read_labels

    (tmp_path / "l.txt").write_text("dog: a dog | a puppy\ncat\n")
    (tmp_path / "l.yaml").write_text("labels:\n  dog: [a dog, a puppy]\n  cat: cat\n")
    (tmp_path / "l.json").write_text(json.dumps([{"name": "dog", "descriptions": ["a dog", "a puppy"]}, "cat"]))
    sets = [read_labels(tmp_path / f"l.{ext}") for ext in ("txt", "yaml", "json")]
    assert sets[0] == sets[1] == sets[2]
    assert sets[0].version(shapes_clip) == sets[2].version(shapes_clip)
    (tmp_path / "t.yaml").write_text("templates: ['a photo of a {}.']\nlabels: [dog]\n")
    assert read_labels(tmp_path / "t.yaml").version(shapes_clip) != read_labels(tmp_path / "l.yaml").version(
        shapes_clip)
    (tmp_path / "bad.yaml").write_text("labels:\n  dog: []\n")
    with pytest.raises(ConfigError, match="'dog' needs one or more"):
        read_labels(tmp_path / "bad.yaml")


def test_prompts_read_naturally():
    from omnivec.ops.tag import prompts

    assert prompts("a dog", ["a photo of a {}.", "{}"]) == ["a photo of a dog.", "a dog"]
    assert prompts("dog", ["a photo of the {}."]) == ["a photo of the dog."]


def test_tag_vectors_on_fresh_images(shapes_clip):
    """The Python API tags any vectors of the space, not only stored ones."""
    from omnivec.ops.tag import tag_vectors

    rng = np.random.default_rng(5)
    scenes = [scene(rng, c, "circle") for c in COLOURS]
    vectors = shapes_clip.embed_image([s.render(64) for s in scenes])
    tags = tag_vectors(shapes_clip, vectors, {c: [c, f"a {c} shape"] for c in COLOURS}, top_k=1)
    assert sum(t[0][0] == s.colour for t, s in zip(tags, scenes)) >= 5


def test_update_metadata_is_one_commit_and_keeps_vectors(shapes_clip, tmp_path):
    """The store method under tagging and moderation (a store test: vectors are given, not embedded)."""
    col = omnivec.open_collection(tmp_path / "c", space=shapes_clip, create=True)
    vecs = np.random.default_rng(0).normal(size=(3, shapes_clip.dim)).astype(np.float32)
    col.add_vectors(vecs, ids=["a", "b", "c"], metadata=[{"owner": "ann"}, {}, {}])
    ids = col.items(None, ["id"]).column("id").to_pylist()
    before = {i: col.vector(i) for i in ids}
    col.update_metadata(ids, {"labels": [["x", "y"], ["y"], None], "score": [0.5, 1, None], "info": [{"k": 1}] * 3})
    version = col.store.version()
    col.update_metadata(ids[:2], {"score": [0.25, 0.75]})
    assert col.store.version() == version + 1      # columns exist now: one commit
    assert all(np.array_equal(before[i], col.vector(i)) for i in ids)
    rows = {r["id"]: r for r in col.items(None, ["id", "labels", "score", "info", "meta"]).to_pylist()}
    first = next(i for i in ids if json.loads(rows[i]["meta"]).get("owner") == "ann")
    assert json.loads(rows[first]["meta"])["owner"] == "ann"       # earlier metadata is kept
    assert {rows[i]["score"] for i in ids[:2]} == {0.25, 0.75}
    assert col.items("array_has(labels, 'y')", ["id"]).num_rows == 2
    col.update_metadata([ids[0]], {"labels": [None]})
    assert "labels" not in json.loads(col.get(ids[0])["meta"] or "{}")
    with pytest.raises(OmnivecError, match="no item 'ffffffffffffffff'"):
        col.update_metadata(["ffffffffffffffff"], {"score": [1.0]})
    with pytest.raises(ConfigError, match="built-in"):
        col.update_metadata(ids[:1], {"modality": ["text"]})
    with pytest.raises(ConfigError, match="'score'"):
        col.update_metadata(ids[:1], {"score": [["not", "a", "number"]]})
    assert col.store.version() == version + 2       # the failed calls wrote nothing
