"""Operations on a collection's shared space, one module per job: tagging, moderation, clustering, near-duplicates,
recommendation, retrieval for RAG.

    from omnivec.ops.tag import tag_collection
    summary = tag_collection(col, "labels.txt", top_k=3)

The names below load their module on first use, so `import omnivec.ops` stays cheap."""
from __future__ import annotations

import importlib

_LAZY = {
    "tag_collection": "tag", "tag_vectors": "tag", "read_labels": "tag",
    "load_policies": "policies",
    "moderate_collection": "moderate", "moderate_vectors": "moderate", "calibrate_policies": "moderate",
    "find_dupes": "dupes",
    # cluster, recommend and retrieve share their module's name, so they are imported from the module itself
    # (`from omnivec.ops.cluster import cluster`): a lazy alias here would be shadowed once the module is imported.
}


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
