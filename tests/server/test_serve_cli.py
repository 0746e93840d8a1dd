"""`omnivec serve`: refuses to listen beyond loopback without a key; serves a collection from the command line."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx

import omnivec
from omnivec.ingest import index

from liveserver import free_port


def run_omnivec(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "omnivec", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, **kwargs)


def test_non_loopback_without_key_exits_2(server_col):
    r = run_omnivec("serve", "--collection", str(server_col.folder), "--host", "0.0.0.0", "--port", "1",
                    env={"OMNIVEC_API_KEY": ""})
    assert r.returncode == 2, r.stderr
    assert "without an API key" in r.stderr


def test_serve_answers_queries_and_stops_cleanly(server_media, shapes_clip_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("red-circle-0.jpg", "blue-square-0.jpg"):
        shutil.copy(server_media / "images" / name, photos / name)
    # Pinned by the model's folder, so that another process can load the space again.
    col = omnivec.open_collection(tmp_path / "col", space=str(shapes_clip_dir), create=True)
    index(col, [photos])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "omnivec", "serve", "--collection", str(col.folder),
                             "--port", str(port), "--json", "--query-log", str(tmp_path / "q.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMNIVEC_API_KEY": "cli-test-key-123"})
    try:
        lines = [proc.stdout.readline()]
        while lines[-1] and lines[-1].rstrip() != "}":
            lines.append(proc.stdout.readline())
        assert lines[-1], proc.stderr.read()
        info = json.loads("".join(lines))
        assert info["collection"] == "col" and info["items"] == 2 and info["api_key_required"]
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.3)
        headers = {"X-API-Key": "cli-test-key-123"}
        assert httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).status_code == 401
        r = httpx.post(f"http://127.0.0.1:{port}/search", json={"text": "a red shape", "k": 1}, headers=headers,
                       timeout=30)
        assert r.status_code == 200 and r.json()["hits"][0]["paths"][0].split("/")[-1].startswith("red")
        assert json.loads((tmp_path / "q.jsonl").read_text().splitlines()[0])["results"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0
