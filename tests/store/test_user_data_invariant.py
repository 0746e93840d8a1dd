"""The invariant, on both stores: an operation that rewrites records changes only what the user asked it to change.
Manifest metadata, fields set later, tags, moderation verdicts, errors and the audit log survive index re-runs,
--sync, tagging, moderation, calibration, update_metadata and ANN rebuilds exactly."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import omnivec
from omnivec.ingest import index
from omnivec.ops.moderate import FIELDS as MODERATION_FIELDS
from omnivec.ops.moderate import calibrate_policies, moderate_collection, read_audit
from omnivec.ops.policies import load_policies
from omnivec.ops.tag import tag_collection
from omnivec.samples import scene

COLOURS = ("red", "blue", "green", "yellow")
POLICY = ("policies:\n- name: red\n  action: review\n  threshold: 0.0\n  positives: [a red shape]\n"
          "  negatives: [a blue shape, a green shape]\n")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("invariant")
    rng = np.random.default_rng(9)
    rows = []
    for i in range(10):
        path = root / f"{COLOURS[i % 4]}-{i}.png"
        scene(rng, COLOURS[i % 4], "square").render(48).save(path)
        rows.append({"path": path.name, "year": 2000 + i, "album": "a" if i % 2 else "b"})
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    rows.append({"path": "broken.png", "year": 1990, "album": "a"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "year", "album"])
        w.writeheader()
        w.writerows(rows)
    (root / "policy.yaml").write_text(POLICY)
    return root


def user_data(col) -> dict:
    """Per item: every field but the vector and the bookkeeping that may legitimately move (none here)."""
    items = {r["content_hash"]: {k: v for k, v in r.items() if k != "vector"}
             for r in col.items(None).to_pylist()}
    return {"items": items, "errors": [(e["path"], e["stage"], e["error"]) for e in col.errors()],
            "audit": read_audit(col)}


def without(data: dict, fields: set[str]) -> dict:
    """The same data with the named fields (and the ones named after them: tags_scores, tags_version) removed
    from every item and from its meta JSON."""
    def kept(k: str) -> bool:
        return not any(k == f or k.startswith(f + "_") for f in fields)

    out = {}
    for h, item in data["items"].items():
        meta = {k: v for k, v in json.loads(item["meta"] or "{}").items() if kept(k)}
        out[h] = {**{k: v for k, v in item.items() if kept(k)}, "meta": meta}
    return {**data, "items": out}


def test_operations_change_only_what_was_asked(media, new_location, shapes_clip, tmp_path, monkeypatch):
    col = omnivec.open_collection(new_location("inv"), space=shapes_clip, create=True)
    summary = index(col, [media / "manifest.csv"])
    assert summary.indexed == 10 and summary.failed
    tag_collection(col, {"red": ["a red shape"], "blue": ["a blue shape"]}, top_k=1)
    moderate_collection(col, load_policies(media / "policy.yaml"))
    first = sorted(user_data(col)["items"])[0]
    col.update_metadata([first], {"note": ["keep"]})
    base = user_data(col)
    assert base["audit"] and base["errors"] and all("tags" in it for it in base["items"].values())

    # Re-running the same manifest, and --sync of a folder with nothing gone, change nothing.
    index(col, [media / "manifest.csv"])
    assert user_data(col) == base
    index(col, [media / "manifest.csv"], sync=True)
    assert user_data(col) == base

    # Tagging into another field changes that field only.
    tag_collection(col, {"square": ["a square"]}, top_k=1, field="shape_tags")
    now = user_data(col)
    assert without(now, {"shape_tags"}) == without(base, set())
    assert all(it["shape_tags"] == ["square"] for it in now["items"].values())
    base = now

    # A second moderation run appends to the audit log and rewrites only moderation fields.
    moderation_fields = set(MODERATION_FIELDS)
    moderate_collection(col, load_policies(media / "policy.yaml"))
    now = user_data(col)
    assert now["audit"][:len(base["audit"])] == base["audit"] and len(now["audit"]) > len(base["audit"])
    assert without({**now, "audit": []}, moderation_fields) == without({**base, "audit": []}, moderation_fields)
    base = now

    # Calibration reads the collection and writes a policy; it changes nothing stored.
    verdicts = tmp_path / "verdicts.csv"
    paths = {h: it["paths"][0] for h, it in base["items"].items()}
    verdicts.write_text("path,verdict\n" + "".join(f"{p},{'yes' if Path(p).name.startswith('red') else 'no'}\n"
                                                   for p in paths.values()))
    calibrate_policies(media / "policy.yaml", verdicts, collection=col, target_precision=0.5,
                       output=tmp_path / "calibrated.yaml")
    assert (tmp_path / "calibrated.yaml").is_file() and user_data(col) == base

    # update_metadata changes the named field of the named item only.
    col.update_metadata([first], {"album": ["z"]})
    now = user_data(col)
    assert now["items"][first]["album"] == "z"
    assert without(now, {"album"}) == without(base, {"album"})
    base = now

    # Building the ANN index (collections from OMNIVEC_ANN_MIN_ROWS rows up) reads records and writes none.
    monkeypatch.setenv("OMNIVEC_ANN_MIN_ROWS", "1")
    col.refresh_index()
    assert col.search("a red shape", k=3)
    assert user_data(col) == base
