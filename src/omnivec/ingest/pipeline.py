"""The index job: walk -> skip unchanged -> hash -> dedup -> embed (decode in parallel) -> batched commits.

Crash safety comes from the order of commits and the content hash, not from a journal: records are committed
before the files table says a path is done, so after a kill the re-run finds any committed content by its hash
and only records the path. Every commit is atomic (LanceDB versions), so no half-written batch is ever visible."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import MediaError
from ..media import DEFAULT_LIMITS, fetch_url, sniff
from ..media.document import chunk, chunk_budget, document_mime, extract, read_document
from ..progress import ProgressBar
from ..spaces import Embedding, Segment
from ..spaces.pooling import pool
from ..store.collection import Collection, settable
from ..store.filters import sql_in
from .manifest import is_manifest, read_manifest
from .walk import walk


@dataclass
class IndexSummary:
    seen: int = 0
    indexed: int = 0          # new unique contents embedded and stored
    duplicates: int = 0       # paths whose bytes were already stored (path recorded, nothing embedded)
    unchanged: int = 0        # paths unchanged since the last run
    skipped: Counter = field(default_factory=Counter)   # reason -> count
    failed: Counter = field(default_factory=Counter)    # stage -> count
    removed: int = 0          # paths gone since the last run (--sync)
    seconds: float = 0.0
    load_seconds: float = 0.0   # loading the model, when this run had to (not part of the rate)

    def to_dict(self) -> dict:
        return {"seen": self.seen, "indexed": self.indexed, "duplicates": self.duplicates,
                "unchanged": self.unchanged, "skipped": dict(self.skipped), "failed": dict(self.failed),
                "removed": self.removed, "seconds": round(self.seconds, 2),
                "model_load_seconds": round(self.load_seconds, 2), "items_per_second": self.rate()}

    def rate(self) -> float | None:
        """Items embedded per second of work, model loading excluded, so every run's rate means the same."""
        work = self.seconds - self.load_seconds
        return round(self.indexed / work, 2) if self.indexed and work > 0 else None


@dataclass
class _Entry:
    location: str
    meta: dict
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None
    data: bytes | None = None   # a downloaded URL's bytes
    mime: str | None = None     # a text document's type (text/plain, text/markdown, text/html, application/pdf)


def sources(inputs: Iterable[str | os.PathLike], include_hidden: bool = False) -> Iterator[tuple[str, dict]]:
    """(location, metadata) for every file under the given folders, files, manifests and URLs."""
    for src in inputs:
        s = str(src)
        if s.startswith(("http://", "https://")):
            yield s, {}
            continue
        p = Path(s).expanduser()
        if is_manifest(p):
            yield from read_manifest(p)
        elif p.exists():
            for f in walk(p, include_hidden):
                yield str(f.resolve()), {}
        else:
            yield str(p.resolve()), {}   # reported as a failed item ("no such file"), not a crash


def index(col: Collection, inputs: Iterable[str | os.PathLike], *, sync: bool = False, include_hidden: bool = False,
          progress: bool = False, commit_every: int | None = None, commit_seconds: float = 5.0) -> IndexSummary:
    """Index folders, files, manifests and URLs into `col`. Items are committed in batches of `commit_every`
    (default 64, or $OMNIVEC_COMMIT_EVERY) or every `commit_seconds`, whichever comes first."""
    t0 = time.perf_counter()
    commit_every = commit_every or int(os.environ.get("OMNIVEC_COMMIT_EVERY", "64"))
    job = _Job(col, commit_every, commit_seconds)
    entries = list(sources(inputs, include_hidden))
    bar = ProgressBar("indexing", len(entries), unit="files") if progress else None
    job.summary.seen = len(entries)
    try:
        work = job.plan(entries, bar)
        first = next(work, None)  # the model is loaded only when something needs embedding
        if first is not None:
            job.summary.load_seconds += _load_time(col)
            todo = itertools.chain([first], work)
            for i, res in col.space.iter_embed(e.data if e.data is not None else Path(e.location) for e in todo):
                job.done(job.embedding[i], res)
                if bar:
                    bar.advance()
                job.maybe_flush()
        job.embed_documents(bar)
        job.flush()
        if sync:
            job.sync({loc for loc, _ in entries}, [str(Path(str(s)).expanduser().resolve()) for s in inputs])
        if job.commits > 8:
            col.store.compact()  # many small batch commits leave many small fragments
        if job.commits:
            col.refresh_index()  # large collections: the ANN index reflects this run before the next query
    finally:
        if bar:
            bar.close()
    job.summary.seconds = time.perf_counter() - t0
    return job.summary


