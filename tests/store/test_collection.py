"""The Collection Python API: pinning, manifests and metadata filters, mixed queries, audio time ranges, scale."""
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
def shapes_col(sample, shapes_clip, tmp_path_factory):
    col = omnivec.open_collection(tmp_path_factory.mktemp("cols") / "shapes", space=shapes_clip, create=True)
    index(col, [sample])
    return col


def test_len_counts_unique_items_and_records_carry_provenance(shapes_col, shapes_clip):
    assert len(shapes_col) == 12 + 2
    row = shapes_col.items("modality = 'video'").to_pylist()[0]
    assert row["space"] == shapes_clip.name and row["version"] == shapes_clip.version
    assert row["duration"] == pytest.approx(9.0, abs=0.2) and row["mime"] == "video/mp4"
    seg = shapes_col.store.scan(f"id = '{row['id']}' AND kind = 'segment'").to_pylist()
    assert [(s["start"], s["end"]) for s in sorted(seg, key=lambda s: s["segment"])] == [(0.0, 5.0), (5.0, 9.0)]


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
        omnivec.open_collection(shapes_col.folder, space=tiny_clip)
    with pytest.raises(omnivec.ConfigError, match="holds 64-d vectors"):
        shapes_col.add_vectors(np.ones((1, 32), np.float32), ids=["x" * 64])
    with pytest.raises(omnivec.ConfigError, match="pinned to space"):
        shapes_col.add_vectors(np.ones((1, 64), np.float32), ids=["x" * 64], space_version="other")


def test_manifest_metadata_becomes_filterable(sample, shapes_clip, tmp_path):
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "album", "rating"])
        for i, p in enumerate(sorted((sample / "images").iterdir())):
            w.writerow([p, "holiday" if i % 2 else "work", i])
    col = omnivec.open_collection(tmp_path / "col", space=shapes_clip, create=True)
    s = index(col, [manifest])
    assert s.indexed == 12
    hits = col.search("a red circle", k=20, where="album = 'holiday' AND rating >= 4")
    assert hits and all(h.metadata["album"] == "holiday" and h.metadata["rating"] >= 4 for h in hits)
    assert len(hits) == sum(1 for i in range(12) if i % 2 and i >= 4)


def test_jsonl_manifest_with_missing_file_is_an_error_row(sample, shapes_clip, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(sample / "images" / "red-circle-0.jpg"), "tag": "a"}) + "\n" +
                        json.dumps({"path": "missing.jpg", "tag": "b"}) + "\n")
    col = omnivec.open_collection(tmp_path / "col", space=shapes_clip, create=True)
    s = index(col, [manifest])
    assert s.indexed == 1 and s.failed == {"fetch": 1}
    assert col.errors()[0]["path"].endswith("missing.jpg") and col.errors()[0]["error"] == "no such file"


def test_audio_collection_hits_say_the_matching_window(tiny_clap, tmp_path):
    import soundfile as sf

    sr = 48000
    t = np.arange(sr * 25) / sr
    wave = np.where(t < 12, 0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sign(np.sin(2 * np.pi * 2000 * t)))
    sf.write(tmp_path / "long.wav", wave.astype(np.float32), sr)
    sf.write(tmp_path / "tail.wav", wave[int(20 * sr):].astype(np.float32), sr)  # exactly the last window
    col = omnivec.open_collection(tmp_path / "col", space=tiny_clap, create=True)
    index(col, [tmp_path / "long.wav"])
    hits = col.search(audio=str(tmp_path / "tail.wav"), k=1)
    assert hits[0].modality == "audio"
    assert (hits[0].start, hits[0].end) == (20.0, 25.0)  # the window that is the query
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # an item scores by its best row: here that window


def test_100k_precomputed_vectors_memory_stays_flat(tmp_path, tiny_clip):
    """Adding 100k precomputed vectors in batches: peak memory grows by far less than the data held."""
    code = f"""
import resource, numpy as np, omnivec, sys
from omnivec.spaces import load_space
col = omnivec.open_collection({str(tmp_path / 'big')!r}, space=load_space({str(tiny_clip.backend.model.name_or_path)!r}), create=True)
rng = np.random.default_rng(0)
peaks = []
for b in range(20):
    v = rng.standard_normal((5000, col.dim)).astype(np.float32)
    col.add_vectors(v, ids=[f"{{b:04d}}{{i:060d}}" for i in range(5000)])
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(len(col), peaks[4], peaks[-1])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    n, after_25k, after_100k = map(int, r.stdout.split())
    assert n == 100_000
    # Growth from 25k to 100k items stays well under 100 MB (the per-batch work is released).
    assert (after_100k - after_25k) / 1024 < 100, (after_25k, after_100k)
