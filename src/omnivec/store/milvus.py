"""Milvus as a collection's store, for collections that outgrow one machine: `milvus://host:port/name`.

One omnivec collection is three Milvus collections, `NAME` (records), `NAME__files` and `NAME__errors`, plus rows
in a shared `omnivec_registry` collection: the pinning info (space, version, dimension; written last, so a
collection exists once its info does), the user-metadata column types and a write stamp (`version()`).

Records keep the fields every row has as schema fields (key, id, content_hash, kind, segment, modality, space,
version, added, vector); everything else (paths, sizes, times, user metadata) lives in Milvus' dynamic JSON field,
a missing key standing for null. Filters are translated by filters.py; searches run on Milvus' own index over
inner product (the vectors are unit length, so it is the cosine).

    milvus://[user:password@]host[:port]/[db/]name[?index=HNSW&M=16&efConstruction=200&ef=64]
    index=FLAT | IVF_FLAT (nlist, nprobe) | IVF_SQ8 (nlist, nprobe) | IVF_PQ (nlist, nprobe, m) | HNSW (M,
    efConstruction, ef). Build parameters take effect when the collection is created; search parameters (ef,
    nprobe) on every open.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, OmnivecError
from .base import SearchingStore
from .filters import to_milvus
from .schema import ERRORS_SCHEMA, FILES_SCHEMA, record_schema

log = logging.getLogger(__name__)

SCHEME = "milvus://"
DEFAULT_PORT = 19530
REGISTRY = "omnivec_registry"
SUFFIXES = ("__files", "__errors")
# Record fields every row has: schema fields in Milvus (typed, fast to filter). The rest are dynamic (nullable).
FIXED = {"key": "INT64", "id": "VARCHAR", "content_hash": "VARCHAR", "kind": "VARCHAR", "segment": "INT32",
         "modality": "VARCHAR", "space": "VARCHAR", "version": "VARCHAR", "added": "DOUBLE"}
MAX_TOPK = 16384          # Milvus' limit on search results and on one query's window
SCHEMA_TTL_S = 2.0        # how long the list of user-metadata columns is reused before it is read again
FLUSH_ROWS = 50_000       # rows written by one run beyond which refresh_index seals them for indexing
PLACEHOLDER = "placeholder"  # Milvus (2.3) requires a vector field in every collection, even the files table
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}\Z")


def is_milvus_uri(location: Any) -> bool:
    return isinstance(location, str) and location.startswith(SCHEME)


# ---- where and how ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexSpec:
    """The vector index of the records: its type, build parameters and search parameters."""

    type: str = "HNSW"
    M: int = 16                 # HNSW: graph degree
    ef_construction: int = 200  # HNSW: build-time candidate list
    ef: int = 64                # HNSW: search-time candidate list (raised to k when k is larger)
    nlist: int = 1024           # IVF: clusters
    nprobe: int = 16            # IVF: clusters searched
    m: int = 0                  # IVF_PQ: sub-vectors per vector (0: dim / 8)

    TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW")

    def build_params(self, dim: int) -> dict:
        if self.type == "HNSW":
            return {"M": self.M, "efConstruction": self.ef_construction}
        if self.type in ("IVF_FLAT", "IVF_SQ8"):
            return {"nlist": self.nlist}
        if self.type == "IVF_PQ":
            m = self.m or max(1, dim // 8)
            if dim % m:
                raise ConfigError(f"IVF_PQ needs m dividing the dimension {dim}; got m={m}")
            return {"nlist": self.nlist, "m": m, "nbits": 8}
        return {}

    def search_params(self, limit: int) -> dict:
        if self.type == "HNSW":
            return {"metric_type": "IP", "params": {"ef": max(self.ef, limit)}}
        if self.type.startswith("IVF"):
            return {"metric_type": "IP", "params": {"nprobe": min(self.nprobe, self.nlist)}}
        return {"metric_type": "IP", "params": {}}


_INDEX_KEYS = {"index": "type", "M": "M", "efConstruction": "ef_construction", "ef": "ef", "nlist": "nlist",
               "nprobe": "nprobe", "m": "m"}


@dataclass(frozen=True)
class MilvusLocation:
    host: str
    port: int
    name: str
    db: str = ""
    user: str = ""
    password: str = ""
    secure: bool = False
    index: IndexSpec = IndexSpec()
    index_given: frozenset = frozenset()   # the index settings the URI named (the rest are defaults)

    @classmethod
    def parse(cls, uri: str) -> "MilvusLocation":
        if not is_milvus_uri(uri):
            raise ConfigError(f"{uri!r} is not a Milvus location (milvus://host:port/name)")
        parts = urlsplit(uri)
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ConfigError(f"{uri}: the port is not a number") from None
        path = [p for p in parts.path.split("/") if p]
        if not parts.hostname or len(path) not in (1, 2):
            raise ConfigError(f"{uri}: expected milvus://host:port/name or milvus://host:port/db/name")
        db, name = (path if len(path) == 2 else ["", path[0]])
        if not NAME.match(name) or name == REGISTRY or name.endswith(SUFFIXES):
            raise ConfigError(f"{uri}: {name!r} cannot name a Milvus collection (letters, digits and _, not "
                              f"starting with a digit, not ending in {' or '.join(SUFFIXES)}, not {REGISTRY})")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        settings: dict[str, Any] = {}
        for key, value in query.items():
            if key == "secure":
                continue
            if key not in _INDEX_KEYS:
                raise ConfigError(f"{uri}: unknown option {key!r} (options: secure, {', '.join(_INDEX_KEYS)})")
            if key == "index":
                if value.upper() not in IndexSpec.TYPES:
                    raise ConfigError(f"{uri}: index {value!r} is not one of {', '.join(IndexSpec.TYPES)}")
                settings["type"] = value.upper()
            else:
                try:
                    settings[_INDEX_KEYS[key]] = int(value)
                except ValueError:
                    raise ConfigError(f"{uri}: {key}={value!r} is not a whole number") from None
        return cls(host=parts.hostname, port=port, name=name, db=db, user=unquote(parts.username or ""),
                   password=unquote(parts.password or ""), secure=query.get("secure", "").lower() in ("1", "true"),
                   index=replace(IndexSpec(), **settings), index_given=frozenset(settings))

    @property
    def uri(self) -> str:
        """The location without credentials or options, for messages and listings."""
        return f"{SCHEME}{self.host}:{self.port}/{self.db + '/' if self.db else ''}{self.name}"


# ---- the store --------------------------------------------------------------------------------------------------
class MilvusStore(SearchingStore):
    """The store protocol over a Milvus server: its engine ranks and filters the records itself."""

    def __init__(self, location: MilvusLocation, timeout: float = 30.0):
        from pymilvus import MilvusClient

        self.location, self.timeout = location, timeout
        self.uri = location.uri
        self.items_name = location.name
        self.files_name, self.errors_name = (location.name + s for s in SUFFIXES)
        scheme = "https" if location.secure else "http"
        try:
            self.client = MilvusClient(uri=f"{scheme}://{location.host}:{location.port}", user=location.user,
                                       password=location.password, db_name=location.db, timeout=timeout)
        except Exception as e:  # pymilvus raises MilvusException, grpc errors or its own connection errors
            raise ConfigError(f"cannot reach Milvus at {location.host}:{location.port} for {self.uri}: "
                              f"{_reason(e)}") from None
        self.dim: int | None = None
        self.index = location.index
        self._unflushed = 0   # record rows this store wrote since its last flush
        self._schema_cache: tuple[float, pa.Schema] | None = None

    # ---- creation and pinning info ------------------------------------------------------------------------------
    def read_info(self) -> dict | None:
        """The collection's pinning info, or None if no collection of this name exists."""
        if not self._call("look up", self.client.has_collection, REGISTRY):
            return None
        self._load(REGISTRY)
        doc = self._registry_get("info")
        if doc is None:
            return None
        info = json.loads(doc)
        self._load(self.items_name, self.files_name, self.errors_name)   # e.g. after a server restart
        self._opened(int(info["space"]["dim"]))
        return info

    def create(self, dim: int, info: dict) -> None:
        """Make the Milvus collections (or finish a creation that was interrupted), then write the info."""
        from pymilvus import DataType

        varchar = {"max_length": 1024}
        self._ensure(REGISTRY, [("rid", DataType.VARCHAR, {"is_primary": True, **varchar}),
                                ("doc", DataType.VARCHAR, {"max_length": 65535})], PLACEHOLDER, 2)
        self._ensure(self.items_name, [(n, getattr(DataType, t), varchar if t == "VARCHAR" else
                                        {"is_primary": True} if n == "key" else {}) for n, t in FIXED.items()],
                     "vector", dim, index=self.index)
        self._ensure(self.files_name, [("path", DataType.VARCHAR, {"is_primary": True, "max_length": 65535})],
                     PLACEHOLDER, 2)
        self._ensure(self.errors_name, [("rid", DataType.INT64, {"is_primary": True, "auto_id": True}),
                                        ("path", DataType.VARCHAR, {"max_length": 65535})], PLACEHOLDER, 2)
        self._load(REGISTRY, self.items_name, self.files_name, self.errors_name)
        self._registry_put("info", json.dumps(info))   # the collection exists from here on
        self._opened(dim)

    def _ensure(self, name: str, fields: list, vector: str, dim: int, index: IndexSpec | None = None) -> None:
        from pymilvus import DataType

        if self._call("look up", self.client.has_collection, name):
            return
        schema = self.client.create_schema(auto_id=any(f[2].get("auto_id") for f in fields), enable_dynamic_field=True)
        for field, dtype, params in fields:
            schema.add_field(field, dtype, **{k: v for k, v in params.items() if k != "auto_id"})
        schema.add_field(vector, DataType.FLOAT_VECTOR, dim=dim)
        # Strong consistency: a read sees every write acknowledged before it, as with the embedded store.
        self._call("create", self.client.create_collection, name, schema=schema, consistency_level="Strong")
        params = self.client.prepare_index_params()
        if index is None:
            params.add_index(vector, index_type="FLAT", metric_type="L2")
        else:
            params.add_index(vector, index_type=index.type, metric_type="IP", params=index.build_params(dim))
        self._call("index", self.client.create_index, name, params)

    def _load(self, *names: str) -> None:
        """Milvus serves a collection only once it is loaded. Loads are started together and then awaited (one
        after the other they cost a few seconds each)."""
        from pymilvus.client.types import LoadState

        pending = [n for n in names if self._call("look up", self.client.get_load_state, n)["state"]
                   != LoadState.Loaded]
        for n in pending:
            self._call("load", self.client.load_collection, n, _async=True)
        deadline = time.monotonic() + 4 * self.timeout
        while pending:
            pending = [n for n in pending if self._call("look up", self.client.get_load_state, n)["state"]
                       != LoadState.Loaded]
            if pending and time.monotonic() > deadline:
                raise OmnivecError(f"{self.uri}: Milvus did not load {', '.join(pending)} within "
                                   f"{4 * self.timeout:.0f} s")
            time.sleep(0.05 if pending else 0)

    def _opened(self, dim: int) -> None:
        self.dim = dim
        if self.location.index_given & {"type", "M", "ef_construction", "nlist", "m"}:
            return  # the URI says what the index is
        try:  # otherwise search with the parameters that fit the index the collection was built with
            desc = self.client.describe_index(self.items_name, "vector")
            built = str(desc.get("index_type", self.index.type)).upper()
            if built in IndexSpec.TYPES:
                self.index = replace(self.index, type=built, nlist=int(desc.get("nlist", self.index.nlist)))
        except Exception:  # an index without a description searches with the URI's (default) parameters
            pass

    def drop(self) -> None:
        """Delete the collection: its Milvus collections and registry rows."""
        for name in (self.items_name, self.files_name, self.errors_name):
            if self._call("look up", self.client.has_collection, name):
                self._call("drop", self.client.drop_collection, name)
        if self._call("look up", self.client.has_collection, REGISTRY):
            self._call("drop", self.client.delete, REGISTRY, filter=self._registry_prefix(""))

    def close(self) -> None:
        self.client.close()

    # ---- records ------------------------------------------------------------------------------------------------
    def add_records(self, table: pa.Table) -> None:
        # An upsert: the same content has the same keys, so a batch sent twice (a retry after a lost reply, a
        # re-run after a crash) leaves one copy.
        self.upsert_records(table)

    def upsert_records(self, table: pa.Table) -> None:
        if table.num_rows:
            names = set(self.columns())
            self._write(self.items_name, [self._record_row(r, names) for r in table.to_pylist()])
            self._unflushed += table.num_rows
            self._touch()

    def update_records(self, table: pa.Table) -> None:
        """Milvus has no partial update: the stored rows are read, changed and written back whole. Segment rows
        take their item's new values too, as they do at ingestion, so a filter selects an item's rows alike."""
        if not table.num_rows:
            return
        types = {f.name: f.type for f in self._schema(fresh=any(n not in self.columns() for n in table.column_names))}
        for name in table.column_names:
            if name not in types:
                raise ConfigError(f"field {name!r} is not a column; add it with add_columns first")
            _check_fits(table.column(name), pa.field(name, types[name]))
        names = set(self.columns())
        rows_in = table.to_pylist()
        for i in range(0, len(rows_in), 1000):
            updates = {r["key"]: {k: v for k, v in r.items() if k != "key"} for r in rows_in[i:i + 1000]}
            rows = self._query_rows(self.items_name, f"key in {list(updates)}", None)
            by_item = {r["id"]: updates[r["key"]] for r in rows}
            if by_item:
                segments = f'(kind == "segment") and (id in {json.dumps(list(by_item))})'
                rows += self._query_rows(self.items_name, segments, None)
            out = []
            for r in rows:
                new = updates.get(r["key"]) if r["kind"] != "segment" else by_item.get(r["id"])
                if new is not None:
                    out.append(self._record_row({**r, **new}, names))
            self._write(self.items_name, out)
        self._touch()

    def delete_records(self, where: str) -> None:
        self._call("delete", self.client.delete, self.items_name, filter=self._expr(where))
        self._touch()

    def scan(self, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
        schema = self._schema()
        if columns and any(c not in schema.names for c in columns):
            schema = self._schema(fresh=True)   # perhaps a column another process added a moment ago
        if columns:
            missing = [c for c in columns if c not in schema.names]
            if missing:
                raise ConfigError(f"{self.uri} has no column {missing[0]!r}")
            schema = pa.schema([schema.field(c) for c in columns])
        rows = self._query_rows(self.items_name, self._expr(where) if where else "", list(schema.names))
        return pa.Table.from_pylist(rows, schema=schema)

    def scan_batches(self, columns: list[str], batch: int = 65536) -> Iterator[pa.RecordBatch]:
        schema = pa.schema([self._schema().field(c) for c in columns])
        for page in self._pages(self.items_name, "", list(columns), min(batch, MAX_TOPK - 1)):
            if page:
                yield pa.RecordBatch.from_pylist(page, schema=schema)

    def count(self, where: str | None = None) -> int:
        return self._count(self.items_name, self._expr(where) if where else "")

    def _count(self, name: str, expr: str = "") -> int:
        res = self._call("count", self.client.query, name, filter=expr, output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def state(self) -> tuple:
        # Milvus keeps no table versions: the records' version stamp, and the sizes of files and errors.
        return self.version(), self._count(self.files_name), self._count(self.errors_name)

    def refresh(self) -> None:
        """Every Milvus read already sees other writers' commits (strong consistency)."""

    def version(self) -> int:
        doc = self._registry_get("version")
        return int(doc) if doc else 0

    def columns(self) -> list[str]:
        return self._schema().names

    def add_columns(self, fields: list[pa.Field]) -> None:
        known = set(self.columns())
        for f in fields:
            if f.name not in known:  # one registry row per column: concurrent writers cannot lose each other's
                schema = pa.schema([f]).serialize().to_pybytes()
                self._registry_put(f"column/{time.time_ns():020d}/{f.name}", base64.b64encode(schema).decode())
        self._schema_cache = None

    # ---- files and errors ---------------------------------------------------------------------------------------
    def all_files(self) -> pa.Table:
        rows = self._query_rows(self.files_name, "", FILES_SCHEMA.names)
        return pa.Table.from_pylist(rows, schema=FILES_SCHEMA)

    def files_for(self, paths: Sequence[str]) -> list[dict]:
        out: list[dict] = []
        for i in range(0, len(paths), 1000):
            expr = f"path in {json.dumps(list(paths[i:i + 1000]), ensure_ascii=False)}"
            out += self._query_rows(self.files_name, expr, FILES_SCHEMA.names)
        return [{k: r.get(k) for k in FILES_SCHEMA.names} for r in out]

    def file_status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._query_rows(self.files_name, "", ["status"]):
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return counts

    def upsert_files(self, rows: list[dict]) -> None:
        self._write(self.files_name, [_sparse({**r, PLACEHOLDER: [0.0, 0.0]}) for r in rows])

    def delete_files(self, paths: list[str]) -> None:
        for i in range(0, len(paths), 1000):
            self._call("delete", self.client.delete, self.files_name, ids=list(paths[i:i + 1000]))

    def add_errors(self, rows: list[dict]) -> None:
        self._write(self.errors_name, [_sparse({**r, PLACEHOLDER: [0.0, 0.0]}) for r in rows], upsert=False)

    def clear_errors(self, paths: list[str]) -> None:
        for i in range(0, len(paths), 1000):
            self._call("delete", self.client.delete, self.errors_name,
                       filter=f"path in {json.dumps(list(paths[i:i + 1000]), ensure_ascii=False)}")

    def all_errors(self) -> pa.Table:
        rows = self._query_rows(self.errors_name, "", ERRORS_SCHEMA.names)
        return pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA)

    def count_errors(self) -> int:
        return self._count(self.errors_name)

    def compact(self) -> None:
        try:
            self.client.compact(self.items_name)  # merges small segments in the background
        except Exception as e:  # housekeeping is optional; it must not fail an indexing run
            log.warning("compacting %s failed (the data is intact): %s", self.uri, _reason(e))

    # ---- search -------------------------------------------------------------------------------------------------
    def search(self, q: np.ndarray, *, k: int, where: str | None = None, modalities: Sequence[str] | None = None,
               exclude: Sequence[str] = (), min_score: float | None = None) -> list[tuple[str, float]]:
        """Best row per item. Milvus ranks rows, and an item may own many (segments), so the candidate list is
        widened until k distinct items pass or the rows run out."""
        parts = [self._expr(where)] if where else []
        if modalities:
            parts.append(f"modality in {json.dumps(list(modalities))}")
        if exclude:
            parts.append(f"id not in {json.dumps(sorted(exclude))}")
        expr = " and ".join(f"({p})" for p in parts)
        vector = np.asarray(q, np.float32).reshape(-1).tolist()
        want = min(max(4 * k, 16), MAX_TOPK)
        while True:
            res = self._call("search", self.client.search, self.items_name, data=[vector], limit=want, filter=expr,
                             output_fields=["id"], search_params=self.index.search_params(want), anns_field="vector")
            rows = res[0] if res else []
            found: list[tuple[str, float]] = []
            seen: set[str] = set()
            low = False
            for hit in rows:
                score = float(hit["distance"])
                if min_score is not None and score < min_score:
                    low = True
                    break
                iid = hit["entity"]["id"]
                if iid not in seen:
                    seen.add(iid)
                    found.append((iid, score))
                    if len(found) == k:
                        return found
            if low or len(rows) < want or want >= MAX_TOPK:
                return found
            want = min(want * 4, MAX_TOPK)

    def refresh_index(self) -> bool:
        """After a large run, seal the rows written, so that Milvus indexes them now. Milvus seals segments as
        they fill and searches rows not sealed yet exhaustively, so small runs need no flush (it takes seconds)."""
        if self._unflushed < FLUSH_ROWS:
            return False
        self._call("flush", self.client.flush, self.items_name)
        self._unflushed = 0
        return True

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _expr(self, where: str) -> str:
        return to_milvus(where, fixed_fields=FIXED, primary_key="key")

    def _schema(self, fresh: bool = False) -> pa.Schema:
        """The record layout plus the user columns in the order they were added (registry rows sort by time).
        Read again after SCHEMA_TTL_S: a column another process adds shows here within that time."""
        now = time.monotonic()
        if fresh or self._schema_cache is None or now - self._schema_cache[0] > SCHEMA_TTL_S:
            self._schema_cache = (now, self._read_schema())
        return self._schema_cache[1]

    def _read_schema(self) -> pa.Schema:
        base = record_schema(self._require_dim())
        rows = self._query_rows(REGISTRY, self._registry_prefix("column/"), ["rid", "doc"])
        fields = list(base)
        seen = set(base.names)
        for r in sorted(rows, key=lambda r: r["rid"]):
            f = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(r["doc"]))).field(0)
            if f.name not in seen:
                seen.add(f.name)
                fields.append(f)
        return pa.schema(fields)

    def _require_dim(self) -> int:
        if self.dim is None:
            raise OmnivecError(f"{self.uri}: the collection is not open (no pinning info read yet)")
        return self.dim

    def _record_row(self, row: dict, names: set[str]) -> dict:
        """A Milvus row: the fixed fields (which must be set), the vector, and the non-null rest (dynamic)."""
        out = {}
        for k, v in row.items():
            if k not in names:
                continue  # columns the collection does not have are dropped, as the embedded store does
            if k in FIXED and v is None:
                raise OmnivecError(f"{self.uri}: record {row.get('key')} has no {k}")
            if k == "vector":
                v = np.asarray(v, np.float32).tolist()
            if v is not None:
                out[k] = v
        return out

    def _write(self, name: str, rows: list[dict], upsert: bool = True) -> None:
        """Batches small enough for one request each (Milvus caps a request at 64 MB)."""
        if not rows:
            return
        per_row = 4 * (self.dim or 2) + 2048
        step = max(1, min(10000, (16 << 20) // per_row))
        op = self.client.upsert if upsert else self.client.insert
        for i in range(0, len(rows), step):
            self._call("write", op, name, rows[i:i + step])

    def _query_rows(self, name: str, expr: str, fields: list[str] | None) -> list[dict]:
        """Every row the expression selects, paged through Milvus' query iterator (one query is capped)."""
        wants_vector = fields is None or "vector" in fields
        batch = max(256, min(MAX_TOPK - 1, (8 << 20) // (4 * (self.dim or 2) + 512))) if wants_vector else 8192
        out_fields = ["*"] if fields is None else [f for f in fields]
        rows: list[dict] = []
        for page in self._pages(name, expr, out_fields, batch):
            rows.extend(page)
        return rows

    def _pages(self, name: str, expr: str, fields: list[str], batch: int) -> Iterator[list[dict]]:
        first = [dict(r) for r in self._call("query", self.client.query, name, filter=expr, output_fields=fields,
                                             limit=batch)]
        yield first
        if len(first) < batch:
            return
        # Larger results: the iterator pages by primary key. It starts from the beginning again; the rows of the
        # first page are skipped (Milvus returns the primary key with every row).
        seen = {_pk(r) for r in first}
        it = self._call("query", self.client.query_iterator, name, batch_size=batch, filter=expr,
                        output_fields=fields)
        try:
            while True:
                page = self._call("query", it.next)
                if not page:
                    return
                yield [r for r in map(dict, page) if _pk(r) not in seen]
        finally:
            it.close()

    def _touch(self) -> None:
        self._registry_put("version", str(time.time_ns()))

    def _rid(self, what: str) -> str:
        return f"{self.location.db}/{self.location.name}/{what}"

    def _registry_prefix(self, what: str) -> str:
        """Registry rows whose id starts with this collection's prefix plus `what` (which ends in "/"): a range
        of strings, so that no character of a name is read as a pattern (as `like` would read "%" and "_")."""
        low = self._rid(what)
        high = low[:-1] + chr(ord("/") + 1)
        return f"(rid >= {json.dumps(low)}) and (rid < {json.dumps(high)})"

    def _registry_get(self, what: str) -> str | None:
        rows = self._call("read", self.client.query, REGISTRY, filter=f"rid == {json.dumps(self._rid(what))}",
                          output_fields=["doc"])
        return rows[0]["doc"] if rows else None

    def _registry_put(self, what: str, doc: str) -> None:
        if len(doc.encode()) > 65535:
            raise OmnivecError(f"{self.uri}: registry entry {what!r} is too large ({len(doc)} characters)")
        self._call("write", self.client.upsert, REGISTRY, [{"rid": self._rid(what), "doc": doc,
                                                            PLACEHOLDER: [0.0, 0.0]}])

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OmnivecError:
            raise
        except Exception as e:  # MilvusException and grpc errors: name the collection and the operation
            raise OmnivecError(f"{self.uri}: Milvus {what} failed: {_reason(e)}") from e


def _pk(row: dict):
    return row.get("key", row.get("path", row.get("rid")))


def _sparse(row: dict) -> dict:
    """Milvus (2.3) has no nulls: a null is a key left out of the dynamic field."""
    return {k: v for k, v in row.items() if v is not None}


def _check_fits(column: pa.ChunkedArray, field: pa.Field) -> None:
    try:
        column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise ConfigError(f"field {field.name!r} is a column of {field.type}; values of type {column.type} do not "
                          f"fit it ({e}); use another field name") from None


def _reason(e: Exception) -> str:
    msg = getattr(e, "message", None) or str(e)
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__


# ---- opening a collection ---------------------------------------------------------------------------------------
