"""The search index of a large collection: derived from the records, stamped with the table version it reflects.

It holds the ANN index (ann.py: int8 HNSW), the row arrays search needs (key, item id, modality, kind, segment
times) and a float32 memory map of the vectors for exact rescoring, so RAM holds about 1 KB per row, not the
vectors. Each build goes to a fresh folder and becomes current by an atomic pointer swap; a killed build leaves
the previous index current. A collection never serves it for another table version without reconciling first
(see Collection._index_for)."""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from .ann import AnnIndex, AnnIndexError
from .base import Store

POINTER = "current"
KINDS = ("item", "segment")
ROW_COLUMNS = ["key", "id", "kind", "modality", "start", "end"]


class SearchIndex:
    def __init__(self, folder: Path, ann: AnnIndex, stamp: dict, rows: dict, vectors: np.ndarray):
        self.folder, self.ann, self.stamp, self.vectors = folder, ann, stamp, vectors
        self.keys: np.ndarray = rows["keys"]            # int64, in memmap order
        self.ids: np.ndarray = rows["ids"]              # S16 item ids
        self.kinds: np.ndarray = rows["kinds"]          # int8 index into KINDS
        self.modalities: np.ndarray = rows["modalities"]
        self.start: np.ndarray = rows["start"]
        self.end: np.ndarray = rows["end"]
        self.order = np.argsort(self.keys, kind="stable")
        self.sorted_keys = self.keys[self.order]
        self.n_base = len(self.keys)                    # rows in the ANN graph and the memmap
        self.extra_vectors = np.zeros((0, vectors.shape[1]), np.float32)   # rows added since, scored exactly

    def extend(self, rows) -> None:
        """Append rows committed after the build (a collection._Rows); they are searched exactly."""
        for name in ("keys", "ids", "kinds", "modalities", "start", "end"):
            setattr(self, name, np.concatenate([getattr(self, name), getattr(rows, name)]))
        self.extra_vectors = np.concatenate([self.extra_vectors, rows.vectors])

    def vector_rows(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions)
        base = positions < self.n_base
        out = np.empty((len(positions), self.vectors.shape[1]), np.float32)
        if base.any():
            out[base] = self.vectors[np.sort(positions[base])][np.argsort(np.argsort(positions[base]))]
        if (~base).any():
            out[~base] = self.extra_vectors[positions[~base] - self.n_base]
        return out

    @property
    def version(self) -> int:
        return int(self.stamp["table_version"])

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Memmap rows of the given keys (all must be in the index)."""
        return self.order[np.searchsorted(self.sorted_keys, keys)]

    def search(self, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n rows: (scores, memmap positions)."""
        scores, keys = self.ann.search(q[None, :], n, rescore=lambda ks: self.vector_rows(self.positions(ks)))
        ok = keys[0] >= 0
        return scores[0][ok], self.positions(keys[0][ok])

    # ---- build and load -----------------------------------------------------------------------------------------
    @classmethod
    def build(cls, root: Path, store: Store, dim: int, batch: int = 65536) -> "SearchIndex":
        root.mkdir(parents=True, exist_ok=True)
        version = store.version()
        name = f"v{version}-{secrets.token_hex(4)}"
        tmp = root / f".{name}.tmp"
        tmp.mkdir()
        n = store.count()
        vectors = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        cols: dict[str, list] = {c: [] for c in ROW_COLUMNS}
        at = 0
        for rb in store.scan_batches(ROW_COLUMNS + ["vector"], batch):
            m = rb.num_rows
            vectors[at:at + m] = np.asarray(rb.column("vector").flatten().to_numpy(), np.float32).reshape(m, dim)
            for c in ROW_COLUMNS:
                cols[c].extend(rb.column(c).to_pylist())
            at += m
        vectors.flush()
        rows = {"keys": np.asarray(cols["key"], np.int64), "ids": np.asarray(cols["id"], "S16"),
                "kinds": np.asarray([KINDS.index(k) for k in cols["kind"]], np.int8),
                "modalities": np.asarray(cols["modality"], "S8"),
                "start": np.asarray([np.nan if s is None else s for s in cols["start"]], np.float32),
                "end": np.asarray([np.nan if s is None else s for s in cols["end"]], np.float32)}
        np.savez(tmp / "rows.npz", **rows)
        ann = AnnIndex.build(vectors, rows["keys"])
        stamp = {"table_version": version, "rows": n}
        ann.save(tmp / "ann", stamp)
        (tmp / "stamp.json").write_text(json.dumps(stamp))
        os.replace(tmp, root / name)
        pointer = root / (POINTER + ".tmp")
        pointer.write_text(name)
        os.replace(pointer, root / POINTER)   # the new index is current from here on
        for p in root.iterdir():              # older builds and leftovers of killed builds
            if p.name not in (name, POINTER):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return cls.load(root)

    @classmethod
    def load(cls, root: Path) -> "SearchIndex | None":
        try:
            folder = root / (root / POINTER).read_text().strip()
            ann, stamp = AnnIndex.load(folder / "ann", verify=False)
            with np.load(folder / "rows.npz") as z:
                rows = {k: z[k] for k in z.files}
            vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        except (OSError, ValueError, KeyError, AnnIndexError):
            return None  # no usable index: the caller builds one
        return cls(folder, ann, stamp, rows, vectors)
