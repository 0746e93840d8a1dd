"""Approximate nearest-neighbour index for a collection: HNSW over int8 vectors, exact float rescoring.

Library: usearch (`usearch.index.Index(metric="ip", dtype="i8")`), chosen over faiss `IndexHNSWSQ(QT_8bit)` because,
measured on 100k x 512 clustered unit vectors on this 2-core machine, it builds ~4x faster (its int8 inner product
runs on the CPU's VNNI int8 kernels, while faiss decodes SQ8 codes to float for every distance), answers a single
query in about half the time at the same recall, stores a single file, and takes caller-chosen 64-bit keys with
incremental `add` natively (no IndexIDMap layer).

Quantisation: one global scale fixed at build (127 / a high quantile of |component|, so unit vectors use the
int8 range instead of usearch's default x*127, which leaves 512-d unit vectors only ~±6 levels); `add` reuses it
and clips. Stored vectors cost `ndim` bytes each plus the graph (~2*M neighbour slots on level 0).

Search: usearch returns the top `k*oversample` candidates by int8 inner product; with `rescore` the caller supplies
their float32 vectors (from the durable store or a memory map) and they are re-ranked by exact float inner
product. Ties break on the smaller id, so results are deterministic for the same index and query.

Persistence: `save` writes `index-<token>.usearch` (fsynced), then `manifest.json` (temp file + os.replace, written
last) naming that file with its size and SHA-256 plus the caller's stamp, then deletes older index files. A kill
at any moment leaves either the old or the new manifest with its complete index file; `load` checks the manifest,
the size and the checksum and raises `AnnIndexError` on anything missing or inconsistent.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from usearch.index import Index

from ..errors import OmnivecError

__all__ = ["AnnIndex", "AnnIndexError"]

FORMAT = "omnivec-ann"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Defaults measured on 1M x 512 clustered unit vectors (bench/search.py): M=16/ef_construction=64 builds ~1.6x
# faster but plateaus at recall@10 ~0.92 (a few clusters become hard to reach); M=32/96 gives 0.98 at ef=64.
DEFAULT_M = 32                  # usearch "connectivity"; level 0 keeps 2*M neighbours (~1.1 KB per 512-d vector)
DEFAULT_EF_CONSTRUCTION = 96    # usearch "expansion_add"
DEFAULT_EF_SEARCH = 64          # usearch "expansion_search"; always raised to the candidate count (k*oversample)
EXACT_BELOW = 4096              # indexes up to this size are searched exhaustively (int8), not via the graph
_CLIP_QUANTILE = 0.99999        # components above this quantile (over a sample of the build set) saturate
_INT64_MAX = np.iinfo(np.int64).max


class AnnIndexError(OmnivecError):
    """An ANN index folder is missing, incomplete or corrupt, or an index was used wrongly."""


def _default_threads(threads: int | None) -> int:
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return int(threads)


def _as_vectors(vectors: np.ndarray, ndim: int | None, what: str = "vectors") -> np.ndarray:
    v = np.asarray(vectors)
    if v.ndim == 1:
        v = v.reshape(0, ndim or 0) if v.size == 0 else v.reshape(1, -1)
    if v.ndim != 2:
        raise ValueError(f"{what} must be a (n, d) array, got shape {v.shape}")
    if ndim is not None and v.shape[1] != ndim:
        raise ValueError(f"{what} have {v.shape[1]} dimensions, the index has {ndim}")
    return np.ascontiguousarray(v, dtype=np.float32)


def _as_ids(ids: np.ndarray, n: int) -> np.ndarray:
    k = np.asarray(ids)
    if k.ndim != 1 or len(k) != n:
        raise ValueError(f"ids must be a 1-d array of {n} keys, got shape {k.shape}")
    if len(k) and not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {k.dtype}")
    k = k.astype(np.int64, copy=False)
    if len(k) and k.min() < 0:
        raise ValueError("ids must be >= 0 (-1 marks padding in search results)")
    if len(np.unique(k)) != len(k):
        raise ValueError("ids contain duplicates")
    return np.ascontiguousarray(k)


class _Gate:
    """Lets searches run concurrently while they agree on `ef`; `add` and `ef` changes run alone.

    usearch keeps expansion_search in the index, not per call, and growing capacity during `add` is not safe
    against concurrent searches, so both go through this gate.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._active = 0
        self._ef: int | None = None
        self._writer = False

    @contextmanager
    def search(self, index: Index, ef: int) -> Iterator[None]:
        with self._cv:
            if self._writer or (self._active and self._ef != ef):
                self._cv.wait_for(lambda: not self._writer and (self._active == 0 or self._ef == ef))
            if self._active == 0 and index.expansion_search != ef:
                index.expansion_search = ef
            self._ef = ef
            self._active += 1
        try:
            yield
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cv:
            self._cv.wait_for(lambda: not self._writer and self._active == 0)
            self._writer = True
        try:
            yield
        finally:
            with self._cv:
                self._writer = False
                self._cv.notify_all()


