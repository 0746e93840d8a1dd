"""The README's main job: `omnivec demo` on an offline machine falls back to the trained shapes model, says so,
indexes the sample folder and answers cross-modal queries correctly."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def test_demo_offline_falls_back_and_answers(shapes_clip_dir, omnivec_home, tmp_path, training_seed):
    if training_seed != 0:
        pytest.skip("the demo trains seed 0 and would not reuse the session's model of another seed")
    env = {**os.environ, "OMNIVEC_HOME": str(omnivec_home), "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    r = subprocess.run([sys.executable, "-m", "omnivec", "demo", "--json"], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert "No pretrained weights are reachable for clip-vit-b-32" in report["note"]
    assert "falls back" in report["note"]
    assert report["space"]["name"] == shapes_clip_dir.name  # the model trained by the session, reused not retrained
    assert report["indexed"] == 18 + 2 and not report["failed"]
    queries = report["queries"]
    assert sum(q["top1_matches"] for q in queries) >= len(queries) - 1
    video_hits = [h for q in queries for h in q["hits"] if h["modality"] == "video"]
    assert video_hits and all(h["end"] > h["start"] for h in video_hits)  # video hits say when


def test_demo_does_not_fall_back_for_other_commands(omnivec_home, tmp_path):
    """Only the demo may swap models: embed with the default space fails clearly offline."""
    env = {**os.environ, "OMNIVEC_HOME": str(omnivec_home), "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    r = subprocess.run([sys.executable, "-m", "omnivec", "embed", "--text", "a red circle"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 3 and "clip-vit-b-32" in r.stderr
