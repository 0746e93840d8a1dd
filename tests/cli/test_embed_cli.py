"""`omnivec embed` end to end: a generated folder (images, videos, a broken file) into parquet and JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import omnivec
from omnivec.samples import make_sample_folder
from vectors import assert_same_vectors


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnivec", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = make_sample_folder(tmp_path_factory.mktemp("sample"), per_concept=1, image_size=64)
    (d / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)  # a JPEG header and nothing else
    return d


def test_embed_folder_to_parquet_reports_failures(folder, tiny_clip_dir, tmp_path):
    out = tmp_path / "vecs.parquet"
    r = run_cli("embed", str(folder), "--text", "a red circle", "--space", str(tiny_clip_dir), "--out", str(out),
                "--json")
    assert r.returncode == 1, r.stderr  # one input failed, the rest were embedded
    summary = json.loads(r.stdout)
    assert summary["embedded"] == 6 + 2 + 1
    assert [f["item"] for f in summary["failed"]] == [str(folder / "images" / "broken.jpg")]
    assert "cannot decode image" in summary["failed"][0]["error"]
    table = pq.read_table(out).to_pylist()
    items = [row for row in table if row["kind"] == "item"]
    assert len(items) == 9
    assert {row["modality"] for row in items} == {"image", "video", "text"}
    segments = [row for row in table if row["kind"] == "segment"]
    assert segments and all(row["end"] > row["start"] for row in segments)
    assert {row["space"] for row in table} == {tiny_clip_dir.name}
    # The file holds what the Python API computes. The CLI embeds the file in a batch and the API alone, so the
    # promise is the same vector up to float rounding (tests/vectors.py), not the same bits.
    space = omnivec.load_space(str(tiny_clip_dir))
    red = next(row for row in items if row["item"].endswith("red-circle-0.jpg"))
    assert_same_vectors(np.asarray(red["vector"], np.float32), space.embed([red["item"]])[0], "CLI and API")
    assert red["version"] == space.version


def test_embed_json_without_out_prints_vectors(tiny_clip_dir):
    r = run_cli("embed", "--text", "a red circle", "--text", "a blue square", "--space", str(tiny_clip_dir), "--json")
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)["items"]
    space = omnivec.load_space(str(tiny_clip_dir))
    np.testing.assert_array_equal(np.asarray([i["vector"] for i in items], np.float32),
                                  space.embed_text(["a red circle", "a blue square"]))


def test_missing_file_is_an_item_error_not_text(tiny_clip_dir, tmp_path):
    r = run_cli("embed", str(tmp_path / "nope.jpg"), "--space", str(tiny_clip_dir), "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["failed"][0]["error"] == "no such file"


def test_usage_errors_exit_2(tiny_clip_dir):
    assert run_cli("embed", "--space", str(tiny_clip_dir)).returncode == 2
    assert run_cli("no-such-command").returncode == 2
