"""The Collection Python API: pinning, manifests and metadata filters, mixed queries, audio time ranges, scale.

Every test runs on both stores (the `backend` fixture in conftest.py): the embedded one and a Milvus server."""
from __future__ import annotations

import csv
import json
import resource
import subprocess
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import omnivec
from omnivec.ingest import index
from omnivec.samples import make_sample_folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_sample_folder(tmp_path_factory.mktemp("sample"), per_concept=2, image_size=96)


@pytest.fixture(scope="module")
def shapes_col(sample, shapes_clip, new_location):
    col = omnivec.open_collection(new_location("shapes"), space=shapes_clip, create=True)
    index(col, [sample])
    return col


def test_len_counts_unique_items_and_records_carry_provenance(shapes_col, shapes_clip):
    assert len(shapes_col) == 12 + 2
    row = shapes_col.items("modality = 'video'").to_pylist()[0]
    assert row["space"] == shapes_clip.name and row["version"] == shapes_clip.version
    assert row["duration"] == pytest.approx(9.0, abs=0.2) and row["mime"] == "video/mp4"
    seg = shapes_col.store.scan(f"id = '{row['id']}' AND kind = 'segment'").to_pylist()
    assert [(s["start"], s["end"]) for s in sorted(seg, key=lambda s: s["segment"])] == [(0.0, 5.0), (5.0, 9.0)]


def test_the_store_follows_the_store_protocol(shapes_col, backend):
    from omnivec.store.base import SearchingStore, Store

    assert isinstance(shapes_col.store, Store)
    # Milvus keeps its own vector index and is handed whole searches; the embedded store is searched by omnivec.
    assert isinstance(shapes_col.store, SearchingStore) == (backend == "milvus")


def test_python_search_with_modalities_and_mixed_weights(shapes_col, sample):
    hits = shapes_col.search("a red circle", k=2, modalities=["image"])
    assert [Path(h.paths[0]).name.split("-")[:2] for h in hits] == [["red", "circle"]] * 2
    # An image of a blue square plus the words "a red circle": weights decide which concept wins.
    blue = str(sample / "images" / "blue-square-0.jpg")
    towards_text = shapes_col.search("a red circle", image=blue, weights=[1.0, 0.2], k=1, modalities=["image"])
    towards_image = shapes_col.search("a red circle", image=blue, weights=[0.2, 1.0], k=1, modalities=["image"])
    assert Path(towards_text[0].paths[0]).name.startswith("red-circle")
    assert Path(towards_image[0].paths[0]).name.startswith("blue-square")


def test_pinned_space_refuses_other_vectors(shapes_col, tiny_clip):
    with pytest.raises(omnivec.ConfigError, match="pinned to space"):
        omnivec.open_collection(shapes_col.location, space=tiny_clip)
    with pytest.raises(omnivec.ConfigError, match="holds 64-d vectors"):
        shapes_col.add_vectors(np.ones((1, 32), np.float32), ids=["x" * 64])
    with pytest.raises(omnivec.ConfigError, match="pinned to space"):
        shapes_col.add_vectors(np.ones((1, 64), np.float32), ids=["x" * 64], space_version="other")
    again = omnivec.open_collection(shapes_col.location)  # the pinning lives with the records (file or server)
    assert again.pinned == shapes_col.pinned and len(again) == len(shapes_col)
    # ... and so does where the space came from: it was passed in memory, and loads again from its folder.
    assert again.space.version == shapes_col.space.version
    assert [h.id for h in again.search("a red circle", k=3)] == [h.id for h in shapes_col.search("a red circle", k=3)]


def test_space_given_by_a_relative_path_reloads_from_anywhere(tiny_clip_dir, tmp_path, new_location, monkeypatch):
    monkeypatch.chdir(tiny_clip_dir.parent)
    location = new_location("relative")
    col = omnivec.open_collection(location, space=tiny_clip_dir.name, create=True)
    col.add_vectors(np.eye(1, col.dim, dtype=np.float32), ids=["a" * 64])
    monkeypatch.chdir(tmp_path)
    again = omnivec.open_collection(location)
    assert again.pinned["source"] == str(tiny_clip_dir.resolve())
    assert again.space.version == col.pinned["version"]