class _Job:
    def __init__(self, col: Collection, commit_every: int, commit_seconds: float):
        self.col = col
        self.modalities = set(col.pinned["modalities"])
        self.space_name = col.pinned["name"]
        self.limits = col._space.limits if col._space is not None else DEFAULT_LIMITS
        self.commit_every, self.commit_seconds = commit_every, commit_seconds
        self.summary = IndexSummary()
        self.files = {r["path"]: r for r in col.store.all_files().to_pylist()}
        self.known = col.known_hashes()
        self.inflight: dict[str, list[_Entry]] = {}     # hash -> later paths with the same bytes
        self.embedding: list[_Entry] = []               # what iter_embed's index i refers to
        self.documents: list[_Entry] = []               # text documents, chunked and embedded after the media
        self.rows: list[dict] = []
        self.path_updates: dict[str, set[str]] = {}     # stored hash -> paths to add to its records
        self.path_removals: dict[str, set[str]] = {}    # stored hash -> paths edited in place since
        self.meta_first: dict[str, dict] = {}           # hash -> the metadata of its first manifest row this run
        self.meta_updates: dict[str, dict] = {}         # stored hash -> manifest metadata to make it follow
        self.file_rows: list[dict] = []
        self.error_rows: list[dict] = []
        self.cleared: list[str] = []
        self.last_commit = time.monotonic()
        self.pending_items = 0
        self.commits = 0

    # ---- deciding what to embed ---------------------------------------------------------------------------------
    def plan(self, entries: list[tuple[str, dict]], bar) -> Iterator[_Entry]:
        """Yields the entries that need embedding; settles the rest (unchanged, duplicate, skipped) on the way."""
        for location, meta in entries:
            e = _Entry(location, meta)
            try:
                verdict = self._triage(e)
            except MediaError as err:
                self._fail(e, err.stage, err.cause)
                verdict = "failed"
            if verdict in ("embed", "document"):
                self.meta_first.setdefault(e.content_hash, e.meta)
            if verdict == "embed":
                self.embedding.append(e)
                self.inflight[e.content_hash] = []
                yield e
                continue
            if verdict == "document":
                self.documents.append(e)
                self.inflight[e.content_hash] = []
                continue
            if bar:
                bar.advance()
            self.maybe_flush()

    def _triage(self, e: _Entry) -> str:
        if e.location.startswith(("http://", "https://")):
            prev = self.files.get(e.location)
            if prev and prev["status"] in ("indexed", "skipped"):
                return self._unchanged(prev, e)
            e.data = fetch_url(e.location, self.limits)
            e.size, e.content_hash = len(e.data), hashlib.sha256(e.data).hexdigest()
            head = e.data[:256]
        else:
            try:
                st = os.stat(e.location)
            except OSError as err:
                raise MediaError(e.location, "no such file" if not os.path.exists(e.location)
                                 else f"cannot read: {err.strerror}", "fetch") from None
            e.size, e.mtime_ns = st.st_size, st.st_mtime_ns
            prev = self.files.get(e.location)
            if prev and prev["status"] in ("indexed", "skipped") and prev["size"] == e.size \
                    and prev["mtime_ns"] == e.mtime_ns:
                return self._unchanged(prev, e)
            e.content_hash, head = _hash_file(e.location, e.size, self.limits.max_bytes)
            if prev and prev.get("content_hash") and prev["content_hash"] != e.content_hash:
                # Edited in place: the path no longer holds the old content, so it leaves that record.
                self.path_removals.setdefault(prev["content_hash"], set()).add(e.location)
        if e.content_hash in self.known:
            self._add_path(e)
            self._follow_meta(e.content_hash, e.meta)
            return "duplicate"
        if e.content_hash in self.inflight:
            self.inflight[e.content_hash].append(e)
            return "duplicate"
        kind = sniff(head)
        e.mime = document_mime(e.location, head)
        if e.mime is not None:  # text documents are chunked; each chunk is embedded as text
            kind = ("text", e.mime)
            if "text" in self.modalities:
                return "document"
        if kind is not None and kind[0] not in self.modalities:
            reason = f"{kind[0]} not covered by space {self.space_name}"
            self.summary.skipped[reason] += 1
            self._file_row(e, "skipped", reason)
            return "skipped"
        return "embed"

    # ---- results ------------------------------------------------------------------------------------------------
    def done(self, e: _Entry, res: Embedding | MediaError) -> None:
        later = self.inflight.pop(e.content_hash, [])
        if isinstance(res, MediaError):
            for x in [e] + later:
                self._fail(x, res.stage, res.cause)
            return
        self.summary.indexed += 1
        self.known.add(e.content_hash)
        paths = sorted({x.location for x in [e] + later})
        self.rows.extend(self._records(e, res, paths))
        self.summary.duplicates += len(later)
        for x in [e] + later:
            self._file_row(x, "indexed")
        self.pending_items += 1

    def _records(self, e: _Entry, emb: Embedding, paths: list[str]) -> list[dict]:
        info = emb.info
        mtime = e.mtime_ns / 1e9 if e.mtime_ns else None
        year = int(info["taken_at"][:4]) if info.get("taken_at") else (time.gmtime(mtime).tm_year if mtime else None)
        common = dict(paths=paths, modality=emb.modality, mime=info.get("mime"), size=e.size,
                      width=info.get("width"), height=info.get("height"), duration=info.get("duration"),
                      taken_at=info.get("taken_at"), year=year, lat=info.get("lat"), lon=info.get("lon"), mtime=mtime)
        rows = [self.col.record(e.content_hash, "item", -1, emb.vector, meta=e.meta, **common)]
        chunks = info.get("chunks") or []  # a document's segments are its text chunks
        for n, s in enumerate(emb.segments):
            rows.append(self.col.record(e.content_hash, "segment", n, s.vector, start=s.start, end=s.end,
                                        meta=e.meta, **common, **(chunks[n] if n < len(chunks) else {})))
        return rows

    # ---- text documents ---------------------------------------------------------------------------------------
    def embed_documents(self, bar, batch_chunks: int = 256) -> None:
        """Extract and chunk each queued document, embed the chunks through the space's text encoder (batched
        across documents), and store the document as an item (length-weighted mean of its chunks) whose segments
        are the chunks."""
        pending: list[tuple[_Entry, list]] = []
        for n, e in enumerate(self.documents, 1):
            try:
                doc = extract(e.data, e.location, e.mime, self.limits) if e.data is not None \
                    else read_document(e.location, self.limits, e.mime)
                # The space (and its model) loads only once a document has text to embed.
                pending.append((e, chunk(doc, chunk_budget(self.col.space.backend.max_text_tokens))))
            except MediaError as err:
                self._document_done(e, err, bar)
            if pending and (n == len(self.documents) or sum(len(c) for _, c in pending) >= batch_chunks):
                texts = [c.text for _, cs in pending for c in cs]
                results = self.col.space.embed_items(texts, modality="text", on_error="return")
                for e_, chunks_ in pending:
                    mine, results = results[:len(chunks_)], results[len(chunks_):]
                    self._document_done(e_, self._document_embedding(e_, chunks_, mine), bar)
                pending = []
        self.documents = []

    def _document_embedding(self, e: _Entry, chunks: list, results: list) -> Embedding | MediaError:
        failed = next((r for r in results if isinstance(r, MediaError)), None)
        if failed is not None:
            return MediaError(e.location, f"chunk {results.index(failed)}: {failed.cause}", failed.stage)
        vectors = np.stack([r.vector for r in results])
        space = self.col.space
        fields = [{"chunk_text": c.text, "chunk_start": c.start, "chunk_end": c.end,
                   **({"chunk_page": c.page} if c.page is not None else {}),
                   **({"chunk_heading": c.heading} if c.heading else {})} for c in chunks]
        return Embedding(item=e.location, modality="text", vector=pool(vectors, [len(c.text) for c in chunks]),
                         space=space.name, model=space.model, version=space.version,
                         segments=[Segment(None, None, v) for v in vectors],
                         info={"mime": e.mime, "chunks": fields})

    def _document_done(self, e: _Entry, res: Embedding | MediaError, bar) -> None:
        self.done(e, res)
        if bar:
            bar.advance()
        self.maybe_flush()

    def _unchanged(self, prev: dict, e: _Entry) -> str:
        """A path as it was last run: still skipped for the same reason (a re-run says so), or unchanged."""
        if prev["status"] == "skipped":
            self.summary.skipped[prev["reason"] or "skipped"] += 1
            return "skipped"
        self.summary.unchanged += 1
        self._follow_meta(prev.get("content_hash"), e.meta)
        return "unchanged"

    def _follow_meta(self, content_hash: str | None, meta: dict) -> None:
        """Stored content follows its manifest row: a field the row gives is set to the row's value (fields the
        row does not give, like tags, are left alone). When several rows name the same bytes, the first row in
        manifest order gives the item's values, on every run alike."""
        if not meta or not content_hash or content_hash in self.meta_first:
            return
        self.meta_first[content_hash] = meta
        self.meta_updates[content_hash] = meta

    def _add_path(self, e: _Entry) -> None:
        self.summary.duplicates += 1
        self.path_updates.setdefault(e.content_hash, set()).add(e.location)
        self._file_row(e, "indexed")

    def _fail(self, e: _Entry, stage: str, cause: str) -> None:
        self.summary.failed[stage] += 1
        self.error_rows.append({"path": e.location, "stage": stage, "error": cause, "time": time.time()})
        self._file_row(e, "failed", cause)

    def _file_row(self, e: _Entry, status: str, reason: str | None = None) -> None:
        self.file_rows.append({"path": e.location, "content_hash": e.content_hash, "size": e.size,
                               "mtime_ns": e.mtime_ns, "status": status, "reason": reason})

    # ---- commits ------------------------------------------------------------------------------------------------
    def maybe_flush(self) -> None:
        if self.pending_items >= self.commit_every or len(self.file_rows) >= 4 * self.commit_every or (
                (self.rows or self.file_rows) and time.monotonic() - self.last_commit >= self.commit_seconds):
            self.flush()

    def flush(self) -> None:
        store = self.col.store
        if not (self.rows or self.path_updates or self.path_removals or self.file_rows or self.error_rows
                or self.meta_updates):
            return
        self.commits += 1
        self.col.write_records(self.rows)                 # 1. new content (atomic)
        self._apply_path_updates()                        # 2. extra paths of stored content
        self._apply_meta_updates()                        #    and manifest edits of stored content
        self.known -= _detach_paths(store, self.path_removals)  # and paths whose file now holds other bytes
        self.path_removals = {}
        ok_paths = [r["path"] for r in self.file_rows if r["status"] != "failed"]
        store.clear_errors(ok_paths + [r["path"] for r in self.error_rows])
        store.add_errors(self.error_rows)                 # 3. failures are data
        store.upsert_files(self.file_rows)                # 4. only now is a path "done"
        for r in self.file_rows:
            self.files[r["path"]] = r
        self.rows, self.file_rows, self.error_rows = [], [], []
        self.pending_items = 0
        self.last_commit = time.monotonic()

    def _apply_path_updates(self) -> None:
        if not self.path_updates:
            return
        store = self.col.store
        hashes = list(self.path_updates)
        t = store.scan(sql_in("content_hash", hashes))
        rows = t.to_pylist()
        changed = []
        for r in rows:
            merged = sorted(set(r["paths"] or []) | self.path_updates[r["content_hash"]])
            if merged != r["paths"]:
                r["paths"] = merged
                changed.append(r)
        if changed:
            import pyarrow as pa

            store.upsert_records(pa.Table.from_pylist(changed, schema=t.schema))
        self.path_updates = {}

    def _apply_meta_updates(self) -> None:
        """Manifest values that differ from the stored ones, in one metadata commit per set of fields."""
        if not self.meta_updates:
            return
        hashes = [h for h in self.meta_updates if h in self.known]
        stored = {r["content_hash"]: json.loads(r["meta"]) if r["meta"] else {}
                  for r in self.col.items(sql_in("content_hash", hashes), ["content_hash", "meta"]).to_pylist()}
        groups: dict[tuple[str, ...], list[str]] = {}
        for h in hashes:
            meta = {k: v for k, v in self.meta_updates[h].items() if settable(k)}
            if h in stored and any(stored[h].get(k) != v for k, v in meta.items()):
                groups.setdefault(tuple(sorted(meta)), []).append(h)
        for fields, group in groups.items():
            self.col.update_metadata(group, {f: [self.meta_updates[h][f] for h in group] for f in fields})
        self.meta_updates = {}

    # ---- --sync ---------------------------------------------------------------------------------------------------
    def sync(self, seen: set[str], roots: list[str]) -> None:
        """Forget paths under the given roots that no longer exist; delete content no path holds any more."""
        gone = [p for p in self.files if p not in seen and any(p == r or p.startswith(r.rstrip("/") + "/")
                                                              for r in roots) and not os.path.exists(p)]
        if not gone:
            return
        store = self.col.store
        detach: dict[str, set[str]] = {}
        for p in gone:
            if self.files[p].get("content_hash"):
                detach.setdefault(self.files[p]["content_hash"], set()).add(p)
        _detach_paths(store, detach)
        store.clear_errors(gone)
        store.delete_files(gone)
        for p in gone:
            self.files.pop(p, None)
        self.summary.removed = len(gone)


