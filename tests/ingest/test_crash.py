"""kill -9 at any moment leaves a collection that opens, and the re-run ends with exactly one record per content."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import omnivec


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """120 distinct small images, plus 10 byte-identical copies at other paths."""
    d = tmp_path_factory.mktemp("crash-media")
    rng = np.random.default_rng(5)
    for i in range(120):
        arr = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(d / f"img{i:03d}.png")
    for i in range(10):
        (d / f"dup{i}.png").write_bytes((d / f"img{i:03d}.png").read_bytes())
    return d


def start(folder: Path, col: Path, model: Path) -> subprocess.Popen:
    # Small commits so that a kill lands between many of them.
    env = {**os.environ, "OMNIVEC_COMMIT_EVERY": "8"}
    return subprocess.Popen([sys.executable, "-m", "omnivec", "index", str(folder), "--collection", str(col),
                             "--space", str(model), "--json"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def check_consistent(col_path: Path, expected_items: int | None = None) -> int:
    col = omnivec.open_collection(col_path)
    rows = col.items(None, ["content_hash", "key", "paths"]).to_pylist()
    hashes = [r["content_hash"] for r in rows]
    assert len(hashes) == len(set(hashes)), "a content was stored twice"
    assert len(col.store.scan(None, ["key"])) == len(set(col.store.scan(None, ["key"]).column("key").to_pylist()))
    if rows:
        col.search("anything", k=3)  # the collection answers queries after every kill
    if expected_items is not None:
        assert len(rows) == expected_items
    return len(rows)


def stored_rows(col_path: Path) -> int:
    """Rows committed so far, read from another process while the indexer writes."""
    import lancedb

    try:
        return lancedb.connect(str(col_path / "db")).open_table("items").count_rows()
    except Exception:  # not created yet
        return 0


def kill_when(p: subprocess.Popen, col_path: Path, rows: int, extra: float, limit: float = 300) -> None:
    t0 = time.monotonic()
    while p.poll() is None and stored_rows(col_path) < rows and time.monotonic() - t0 < limit:
        time.sleep(0.02)
    time.sleep(extra)  # land at different moments relative to the commits
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()


def test_sigkill_at_several_points_then_resume(folder, tiny_clip_dir, tmp_path):
    col_path = tmp_path / "col"
    counts = []
    # Kill during start-up (before the collection exists), then at growing progress, at varied offsets.
    p = start(folder, col_path, tiny_clip_dir)
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    for rows, extra in ((8, 0.0), (30, 0.05), (60, 0.13), (95, 0.02)):
        kill_when(start(folder, col_path, tiny_clip_dir), col_path, rows, extra)
        counts.append(check_consistent(col_path))
    assert any(0 < c < 120 for c in counts), f"no kill landed mid-run: {counts}"
    r = subprocess.run([sys.executable, "-m", "omnivec", "index", str(folder), "--collection", str(col_path),
                        "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    check_consistent(col_path, expected_items=120)
    col = omnivec.open_collection(col_path)
    dup_rows = [r for r in col.items(None, ["paths"]).to_pylist() if len(r["paths"]) == 2]
    assert len(dup_rows) == 10  # each copy's path is recorded on its original's record
    files = col.store.all_files().to_pylist()
    assert len(files) == 130 and all(f["status"] == "indexed" for f in files)
