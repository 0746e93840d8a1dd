"""A file edited in place leaves the record of its old content; content no path holds is gone, none duplicated."""
from __future__ import annotations

import os
import shutil

import numpy as np

import omnivec
from omnivec.ingest.pipeline import index
from omnivec.samples import scene


def _paths_by_hash(col) -> dict[str, list[str]]:
    t = col.items(columns=["content_hash", "paths"]).to_pylist()
    return {r["content_hash"]: sorted(r["paths"]) for r in t}


def test_edit_in_place_moves_the_path_to_the_new_content(shapes_clip, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    scene(rng, "red", "circle").render(96).save(folder / "a.png")
    scene(rng, "blue", "square").render(96).save(folder / "b.png")
    shutil.copy(folder / "a.png", folder / "a-copy.png")
    col = omnivec.open_collection(tmp_path / "col", space=shapes_clip, create=True)
    index(col, [folder], progress=False)
    before = _paths_by_hash(col)
    assert len(before) == 2 and sorted(len(p) for p in before.values()) == [1, 2]

    # a.png now holds a green star; its old bytes live on only at a-copy.png
    scene(rng, "green", "star").render(96).save(folder / "a.png")
    # b.png now holds the same bytes as a-copy.png: the blue square's content is held by no path any more
    shutil.copy(folder / "a-copy.png", folder / "b.png")
    os.utime(folder / "b.png", ns=(1, 1))
    summary = index(col, [folder], progress=False)
    after = _paths_by_hash(col)

    assert summary.indexed == 1                        # only the green star is new content
    assert len(after) == 2 and len(col) == 2           # the blue square is gone, nothing is duplicated
    every_path = sorted(p for ps in after.values() for p in ps)
    assert every_path == sorted(str(p) for p in folder.iterdir())   # each path in exactly one record
    hits = col.search("a green star", k=1)
    assert hits[0].paths == [str(folder / "a.png")]
    red = col.search("a red circle", k=1)[0]
    assert sorted(red.paths) == sorted([str(folder / "a-copy.png"), str(folder / "b.png")])
