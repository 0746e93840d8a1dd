"""Operations on a collection's shared space, one module per job (tagging, moderation, and others).

    from omnivec.ops.tag import tag_collection
    summary = tag_collection(col, "labels.txt", top_k=3)

The names below load their module on first use, so `import omnivec.ops` stays cheap."""
from __future__ import annotations

import importlib

_LAZY = {
    "tag_collection": "tag", "tag_vectors": "tag", "read_labels": "tag",
    "load_policies": "policies",
    "moderate_collection": "moderate", "moderate_vectors": "moderate", "calibrate_policies": "moderate",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
