"""Nothing a user gave a collection is lost: manifest metadata, fields set later, tags, moderation verdicts, errors
and the audit log survive `reembed` (also when it is killed and run again) and follow the manifest on re-runs."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import omnivec
from omnivec.samples import scene
from omnivec.store.collection import reembed_folder

from cli_run import Run, in_process

COLOURS = ("red", "blue", "green", "yellow")
POLICY = {"policies": [{"name": "red-things", "description": "anything red", "action": "review", "threshold": 0.0,
                        "positives": ["a red shape"], "negatives": ["a blue shape", "a green shape"]}]}


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def library(tmp_path) -> tuple[Path, list[dict]]:
    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(4)
    rows = []
    for i in range(8):
        colour = COLOURS[i % 4]
        path = folder / f"{colour}-{i}.png"
        scene(rng, colour, "circle").render(48).save(path)
        rows.append({"path": path.name, "year": 2010 + i, "album": "trips" if i % 2 else "home"})
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rows.append({"path": "broken.png", "year": 2000, "album": "home"})
    return folder, rows


def cli(*args, home: Path) -> Run:
    """The command line in this process (the kill test runs it in a child)."""
    return in_process(*args, home=home)


def snapshot(col_path: Path) -> dict:
    """Everything user-given, keyed by content: item fields other than vectors, errors, audit entries."""
    col = omnivec.open_collection(col_path)
    skip = {"vector", "space", "version", "key"}
    items = {r["content_hash"]: {k: v for k, v in r.items() if k not in skip}
             for r in col.items(None).to_pylist()}
    audit = (col_path / "audit").rglob("*") if (col_path / "audit").exists() else []
    return {"items": items, "errors": [(e["path"], e["stage"], e["error"]) for e in col.errors()],
            "audit": sorted(p.read_text() for p in audit if p.is_file()), "count": len(col)}


def build(library, home: Path, tiny_clip_dir: Path, tmp_path: Path) -> Path:
    folder, rows = library
    manifest = write_manifest(folder / "manifest.csv", rows)
    r = cli("index", manifest, "-c", "man", "--space", tiny_clip_dir, "--json", home=home)
    assert r.returncode == 1, r.stderr          # the broken file failed; the rest were indexed
    col_path = home / "collections" / "man"
    labels = tmp_path / "labels.txt"
    labels.write_text("red: a red shape\nblue: a blue shape\ngreen: a green shape\n")
    assert cli("tag", "-c", "man", "--labels", labels, "--json", home=home).returncode == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    r = cli("moderate", "-c", "man", "--policies", policy, "--json", home=home)
    assert r.returncode == 0, r.stderr
    col = omnivec.open_collection(col_path)
    first = sorted(col.items(None, ["id"]).column("id").to_pylist())[0]
    col.update_metadata([first], {"starred": [True], "note": ["keep me"]})
    return col_path


def test_reembed_keeps_everything_a_user_gave(library, tmp_path, tiny_clip_dir, tiny_siglip_dir):
    home = tmp_path / "home"
    col_path = build(library, home, tiny_clip_dir, tmp_path)
    before = snapshot(col_path)
    assert before["count"] == 8 and before["errors"] and before["audit"]
    assert all("tags" in it and "album" in it for it in before["items"].values())
    r = cli("reembed", "-c", "man", "--space", tiny_siglip_dir, "--json", home=home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["carried_items"] == 8 and not out["dropped"]
    after = snapshot(col_path)
    col = omnivec.open_collection(col_path)
    assert col.pinned["name"] == tiny_siglip_dir.name and col.dim == 64
    derived = {"start", "end"}   # segment times come from the new model; images have none
    for h, item in before["items"].items():
        assert {k: v for k, v in after["items"][h].items() if k not in derived} == \
               {k: v for k, v in item.items() if k not in derived}, h
    assert after["errors"] == before["errors"] and after["audit"] == before["audit"]
    # Filters on manifest columns and on fields set later answer as before.
    assert len(col.search("a red shape", k=20, where="album = 'trips'")) == 4
    assert len(col.search("a red shape", k=20, where="starred = true")) == 1
    assert not list(home.joinpath("collections").glob(".man*"))      # nothing left beside it


def test_reembed_killed_midway_leaves_the_old_collection_and_resumes(library, tmp_path, tiny_clip_dir,
                                                                     tiny_siglip_dir):
    home = tmp_path / "home"
    col_path = build(library, home, tiny_clip_dir, tmp_path)
    before = snapshot(col_path)
    env = {**os.environ, "OMNIVEC_HOME": str(home), "OMNIVEC_COMMIT_EVERY": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "omnivec", "reembed", "-c", "man", "--space", str(tiny_siglip_dir),
                             "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = reembed_folder(col_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (tmp / "db" / "items.lance").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The old collection is untouched and answers in its old space.
    assert snapshot(col_path) == before
    assert omnivec.open_collection(col_path).pinned["name"] == tiny_clip_dir.name
    r = cli("reembed", "-c", "man", "--space", tiny_siglip_dir, "--json", home=home)
    assert r.returncode == 0, r.stderr
    after = snapshot(col_path)
    assert after["count"] == 8 and after["audit"] == before["audit"] and after["errors"] == before["errors"]
    assert {h: it["meta"] for h, it in after["items"].items()} == {h: it["meta"] for h, it in before["items"].items()}


def test_a_kill_between_the_swap_renames_is_finished_on_open(library, tmp_path, tiny_clip_dir, tiny_siglip_dir):
    home = tmp_path / "home"
    col_path = build(library, home, tiny_clip_dir, tmp_path)
    assert cli("reembed", "-c", "man", "--space", tiny_siglip_dir, "--json", home=home).returncode == 0
    # Reproduce the folders as a kill after the first rename leaves them: the new collection marked READY beside
    # the retired one, nothing at the collection's own path.
    tmp, retired = reembed_folder(col_path), col_path.with_name(".man.old-1")
    shutil.copytree(col_path, tmp)
    (tmp / "REEMBED_READY").write_text(json.dumps({"retired": retired.name}))
    col_path.rename(retired)
    col = omnivec.open_collection(col_path)
    assert len(col) == 8 and col.pinned["name"] == tiny_siglip_dir.name
    assert not tmp.exists() and not retired.exists()


def test_reembed_stops_when_bytes_are_gone_unless_told_to_drop(library, tmp_path, tiny_clip_dir, tiny_siglip_dir):
    home = tmp_path / "home"
    col_path = build(library, home, tiny_clip_dir, tmp_path)
    folder, _ = library
    before = snapshot(col_path)
    (folder / "blue-1.png").unlink()
    r = cli("reembed", "-c", "man", "--space", tiny_siglip_dir, "--json", home=home)
    assert r.returncode == 1 and "1 of 8 items" in r.stderr and "blue-1.png" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and snapshot(col_path) == before
    r = cli("reembed", "-c", "man", "--space", tiny_siglip_dir, "--drop-unreadable", "--json", home=home)
    assert r.returncode == 1, r.stderr
    assert [Path(p).name for d in json.loads(r.stdout)["dropped"] for p in d["paths"]] == ["blue-1.png"]
    col = omnivec.open_collection(col_path)
    assert len(col) == 7 and any(e["stage"] == "reembed" for e in col.errors())
    dropped = [json.loads(line) for line in (col_path / "reembed-dropped.jsonl").read_text().splitlines()]
    assert dropped[0]["album"] == "trips" and "tags" in dropped[0]     # its metadata is kept on disk


def test_manifest_edits_follow_on_rerun(library, tmp_path, tiny_clip_dir):
    home = tmp_path / "home"
    folder, rows = library
    manifest = write_manifest(folder / "manifest.csv", rows)
    assert cli("index", manifest, "-c", "man", "--space", tiny_clip_dir, "--json", home=home).returncode == 1
    col = omnivec.open_collection(home / "collections" / "man")
    assert not col.items("year = 1999", ["id"]).num_rows
    rows[0]["year"], rows[1]["album"] = 1999, "moved"
    write_manifest(manifest, rows)
    r = cli("index", manifest, "-c", "man", "--json", home=home)
    assert json.loads(r.stdout)["unchanged"] == 8
    col = omnivec.open_collection(home / "collections" / "man")
    assert [Path(p["paths"][0]).name for p in col.items("year = 1999", ["paths"]).to_pylist()] == ["red-0.png"]
    assert [Path(p["paths"][0]).name for p in col.items("album = 'moved'", ["paths"]).to_pylist()] == ["blue-1.png"]
    assert json.loads(col.get(col.items("album = 'moved'", ["id"]).column("id")[0].as_py())["meta"])["year"] == 2011
