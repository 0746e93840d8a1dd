"""A collection records the library versions that made its vectors and warns on open when they differ."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import omnivec
from omnivec.spaces.libraries import library_versions


def test_library_versions_are_recorded_and_a_change_is_named_on_open(tmp_path, tiny_clip):
    col = omnivec.open_collection(tmp_path / "c", space=tiny_clip, create=True)
    col.add_vectors(np.eye(1, tiny_clip.dim, dtype=np.float32), ids=["a"])
    info = json.loads((tmp_path / "c" / "collection.json").read_text())
    assert info["libraries"] == library_versions() and {"omnivec", "torch", "transformers"} <= set(info["libraries"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the same versions: no warning
        omnivec.open_collection(tmp_path / "c")
    info["libraries"]["torch"] = "0.0.1"
    (tmp_path / "c" / "collection.json").write_text(json.dumps(info))
    with pytest.warns(omnivec.LibraryVersionWarning, match=r"torch 0\.0\.1 -> "):
        reopened = omnivec.open_collection(tmp_path / "c")
    assert len(reopened) == 1                   # a warning, not a refusal
