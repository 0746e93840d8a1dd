"""Indexing and searching a generated folder end to end through the CLI, with the trained shapes model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMNIVEC_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "omnivec", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def indexed(media_folder, shapes_clip_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    folder = tmp_path_factory.mktemp("lib") / "media"
    shutil.copytree(media_folder, folder)
    r = cli("index", folder, "--collection", "home", "--space", shapes_clip_dir, "--json", home=home)
    return home, folder, r


def test_index_summary_counts(indexed):
    home, folder, r = indexed
    assert r.returncode == 1, r.stderr  # some files failed, and the exit code says so
    s = json.loads(r.stdout)
    images, videos, dated = 18, 2, 2
    assert s["indexed"] == images + videos + dated
    assert s["duplicates"] == 1
    assert sum(s["skipped"].values()) == 2 and "audio not covered by space" in next(iter(s["skipped"]))
    assert sum(s["failed"].values()) == 4
    assert s["collection"]["items"] == images + videos + dated
    assert s["seen"] == images + videos + dated + 1 + 2 + 4  # hidden and system files were not walked


def test_errors_lists_what_failed_where_and_why(indexed):
    home, folder, _ = indexed
    r = cli("errors", "--collection", "home", "--json", home=home)
    assert r.returncode == 0
    errors = {Path(e["path"]).name: e for e in json.loads(r.stdout)["errors"]}
    assert set(errors) == {"truncated.jpg", "random.bin", "empty.png", "bomb.png"}
    assert errors["bomb.png"]["stage"] == "limits" and "decompression bomb" in errors["bomb.png"]["error"]
    assert errors["random.bin"]["stage"] == "sniff"


def test_text_search_ranks_the_named_concept_first(indexed):
    home, _, _ = indexed
    for colour, shape in (("red", "circle"), ("blue", "square"), ("purple", "cross")):
        r = cli("search", f"a {colour} {shape}", "--collection", "home", "-k", "3", "--modality", "image", "--json",
                home=home)
        assert r.returncode == 0, r.stderr
        hits = json.loads(r.stdout)["hits"]
        assert all(Path(h["paths"][0]).name.startswith(f"{colour}-{shape}") or "copy-of" in h["paths"][0]
                   for h in hits), hits


def test_duplicate_bytes_are_one_item_with_both_paths(indexed):
    home, folder, _ = indexed
    import omnivec

    col = omnivec.open_collection(home / "collections" / "home")
    rows = col.items("array_length(paths) > 1", ["paths"]).to_pylist()
    assert len(rows) == 1
    assert {Path(p).name for p in rows[0]["paths"]} == {"red-circle-0.jpg", "copy-of-red-circle.jpg"}


def test_video_hits_say_when(indexed):
    home, _, _ = indexed
    r = cli("search", "a blue square", "--collection", "home", "--modality", "video", "-k", "1", "--json", home=home)
    hit = json.loads(r.stdout)["hits"][0]
    assert "red-circle-then-blue-square" in hit["paths"][0]
    assert hit["start"] >= 4.0 and hit["end"] > hit["start"]  # the second half of the video shows the square


def test_image_query_and_filters(indexed):
    home, folder, _ = indexed
    r = cli("search", "--image", folder / "images" / "yellow-star-0.jpg", "--collection", "home", "-k", "3",
            "--modality", "image", "--json", home=home)
    names = [Path(h["paths"][0]).name for h in json.loads(r.stdout)["hits"]]
    assert names[0] == "yellow-star-0.jpg" and all(n.startswith("yellow-star") for n in names)
    r = cli("search", "a green triangle", "--collection", "home", "--where", "year >= 2020 AND year < 2025",
            "--modality", "image", "--json", "-k", "50", home=home)
    hits = json.loads(r.stdout)["hits"]
    names = [Path(h["paths"][0]).name for h in hits]
    assert "green-triangle-2022.jpg" in names and "green-triangle-2018.jpg" not in names


def test_more_like_this_and_min_score(indexed):
    home, folder, _ = indexed
    import omnivec

    col = omnivec.open_collection(home / "collections" / "home")
    star = next(r for r in col.items(None, ["id", "paths"]).to_pylist() if "yellow-star-1" in r["paths"][0])
    r = cli("search", "--like", star["id"], "--collection", "home", "-k", "2", "--modality", "image", "--json",
            home=home)
    hits = json.loads(r.stdout)["hits"]
    assert star["id"] not in [h["id"] for h in hits]
    assert all("yellow-star" in h["paths"][0] for h in hits)
    r = cli("search", "a yellow star", "--collection", "home", "--min-score", "0.99", "--json", home=home)
    assert all(h["score"] >= 0.99 for h in json.loads(r.stdout)["hits"])


def test_rerun_skips_unchanged_and_sync_handles_moves_and_deletes(indexed, tmp_path):
    home, folder, _ = indexed
    r = cli("index", folder, "--collection", "home", "--json", home=home)
    s = json.loads(r.stdout)
    # failed files are retried, the rest skipped; content the space does not cover is reported as skipped again
    assert s["indexed"] == 0 and s["unchanged"] == 22 + 1 and sum(s["skipped"].values()) == 2
    (folder / "images" / "blue-square-0.jpg").unlink()
    (folder / "images" / "orange-circle-1.png").rename(folder / "moved.png")
    r = cli("index", folder, "--collection", "home", "--sync", "--json", home=home)
    s = json.loads(r.stdout)
    assert s["removed"] == 2 and s["indexed"] == 0 and s["duplicates"] == 1
    assert s["collection"]["items"] == 21
    import omnivec

    col = omnivec.open_collection(home / "collections" / "home")
    moved = [r["paths"] for r in col.items(None, ["paths"]).to_pylist() if any("moved.png" in p for p in r["paths"])]
    assert moved == [[str(folder / "moved.png")]]


def test_a_collection_refuses_another_space(indexed, tiny_clip_dir):
    home, folder, _ = indexed
    r = cli("index", folder, "--collection", "home", "--space", tiny_clip_dir, home=home)
    assert r.returncode == 2 and "pinned to space" in r.stderr and "reembed" in r.stderr