def test_more_like_this_ranks_the_nearest_other_items(shapes_col):
    images = shapes_col.items("modality = 'image'", ["id", "vector"]).to_pylist()
    me = images[0]["id"]
    others = {r["id"]: float(np.dot(r["vector"], images[0]["vector"])) for r in images[1:]}
    expected = sorted(others, key=others.get, reverse=True)[:3]
    hits = shapes_col.search(like=me, k=3, modalities=["image"])
    assert [h.id for h in hits] == expected and me not in [h.id for h in hits]
    assert [h.score for h in hits] == pytest.approx([others[i] for i in expected], abs=1e-5)


def test_resume_duplicates_and_sync_update_and_delete_records(sample, shapes_clip, tmp_path, new_location):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("red-circle-0.jpg", "blue-square-0.jpg", "green-triangle-0.jpg"):
        shutil.copy(sample / "images" / name, folder / name)
    col = omnivec.open_collection(new_location("resume"), space=shapes_clip, create=True)
    assert index(col, [folder]).indexed == 3
    # A run killed after committing records but before recording its files: the re-run finds the content by
    # its hash and only records the paths; nothing is embedded or stored twice.
    col.store.delete_files([str(folder / "red-circle-0.jpg"), str(folder / "blue-square-0.jpg")])
    again = index(col, [folder])
    assert (again.indexed, again.duplicates, again.unchanged, len(col)) == (0, 2, 1, 3)
    # A copy at a second path: the stored record gains the path (an upsert), still one item.
    shutil.copy(folder / "red-circle-0.jpg", folder / "copy.jpg")
    s = index(col, [folder])
    red = col.items(f"content_hash = '{col.store.all_files().to_pylist()[0]['content_hash']}'").to_pylist()
    assert s.duplicates == 1 and len(col) == 3
    row = col.items("array_has(paths, '%s')" % (folder / "copy.jpg"), ["paths"]).to_pylist()
    assert row and sorted(Path(p).name for p in row[0]["paths"]) == ["copy.jpg", "red-circle-0.jpg"], red
    # --sync: a path that is gone leaves its record; content no path holds any more is deleted.
    (folder / "copy.jpg").unlink()
    (folder / "green-triangle-0.jpg").unlink()
    s = index(col, [folder], sync=True)
    assert s.removed == 2 and len(col) == 2
    assert sorted(Path(p).name for r in col.items(None, ["paths"]).to_pylist() for p in r["paths"]) == \
        ["blue-square-0.jpg", "red-circle-0.jpg"]
    assert sorted(Path(r["path"]).name for r in col.store.all_files().to_pylist()) == \
        ["blue-square-0.jpg", "red-circle-0.jpg"]


def test_update_metadata_is_filterable_and_carried_by_hits(shapes_col):
    rows = sorted(shapes_col.items("modality = 'image'", ["id", "paths"]).to_pylist(), key=lambda r: r["paths"][0])
    first, second = rows[0]["id"], rows[1]["id"]
    shapes_col.update_metadata([first, second], {"album": ["trip", "home"], "tags": [["a", "b"], ["b"]]})
    assert [r["id"] for r in shapes_col.items("album = 'trip'", ["id"]).to_pylist()] == [first]
    assert sorted(r["id"] for r in shapes_col.items("array_has(tags, 'b')", ["id"]).to_pylist()) == \
        sorted([first, second])
    assert sorted(r["id"] for r in shapes_col.items("album != 'trip'", ["id"]).to_pylist()) == [second]
    hits = shapes_col.search("a picture", k=20, where="album = 'home'")
    assert [h.id for h in hits] == [second] and hits[0].metadata["album"] == "home"
    assert shapes_col.vector(first).shape == (shapes_col.dim,)  # the vector is untouched
    shapes_col.update_metadata([first, second], {"album": [None, None], "tags": [None, None]})
    assert shapes_col.items("album IS NOT NULL", ["id"]).num_rows == 0