class AnnIndex:
    """HNSW over int8-quantised vectors, with exact float rescoring of the candidates."""

    def __init__(self, index: Index, *, scale: float, m: int, ef_construction: int, ef_search: int,
                 threads: int | None = None, read_only: bool = False):
        self._index = index
        self._scale = float(scale)
        self._m = int(m)
        self._ef_construction = int(ef_construction)
        self._ef_search = int(ef_search)
        self._threads = _default_threads(threads)
        self._read_only = read_only
        self._gate = _Gate()

    # ---- construction ------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, *, m: int = DEFAULT_M,
              ef_construction: int = DEFAULT_EF_CONSTRUCTION, ef_search: int = DEFAULT_EF_SEARCH,
              threads: int | None = None, ndim: int | None = None) -> "AnnIndex":
        """Build an index over `vectors` (n, d) float with int64 keys `ids` (>= 0, unique).

        `threads` (default: all cores of this process) is used for building, for `add` and for batch searches;
        a single query always runs on one thread. `ndim` is needed only when `vectors` is empty.
        """
        v = _as_vectors(vectors, ndim)
        keys = _as_ids(ids, len(v))
        d = v.shape[1] if v.shape[1] else ndim
        if not d:
            raise ValueError("cannot infer the dimension from an empty array: pass ndim=")
        if m < 2 or ef_construction < 1 or ef_search < 1:
            raise ValueError("m must be >= 2, ef_construction and ef_search >= 1")
        index = Index(ndim=int(d), metric="ip", dtype="i8", connectivity=int(m),
                      expansion_add=int(ef_construction), expansion_search=int(ef_search))
        self = cls(index, scale=cls._pick_scale(v), m=m, ef_construction=ef_construction, ef_search=ef_search,
                   threads=threads)
        if len(v):
            self.add(v, keys)
        return self

    @staticmethod
    def _pick_scale(v: np.ndarray) -> float:
        d = max(v.shape[1], 1)
        floor = min(1.0, 4.0 / np.sqrt(d))      # for tiny build sets: never overfit to a few vectors
        if len(v) == 0:
            return 127.0 / floor
        sample = v if len(v) <= 100_000 else v[np.sort(np.random.default_rng(0).choice(len(v), 100_000, replace=False))]
        clip = float(np.quantile(np.abs(sample), _CLIP_QUANTILE))
        clip = min(max(clip, floor), max(float(np.abs(sample).max()), 1e-12))
        return 127.0 / clip

    def _quantise(self, v: np.ndarray) -> np.ndarray:
        q = v * np.float32(self._scale)
        np.rint(q, out=q)
        np.clip(q, -127, 127, out=q)
        return q.astype(np.int8)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Append vectors with new keys (a key already in the index raises ValueError)."""
        if self._read_only:
            raise AnnIndexError("this index was loaded with view=True (memory-mapped, read-only): cannot add")
        v = _as_vectors(vectors, self.ndim)
        keys = _as_ids(ids, len(v))
        if not len(v):
            return
        with self._gate.exclusive():
            present = np.asarray(self._index.contains(keys.astype(np.uint64)), dtype=bool).reshape(-1)
            if present.any():
                raise ValueError(f"ids already in the index: {keys[present][:5].tolist()}")
            step = 65_536                          # bounds the float32 temporary made while quantising
            for s in range(0, len(v), step):
                self._index.add(keys[s:s + step].astype(np.uint64), self._quantise(v[s:s + step]),
                                threads=self._threads)

    # ---- search ------------------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, ef: int | None = None,
               rescore: Callable[[np.ndarray], np.ndarray] | None = None,
               oversample: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` by inner product: (scores (q, k) float32 descending, ids (q, k) int64), -inf / -1 padded.

        Without `rescore` the scores are int8 inner products scaled back to float. With it, the top
        `k*oversample` candidates' float vectors are fetched by one `rescore(ids)` call per search (ids: the
        distinct candidate keys of all queries, int64, ascending) and re-ranked by exact float inner product.
        `ef` (default: the index's ef_search) is raised to the number of candidates when that is larger.
        Ties rank the smaller id first. One query runs on one thread; a batch on `threads` threads.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        qv = _as_vectors(queries, self.ndim, "queries")
        nq, n = len(qv), len(self._index)
        if nq == 0 or n == 0:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        kc = min(n, k * oversample if rescore is not None else k)
        ef_eff = max(int(ef or self._ef_search), kc)
        # small indexes, or asking for (nearly) all of it: brute force over the int8 vectors (HNSW may not
        # reach every node, and a scan of a few thousand int8 rows costs less than a graph walk)
        exact = n <= EXACT_BELOW or 2 * kc >= n
        qi = self._quantise(qv)
        with self._gate.search(self._index, ef_eff):
            m = self._index.search(qi, kc, threads=1 if nq == 1 else self._threads, exact=exact)
        if nq == 1:
            return self._finish_one(qv[0], k, np.asarray(m.keys), np.asarray(m.distances), rescore)
        return self._finish_many(qv, k, kc, m, rescore)

    def _finish_one(self, q, k, keys, dist, rescore):
        """Single-query fast path (usearch's Matches holds only the found neighbours)."""
        cand = keys.astype(np.int64)
        if rescore is None:
            scores = ((1.0 - dist) * np.float32(1.0 / (self._scale * self._scale))).astype(np.float32)
        else:
            o = np.argsort(cand)
            cand = cand[o]
            vecs = self._fetch(rescore, cand)
            scores = vecs @ q
        order = np.lexsort((cand, -scores))[:k]
        out_s = np.full((1, k), -np.inf, np.float32)
        out_i = np.full((1, k), -1, np.int64)
        out_s[0, :len(order)] = scores[order]
        out_i[0, :len(order)] = cand[order]
        return out_s, out_i

    def _finish_many(self, qv, k, kc, m, rescore):
        nq = len(qv)
        keys = np.asarray(m.keys).reshape(nq, -1)[:, :kc]
        dist = np.asarray(m.distances, dtype=np.float32).reshape(nq, -1)[:, :kc]
        counts = np.minimum(np.asarray(m.counts).reshape(nq), kc)
        valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
        cand = np.where(valid, keys.astype(np.int64), -1)
        if rescore is None:
            with np.errstate(invalid="ignore", over="ignore"):
                scores = ((1.0 - dist) * np.float32(1.0 / (self._scale * self._scale))).astype(np.float32)
        else:
            uniq = np.unique(cand[valid])
            vecs = self._fetch(rescore, uniq)
            pos = np.searchsorted(uniq, np.where(valid, cand, uniq[0] if len(uniq) else 0))
            scores = np.empty(cand.shape, dtype=np.float32)
            for s in range(0, nq, 256):               # bounds the (queries, candidates, d) gather
                scores[s:s + 256] = np.matmul(vecs[pos[s:s + 256]], qv[s:s + 256, :, None])[..., 0]
        scores[~valid] = -np.inf
        # score descending, then id ascending; padding (-inf) last
        order = np.lexsort((np.where(valid, cand, _INT64_MAX), -scores), axis=1)[:, :k]
        out_s = np.full((nq, k), -np.inf, np.float32)
        out_i = np.full((nq, k), -1, np.int64)
        take = order.shape[1]
        out_s[:, :take] = np.take_along_axis(scores, order, 1)
        out_i[:, :take] = np.take_along_axis(cand, order, 1)
        out_i[:, :take][~np.isfinite(out_s[:, :take])] = -1
        return out_s, out_i

    def _fetch(self, rescore, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.ndim), np.float32)
        vecs = np.asarray(rescore(ids))
        if vecs.shape != (len(ids), self.ndim):
            raise ValueError(f"rescore returned shape {vecs.shape}, expected {(len(ids), self.ndim)}")
        return vecs if vecs.dtype == np.float32 and vecs.flags.c_contiguous else \
            np.ascontiguousarray(vecs, dtype=np.float32)

    # ---- persistence -------------------------------------------------------------------------------------------
    def save(self, folder: Path, stamp: dict) -> None:
        """Write the index and `stamp` (JSON-serialisable) into `folder`, atomically (see module doc)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            stamp_json = json.loads(json.dumps(stamp))
        except (TypeError, ValueError) as e:
            raise ValueError(f"stamp must be JSON-serialisable: {e}") from None
        name = f"index-{secrets.token_hex(8)}.usearch"
        tmp = folder / (name + ".tmp")
        try:
            with self._gate.exclusive():
                self._index.save(str(tmp))
                n = len(self._index)
            size, digest = _fsync_and_hash(tmp)
            os.replace(tmp, folder / name)
            fsync_dir(folder)
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "library": "usearch",
                "index_file": name, "index_bytes": size, "index_sha256": digest,
                "ndim": self.ndim, "count": n, "scale": self._scale, "metric": "ip", "dtype": "i8",
                "m": self._m, "ef_construction": self._ef_construction, "ef_search": self._ef_search,
                "stamp": stamp_json,
            }
            mtmp = folder / (MANIFEST + f".{secrets.token_hex(4)}.tmp")
            with open(mtmp, "w") as f:
                json.dump(manifest, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(mtmp, folder / MANIFEST)       # the commit point
            fsync_dir(folder)
        finally:
            tmp.unlink(missing_ok=True)
        for p in folder.iterdir():                    # older index files and leftovers of interrupted saves
            if p.name != name and p.name != MANIFEST and (p.name.startswith("index-") or p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path, *, threads: int | None = None, view: bool = False,
             verify: bool = True) -> tuple["AnnIndex", dict]:
        """Load an index saved by `save`; returns (index, stamp). Raises AnnIndexError if missing or corrupt.

        `view=True` memory-maps the index file read-only instead of reading it into RAM (no `add`).
        `verify=False` skips the SHA-256 over the file (the size and usearch's own header checks still run).
        """
        folder = Path(folder)
        mpath = folder / MANIFEST
        if not folder.is_dir():
            raise AnnIndexError(f"ANN index folder {folder} does not exist")
        if not mpath.is_file():
            raise AnnIndexError(f"ANN index folder {folder} has no {MANIFEST}: no complete index was saved there")
        try:
            manifest = json.loads(mpath.read_text())
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
            if manifest.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {manifest.get('format_version')} is not {FORMAT_VERSION}")
            name = manifest["index_file"]
            ndim, count, scale = int(manifest["ndim"]), int(manifest["count"]), float(manifest["scale"])
            m, efc, efs = int(manifest["m"]), int(manifest["ef_construction"]), int(manifest["ef_search"])
            expected_bytes, expected_sha = int(manifest["index_bytes"]), str(manifest["index_sha256"])
            stamp = manifest["stamp"]
            if "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"bad index file name {name!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AnnIndexError(f"ANN index manifest {mpath} is corrupt: {e}") from None
        ipath = folder / name
        if not ipath.is_file():
            raise AnnIndexError(f"ANN index file {ipath} named by {mpath} is missing")
        size = ipath.stat().st_size
        if size != expected_bytes:
            raise AnnIndexError(f"ANN index file {ipath} is {size} bytes, the manifest says {expected_bytes}: "
                                "truncated or overwritten")
        if verify and _hash(ipath) != expected_sha:
            raise AnnIndexError(f"ANN index file {ipath} does not match its SHA-256 in {mpath}: corrupt")
        index = Index(ndim=ndim, metric="ip", dtype="i8", connectivity=m, expansion_add=efc, expansion_search=efs)
        try:
            if view:
                index.view(str(ipath))
            else:
                index.load(str(ipath))
        except Exception as e:  # usearch raises RuntimeError/ValueError on bad headers
            raise AnnIndexError(f"ANN index file {ipath} could not be read: {e}") from None
        if len(index) != count or index.ndim != ndim:
            raise AnnIndexError(f"ANN index file {ipath} holds {len(index)} x {index.ndim}, the manifest says "
                                f"{count} x {ndim}")
        index.expansion_search = efs
        return cls(index, scale=scale, m=m, ef_construction=efc, ef_search=efs, threads=threads,
                   read_only=view), stamp

    # ---- introspection -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: int) -> bool:
        return key >= 0 and bool(self._index.contains(int(key)))

    @property
    def ndim(self) -> int:
        return int(self._index.ndim)

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, value: int | None) -> None:
        self._threads = _default_threads(value)

    @property
    def params(self) -> dict:
        return {"m": self._m, "ef_construction": self._ef_construction, "ef_search": self._ef_search,
                "scale": self._scale, "ndim": self.ndim, "library": "usearch", "dtype": "i8", "metric": "ip"}

    def memory_bytes(self) -> int:
        """Bytes the index holds in RAM (usearch's own accounting: int8 vectors, graph, key table)."""
        return int(self._index.memory_usage)

    def __repr__(self) -> str:
        return f"AnnIndex(n={len(self)}, ndim={self.ndim}, m={self._m}, ef_search={self._ef_search})"


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _fsync_and_hash(path: Path) -> tuple[int, str]:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return path.stat().st_size, _hash(path)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
