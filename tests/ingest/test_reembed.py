"""`omnivec reembed` moves a collection to another space and keeps every item."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import omnivec
from omnivec.samples import make_sample_folder


def test_reembed_moves_every_item_to_the_new_space(tiny_clip_dir, tiny_siglip_dir, tmp_path):
    folder = make_sample_folder(tmp_path / "media", per_concept=1, image_size=64)
    env = {**os.environ, "OMNIVEC_HOME": str(tmp_path / "home")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "omnivec", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=600)

    assert cli("index", folder, "-c", "lib", "--space", tiny_clip_dir, "--json").returncode == 0
    before = omnivec.open_collection(tmp_path / "home" / "collections" / "lib")
    ids = sorted(before.items(None, ["id"]).column("id").to_pylist())
    r = cli("reembed", "-c", "lib", "--space", tiny_siglip_dir, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["indexed"] == len(ids)
    after = omnivec.open_collection(tmp_path / "home" / "collections" / "lib")
    assert after.pinned["name"] == tiny_siglip_dir.name and after.dim == 64
    assert sorted(after.items(None, ["id"]).column("id").to_pylist()) == ids
    assert after.search("a red circle", k=3)  # answers queries in the new space
    assert not list((tmp_path / "home" / "collections").glob(".lib*"))  # no leftovers