def _load_time(col: Collection) -> float:
    """Seconds spent loading the collection's model now (0 when it was loaded already)."""
    t0 = time.perf_counter()
    col.space
    return time.perf_counter() - t0


def _detach_paths(store, detach: dict[str, set[str]]) -> set[str]:
    """Remove paths from the records of the given content hashes; content that no path holds any more is deleted
    (its hash is returned). Idempotent, so a crash between this and the files-table commit is repaired by the
    next run."""
    if not detach:
        return set()
    import pyarrow as pa

    t = store.scan(sql_in("content_hash", list(detach)))
    keep, dead = [], set()
    for r in t.to_pylist():
        left = [p for p in (r["paths"] or []) if p not in detach[r["content_hash"]]]
        if left:
            if left != r["paths"]:
                r["paths"] = left
                keep.append(r)
        else:
            dead.add(r["content_hash"])
    if keep:
        store.upsert_records(pa.Table.from_pylist(keep, schema=t.schema))
    if dead:
        store.delete_records(sql_in("content_hash", dead))
    return dead


def _hash_file(path: str, size: int, max_bytes: int) -> tuple[str, bytes]:
    if size > max_bytes:
        raise MediaError(path, f"{size} bytes exceed the limit of {max_bytes}", "limits")
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            h.update(head)
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise MediaError(path, f"cannot read: {e.strerror or e}", "fetch") from None
    return h.hexdigest(), head[:256]