def test_manifest_metadata_becomes_filterable(sample, shapes_clip, tmp_path, new_location):
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "album", "rating"])
        for i, p in enumerate(sorted((sample / "images").iterdir())):
            w.writerow([p, "holiday" if i % 2 else "work", i])
    col = omnivec.open_collection(new_location("manifest"), space=shapes_clip, create=True)
    s = index(col, [manifest])
    assert s.indexed == 12
    hits = col.search("a red circle", k=20, where="album = 'holiday' AND rating >= 4")
    assert hits and all(h.metadata["album"] == "holiday" and h.metadata["rating"] >= 4 for h in hits)
    assert len(hits) == sum(1 for i in range(12) if i % 2 and i >= 4)


def test_jsonl_manifest_with_missing_file_is_an_error_row(sample, shapes_clip, tmp_path, new_location):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(sample / "images" / "red-circle-0.jpg"), "tag": "a"}) + "\n" +
                        json.dumps({"path": "missing.jpg", "tag": "b"}) + "\n")
    col = omnivec.open_collection(new_location("jsonl"), space=shapes_clip, create=True)
    s = index(col, [manifest])
    assert s.indexed == 1 and s.failed == {"fetch": 1}
    assert col.errors()[0]["path"].endswith("missing.jpg") and col.errors()[0]["error"] == "no such file"


def test_audio_collection_hits_say_the_matching_window(tiny_clap, tmp_path, new_location):
    import soundfile as sf

    sr = 48000
    t = np.arange(sr * 25) / sr
    wave = np.where(t < 12, 0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sign(np.sin(2 * np.pi * 2000 * t)))
    sf.write(tmp_path / "long.wav", wave.astype(np.float32), sr)
    sf.write(tmp_path / "tail.wav", wave[int(20 * sr):].astype(np.float32), sr)  # exactly the last window
    col = omnivec.open_collection(new_location("audio"), space=tiny_clap, create=True)
    index(col, [tmp_path / "long.wav"])
    hits = col.search(audio=str(tmp_path / "tail.wav"), k=1)
    assert hits[0].modality == "audio"
    assert (hits[0].start, hits[0].end) == (20.0, 25.0)  # the window that is the query
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # an item scores by its best row: here that window


def test_100k_precomputed_vectors_memory_stays_flat(tmp_path, tiny_clip, new_location, backend):
    """Adding 100k precomputed vectors in batches: peak memory grows by far less than the data held. On Milvus
    20k (each row crosses the network, at about 0.3 ms in pymilvus), with the allowance scaled to match: 1 KB a
    row, less than a row's own size, so a client that kept what it sent would fail."""
    batch = 5000 if backend == "lance" else 1000
    code = f"""
import resource, numpy as np, omnivec, sys
from omnivec.spaces import load_space
col = omnivec.open_collection({str(new_location('big'))!r}, space=load_space({str(tiny_clip.backend.model.name_or_path)!r}), create=True)
rng = np.random.default_rng(0)
peaks = []
for b in range(20):
    v = rng.standard_normal(({batch}, col.dim)).astype(np.float32)
    col.add_vectors(v, ids=[f"{{b:04d}}{{i:060d}}" for i in range({batch})])
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(len(col), peaks[4], peaks[-1])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    n, after_25k, after_100k = map(int, r.stdout.split())
    assert n == 20 * batch
    # Growth from 25k to 100k items stays well under 100 MB (the per-batch work is released).
    assert (after_100k - after_25k) / 1024 < 100 * batch / 5000, (after_25k, after_100k)


def test_cli_takes_the_location_of_either_store(shapes_col, capsys):
    from omnivec.cli import main

    first = shapes_col.items("modality = 'image'", ["id"]).column("id").to_pylist()[0]
    with pytest.raises(SystemExit) as ended:  # more like a stored item: no model needed
        main(["search", "--like", first, "--collection", shapes_col.location, "-k", "3", "--where",
              "modality = 'image'", "--json"])
    assert ended.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in out["hits"]] == [h.id for h in shapes_col.search(like=first, k=3,
                                                                              where="modality = 'image'")]
    with pytest.raises(SystemExit) as ended:
        main(["errors", "--collection", shapes_col.location, "--json"])
    assert ended.value.code == 0 and json.loads(capsys.readouterr().out)["errors"] == shapes_col.errors()
