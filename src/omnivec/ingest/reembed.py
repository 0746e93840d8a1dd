"""`omnivec reembed`: move a collection to another space and keep everything a user gave it.

Only the vectors (and what the new model derives: segments, their times) change. Every item keeps its paths, its
user metadata (manifest columns, `update_metadata` fields, tags, moderation verdicts), its `added` time and any
year, time or place a user set; the files and errors tables and every file beside the tables (the moderation
audit log) move along.

Crash safety: the new collection is built in a sibling folder (`.NAME.reembed`) while the old one stays as it
was and answers queries. A re-run after a kill resumes that folder (the index job skips what it already holds).
Only when it is complete is a READY marker written, and then two renames swap the folders; a collection opened
between the two renames finishes the swap (store.collection.finish_reembed_swap).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field

import pyarrow as pa

from ..errors import ConfigError, OmnivecError
from ..spaces import Space
from ..store import open_collection
from ..store.collection import (INFO_FILE, REEMBED_READY, Collection, as_space, reembed_folder, swap_in_reembed,
                                write_info)
from .pipeline import IndexSummary, index

log = logging.getLogger(__name__)

# Fields the new model derives again from the same bytes; everything else on an item row is carried over.
DERIVED = {"key", "id", "content_hash", "kind", "segment", "modality", "mime", "size", "width", "height", "duration",
           "start", "end", "mtime", "space", "version", "vector"}
# What the collection folder holds that is rebuilt for the new space rather than copied.
REBUILT = {"db", "search", "cache", INFO_FILE}


class ReembedIncomplete(OmnivecError):
    """Some items could not be re-embedded (their bytes are gone); the old collection was left as it was."""


@dataclass
class ReembedSummary:
    collection: str
    source: str
    target: str
    index: IndexSummary
    carried_items: int = 0
    carried_fields: list[str] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    newly_failed: list[str] = field(default_factory=list)   # paths that failed now but had not failed before
    resumed: bool = False

    def to_dict(self) -> dict:
        return {"collection": self.collection, "from": self.source, "to": self.target, **self.index.to_dict(),
                "carried_items": self.carried_items, "carried_fields": self.carried_fields,
                "dropped": self.dropped, "newly_failed": self.newly_failed, "resumed": self.resumed}


def reembed(name_or_path: str, space: Space | str, *, progress: bool = False,
            drop_unreadable: bool = False) -> ReembedSummary:
    """Re-embed every item of a collection with `space` and swap the result in. Items whose bytes cannot be read
    at any stored path stop the move (ReembedIncomplete, the old collection untouched, the work so far kept for a
    re-run) unless `drop_unreadable`, which drops them and lists them in the summary, the errors table and
    `reembed-dropped.jsonl` in the collection folder (their rows without vectors)."""
    old = open_collection(name_or_path)
    if old.location.startswith("milvus://"):
        raise ConfigError(f"reembed swaps collection folders; for {old.location} index the paths into a new "
                          f"Milvus collection with --space {getattr(space, 'name', space)}, then switch to it")
    target = as_space(space)
    tmp = reembed_folder(old.folder)
    new, resumed = _open_target(old, target, tmp)

    old_items = old.items(None, [c for c in old.store.columns() if c != "vector"])
    old_files = old.store.all_files()
    paths = sorted({p for row in old_items.column("paths").to_pylist() for p in row or []}
                   | {r["path"] for r in old_files.to_pylist() if r["status"] in ("skipped", "failed")})
    summary = index(new, paths, progress=progress)

    new_hashes = new.known_hashes()
    rows = old_items.to_pylist()
    missing = [r for r in rows if r["content_hash"] not in new_hashes]
    if missing and not drop_unreadable:
        shown = "; ".join(f"{r['id']} ({', '.join(r['paths'] or []) or 'no path: added as a vector'})"
                          for r in missing[:5])
        raise ReembedIncomplete(
            f"{len(missing)} of {len(rows)} items of {old.name!r} could not be re-embedded, because their bytes are "
            f"not at any stored path: {shown}{' ...' if len(missing) > 5 else ''}. The collection was not changed. "
            f"Restore the files and run reembed again (the work so far is kept), or pass --drop-unreadable")
    old_errors = old.store.all_errors().to_pylist()
    failed_before = {r["path"] for r in old_errors}
    newly_failed = sorted(r["path"] for r in new.store.all_errors().to_pylist() if r["path"] not in failed_before)
    carried = _carry_fields(new, old_items, new_hashes)
    _carry_files_and_errors(new, old_files.to_pylist(), old_errors, missing)
    result = ReembedSummary(old.name, old.pinned["name"], new.pinned["name"], summary,
                            carried_items=len(rows) - len(missing), carried_fields=carried,
                            dropped=[{"id": r["id"], "paths": r["paths"] or []} for r in missing],
                            newly_failed=newly_failed, resumed=resumed)
    if missing:
        with open(tmp / "reembed-dropped.jsonl", "a", encoding="utf-8") as f:
            for r in missing:
                f.write(json.dumps(r, default=str) + "\n")
    _swap(old, new, tmp)
    return result


def _open_target(old: Collection, target: Space, tmp) -> tuple[Collection, bool]:
    """The half-built new collection of an interrupted run for the same space, or a new one."""
    if (tmp / INFO_FILE).is_file():
        try:
            prev = Collection(tmp)
            p = prev.pinned
            if (p["name"], p["version"], p["dim"]) == (target.name, target.version, target.dim):
                prev.attach_space(target)
                (tmp / REEMBED_READY).unlink(missing_ok=True)   # it is being worked on again
                return prev, True
        except (OmnivecError, OSError, ValueError) as e:
            log.warning("discarding an unusable interrupted reembed at %s: %s", tmp, e)
    shutil.rmtree(tmp, ignore_errors=True)
    new = Collection.create(tmp, target)
    info = {**new.info, "name": old.name, "created": old.info.get("created", new.info["created"]),
            "history": [*old.info.get("history", []),
                        {"reembedded": time.time(), "from": old.pinned, "to": new.pinned["name"]}]}
    write_info(tmp, info)
    new.info = info
    return new, False


def _carry_fields(new: Collection, old_items: pa.Table, new_hashes: set[str]) -> list[str]:
    """Every non-derived field of each old item row onto the new item row (same content, same row key); returns
    the fields carried."""
    names = [c for c in old_items.column_names if c not in DERIVED]
    known = set(new.store.columns())
    new.store.add_columns([old_items.schema.field(c) for c in names if c not in known])
    keep = [h in new_hashes for h in old_items.column("content_hash").to_pylist()]
    table = old_items.filter(pa.array(keep)).select(["key", *names])
    for i in range(0, table.num_rows, 5000):
        new.store.update_records(table.slice(i, 5000))
    return names


def _carry_files_and_errors(new: Collection, old_files: list[dict], old_errors: list[dict],
                            dropped: list[dict]) -> None:
    """Paths the new run did not see keep their files rows; their errors stay listed."""
    seen = {r["path"] for r in new.store.all_files().to_pylist()}
    new.store.upsert_files([r for r in old_files if r["path"] not in seen])
    listed = {r["path"] for r in new.store.all_errors().to_pylist()}
    new.store.add_errors([r for r in old_errors if r["path"] not in listed and r["path"] not in seen])
    now = time.time()
    new.store.add_errors([{"path": p, "stage": "reembed", "time": now,
                           "error": f"item {r['id']} dropped by reembed --drop-unreadable: bytes not found"}
                          for r in dropped for p in (r["paths"] or [f"<item {r['id']}>"])])


def _swap(old: Collection, new: Collection, tmp) -> None:
    """Copy the files beside the tables (the audit log), then swap the folders (store.collection.swap_in_reembed)."""
    for entry in os.scandir(old.folder):
        if entry.name in REBUILT or entry.name.endswith(".tmp"):
            continue
        if entry.is_dir():
            shutil.copytree(entry.path, tmp / entry.name, dirs_exist_ok=True)
        else:
            shutil.copy2(entry.path, tmp / entry.name)
    new.store.compact()
    swap_in_reembed(old.folder)
