"""Bound-space fixtures: the tiny sounds CLAP (trained once, cached like the shapes CLIP), the binding corpus, and a
bound space made by the `omnivec bind` command from the shapes CLIP and the sounds CLAP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnivec", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="session")
def cli():
    """Run `python -m omnivec ARGS...` in a subprocess."""
    return run_cli


@pytest.fixture(scope="session")
def sounds_clap_dir(omnivec_home) -> Path:
    """A tiny CLAP trained on sound-caption pairs only (train/clap_recipe.py), in hub layout."""
    from omnivec.train.clap_recipe import load_or_train_sounds_clap

    # Developers keep one trained copy across runs (OMNIVEC_TEST_MODEL_CACHE); CI trains it fresh.
    return load_or_train_sounds_clap(os.environ.get("OMNIVEC_TEST_MODEL_CACHE") or omnivec_home / "models")


@pytest.fixture(scope="session")
def captions_file(tmp_path_factory) -> Path:
    from omnivec.train.sounds import binding_corpus

    path = tmp_path_factory.mktemp("corpus") / "captions.txt"
    path.write_text("\n".join(binding_corpus()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def bound(shapes_clip_dir, sounds_clap_dir, captions_file, tmp_path_factory) -> tuple[Path, dict]:
    """(folder, the command's JSON summary): the shapes CLIP (pictures) bound to the sounds CLAP through captions."""
    out = tmp_path_factory.mktemp("bound") / "shapes-sounds"
    r = run_cli("bind", shapes_clip_dir, sounds_clap_dir, "--corpus", captions_file, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


@pytest.fixture(scope="session")
def bound_space(bound):
    import omnivec

    return omnivec.load_space(bound[0])
