"""A Collection: a folder holding records of one space (pinned by name, version and dimension) and their search.

    col = omnivec.open_collection("home")
    hits = col.search("dog on a beach", k=20, modalities=["image", "video"], where="year >= 2020")
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, ModalityError, OmnivecError
from ..media.source import MODALITIES
from ..spaces import Space, load_space
from ..spaces.libraries import library_versions, warn_if_changed
from .ann import fsync_dir
from .base import SearchingStore
from .filters import filter_fields, sql_in
from .lance import LanceStore
from .schema import BUILTIN_COLUMNS, item_id, row_key

USER_SETTABLE = ("year", "taken_at", "lat", "lon")  # built-in columns that user metadata may set


def settable(name: str) -> bool:
    """Whether user metadata may set this field (a built-in column other than year, time and place may not)."""
    return name not in ("meta", "vector") and (name not in BUILTIN_COLUMNS or name in USER_SETTABLE)


FORMAT = 1
INFO_FILE = "collection.json"
REEMBED_READY = "REEMBED_READY"   # in a finished `.NAME.reembed` folder: it may replace the collection


class SpaceMismatchError(ConfigError):
    """Vectors of another space (or version) were offered to a collection pinned to one."""


def omnivec_home() -> Path:
    return Path(os.environ.get("OMNIVEC_HOME", "~/.omnivec")).expanduser()


def collection_path(name_or_path: str | os.PathLike) -> Path:
    """A bare name lives under $OMNIVEC_HOME/collections; anything with a path separator is a folder."""
    s = str(name_or_path)
    if os.sep in s or s.startswith(".") or Path(s).is_absolute():
        return Path(s).expanduser()
    return omnivec_home() / "collections" / s


@dataclass
class Hit:
    id: str
    score: float
    modality: str
    paths: list[str]
    start: float | None = None      # the best-matching window or segment of audio and video
    end: float | None = None
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "score": round(self.score, 6), "modality": self.modality, "paths": self.paths,
                "start": self.start, "end": self.end, "metadata": self.metadata}


def reembed_folder(folder: Path) -> Path:
    """Where `reembed` builds a collection's replacement, beside it."""
    return folder.with_name(f".{folder.name}.reembed")


def finish_reembed_swap(folder: Path) -> bool:
    """A reembed killed between its two renames left the old folder retired and the finished replacement beside
    it, marked READY: complete the swap, so the collection opens (in its new space)."""
    tmp = reembed_folder(folder)
    if folder.exists() or not (tmp / REEMBED_READY).is_file():
        return False
    retired = json.loads((tmp / REEMBED_READY).read_text()).get("retired")
    tmp.rename(folder)
    (folder / REEMBED_READY).unlink(missing_ok=True)
    if retired:
        shutil.rmtree(folder.with_name(retired), ignore_errors=True)
    return True


def swap_in_reembed(folder: Path) -> None:
    """Replace a collection's folder by its finished `.NAME.reembed` folder: mark it READY, retire the old folder,
    then finish as a later open would after a kill at that point (finish_reembed_swap)."""
    tmp = reembed_folder(folder)
    retired = folder.with_name(f".{folder.name}.old-{time.time_ns()}")
    (tmp / REEMBED_READY).write_text(json.dumps({"retired": retired.name}))
    fsync_dir(tmp)
    folder.rename(retired)
    finish_reembed_swap(folder)


def write_info(folder: Path, info: dict) -> None:
    """collection.json, replaced atomically."""
    tmp = folder / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, folder / INFO_FILE)


def as_space(space: Space | str) -> Space:
    return space if isinstance(space, Space) else load_space(space)


def pin_info(name: str, space: Space) -> dict:
    """What a new collection records about itself, on either store: its space, and where to load it again."""
    return {"format": FORMAT, "name": name, "created": time.time(),
            "space": {**space.describe(), "source": space.source}, "libraries": library_versions()}


class Collection:
    def __init__(self, folder: Path, space: Space | None = None, *, store=None, info: dict | None = None):
        """A collection in `folder` (the embedded store), or over another `store` with its pinning `info`."""
        self.folder = Path(folder)
        self.info = info if info is not None else json.loads((self.folder / INFO_FILE).read_text())
        if self.info.get("format") != FORMAT:
            raise ConfigError(f"{self.folder}: collection format {self.info.get('format')} is not {FORMAT}")
        self.store = store if store is not None else LanceStore(self.folder / "db", self.dim)
        self.location = getattr(store, "uri", None) or str(self.folder)  # what to pass to open_collection
        warn_if_changed(self.info.get("libraries"), f"collection {self.name!r}")
        self._space = space
        self._cache: _Rows | None = None      # exact search: every row in memory (small collections)
        self._index = None                    # ANN search index (large collections)
        self._delta: dict | None = None       # rows the index does not reflect yet
        self._hit_cache: tuple[int, dict] | None = None  # (table version, item id -> what a hit shows)

    # ---- identity -----------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path, space: Space) -> "Collection":
        folder.mkdir(parents=True, exist_ok=True)
        write_info(folder, pin_info(folder.name, space))  # the collection exists once this file does
        return cls(folder, space)

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def dim(self) -> int:
        return int(self.info["space"]["dim"])

    @property
    def pinned(self) -> dict:
        return self.info["space"]

    @property
    def space(self) -> Space:
        """The pinned space, loaded on first use from the source it was created with."""
        if self._space is None:
            # A bf16 space is another version: load it as it was made.
            self.attach_space(load_space(self.pinned["source"],
                                         overrides={"precision": self.pinned.get("precision", "fp32")}))
        return self._space

    def attach_space(self, space: Space) -> None:
        self.check_space(space.name, space.version, space.dim)
        self._space = space

    def check_space(self, name: str, version: str, dim: int) -> None:
        p = self.pinned
        if (name, version, dim) != (p["name"], p["version"], p["dim"]):
            raise SpaceMismatchError(
                f"collection {self.name!r} is pinned to space {p['name']!r} version {p['version']} ({p['dim']}-d); "
                f"got {name!r} version {version} ({dim}-d). Vectors of different spaces are not comparable; "
                f"move the collection with `omnivec reembed --collection {self.name} --space {name}`")

    def __len__(self) -> int:
        return self.store.count("kind = 'item'")

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, space={self.pinned['name']!r}, items={len(self)})"

    # ---- writing ------------------------------------------------------------------------------------------------
    def add_vectors(self, vectors: np.ndarray, *, ids: Sequence[str], modality: str = "image",
                    paths: Sequence[Sequence[str]] | None = None, metadata: Sequence[dict] | None = None,
                    space_version: str | None = None) -> int:
        """Add precomputed vectors of the pinned space. `ids` are content identities: sha256 hex digests are used
        as they are, other strings are hashed. An identity already stored is not added again. Returns the number
        added."""
        if space_version is not None and space_version != self.pinned["version"]:
            self.check_space(self.pinned["name"], space_version, vectors.shape[1])
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise SpaceMismatchError(f"collection {self.name!r} holds {self.dim}-d vectors, got shape {vectors.shape}")
        hashes = [_content_hash(x) for x in ids]
        known = self.stored_hashes(hashes)
        rows = []
        for i, h in enumerate(hashes):
            if h in known:
                continue
            known.add(h)
            rows.append(self.record(h, "item", -1, vectors[i], modality=modality,
                                    paths=list(paths[i]) if paths else [], meta=metadata[i] if metadata else None))
        self.write_records(rows)
        return len(rows)

    def record(self, content_hash: str, kind: str, segment: int, vector: np.ndarray, **fields: Any) -> dict:
        meta = fields.pop("meta", None) or {}
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0:
            raise OmnivecError(f"item {content_hash[:16]}: vector is zero or not finite")
        return {"key": row_key(content_hash, segment), "id": item_id(content_hash), "content_hash": content_hash,
                "kind": kind, "segment": segment, "space": self.pinned["name"], "version": self.pinned["version"],
                "added": time.time(), "vector": (vector / norm).astype(np.float32),
                "meta": json.dumps(meta, sort_keys=True, default=str) if meta else None, **fields,
                **{k: v for k, v in meta.items() if _is_scalar(v) and settable(k)}}

    def write_records(self, rows: list[dict]) -> None:
        """One atomic commit for a batch of rows; new scalar user-metadata keys become columns first."""
        if not rows:
            return
        existing = set(self.store.columns())
        new = {}
        for r in rows:
            for k, v in r.items():
                if k not in existing and k not in new and v is not None:
                    new[k] = _arrow_type(v)
        self.store.add_columns([pa.field(k, t) for k, t in new.items()])
        cols = self.store.columns()
        table = pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in cols if any(c in r for r in rows)})
        self.store.add_records(table)

    def known_hashes(self) -> set[str]:
        return set(self.store.scan("kind = 'item'", ["content_hash"]).column("content_hash").to_pylist())

    def stored_hashes(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes are stored: a cost that follows the batch, not the collection (a
        server-side store would otherwise send every hash it holds for each batch added)."""
        found: set[str] = set()
        unique = sorted(set(hashes))
        for i in range(0, len(unique), 5000):
            t = self.store.scan(sql_in("content_hash", unique[i:i + 5000]) + " AND kind = 'item'", ["content_hash"])
            found.update(t.column("content_hash").to_pylist())
        return found

    def update_metadata(self, item_ids: Sequence[str], values: dict[str, Sequence[Any]]) -> int:
        """Set metadata fields of stored items in one atomic commit, leaving their vectors as they are.

        Contract (for every store): `item_ids` are item ids or content hashes, each at most once; `values` maps a
        field name to one value per item, aligned with `item_ids`. A value is a bool, int, float, str, a list of
        those, a dict, or None. Each field is merged into the item's `meta` JSON (None removes the key), so hits
        carry it, and is a column of the item row for `where` filters: scalars and lists of scalars as typed
        columns (a list is queried with `array_has(field, 'x')`), dicts as JSON text, None as null. A field seen
        for the first time is added as a column first (a schema change; other rows get nulls); then every value
        of the call is written in a single commit, so readers see all of it or none of it. Only item rows change
        (segments follow their item in filters). Built-in fields other than year, taken_at, lat and lon cannot be
        set. Unknown ids raise OmnivecError; a value that does not fit its field's existing column type raises
        ConfigError. Returns the number of items updated."""
        ids = list(item_ids)
        if len(set(ids)) != len(ids):
            raise ConfigError("update_metadata: an item is listed more than once")
        for name, column in values.items():
            if not settable(name):
                raise ConfigError(f"update_metadata: {name!r} is a built-in field and cannot be set")
            if len(column) != len(ids):
                raise ConfigError(f"update_metadata: {len(column)} values of {name!r} for {len(ids)} items")
        if not ids or not values:
            return 0
        rows: dict[str, dict] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            for col_name, group in (("id", [x for x in chunk if len(x) <= 16]),
                                    ("content_hash", [x for x in chunk if len(x) > 16])):
                if group:
                    for r in self.items(sql_in(col_name, group), ["key", "id", "content_hash", "meta"]).to_pylist():
                        rows[r[col_name]] = r
        missing = [x for x in ids if x not in rows]
        if missing:
            raise OmnivecError(f"collection {self.name!r} has no item {missing[0]!r}"
                               + (f" (and {len(missing) - 1} more unknown ids)" if len(missing) > 1 else ""))
        plain = {name: [_plain(v) for v in column] for name, column in values.items()}
        metas = []
        for j, x in enumerate(ids):
            meta = json.loads(rows[x]["meta"]) if rows[x]["meta"] else {}
            for name, column in plain.items():
                if column[j] is None:
                    meta.pop(name, None)
                else:
                    meta[name] = column[j]
            metas.append(json.dumps(meta, sort_keys=True, default=str) if meta else None)
        known = set(self.store.columns())
        plain = {name: column for name, column in plain.items()  # clearing a field that was never a column
                 if name in known or any(v is not None for v in column)}
        types = {name: _field_type(name, column) for name, column in plain.items()}
        self.store.add_columns([pa.field(name, types[name]) for name in plain if name not in known])
        arrays = {"key": pa.array([rows[x]["key"] for x in ids], pa.int64()), "meta": pa.array(metas, pa.string())}
        for name, column in plain.items():  # the store casts to an existing column's type, or says why not
            arrays[name] = pa.array([json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in column],
                                    types[name])
        self.store.update_records(pa.table(arrays))
        return len(ids)

    # ---- reading ------------------------------------------------------------------------------------------------
    def get(self, item: str) -> dict:
        """The item row (without its vector) for an item id or content hash."""
        col = "content_hash" if len(item) > 16 else "id"
        t = self.store.scan(f"{col} = '{_sql(item)}' AND kind = 'item'")
        if t.num_rows == 0:
            raise OmnivecError(f"collection {self.name!r} has no item {item!r}")
        row = t.to_pylist()[0]
        row.pop("vector", None)
        return row

    def find_item(self, ref: str) -> str:
        """The item id for an item id, a content hash or a stored path (as `omnivec search` prints them). A
        reference to nothing stored is a usage error (ConfigError), the same in every command."""
        s = str(ref).strip()
        cond = f"id = '{_sql(s)}' OR content_hash = '{_sql(s)}'"
        if len(s) not in (16, 64) or not all(c in "0123456789abcdef" for c in s):
            # array_has is in the filter subset every store understands (store/filters.py)
            cond = f"array_has(paths, '{_sql(s)}') OR array_has(paths, '{_sql(str(Path(s).expanduser().resolve()))}')"
        found = self.items(cond, ["id"]).column("id").to_pylist() if s else []
        if not found:
            raise ConfigError(f"collection {self.name!r} has no item {s!r} (give an item id, a content hash or a "
                              f"stored path, as `omnivec search` prints them)")
        return found[0]

    def vector(self, item: str) -> np.ndarray:
        col = "content_hash" if len(item) > 16 else "id"
        t = self.store.scan(f"{col} = '{_sql(item)}' AND kind = 'item'", ["vector"])
        if t.num_rows == 0:
            raise OmnivecError(f"collection {self.name!r} has no item {item!r}")
        return np.asarray(t.column("vector").to_pylist()[0], np.float32)

    def errors(self) -> list[dict]:
        return sorted(self.store.all_errors().to_pylist(), key=lambda r: r["path"])

    def items(self, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
        cond = "kind = 'item'" + (f" AND ({where})" if where else "")
        try:
            return self.store.scan(cond, columns)
        except OmnivecError:
            raise
        except Exception as e:  # the engine's answer to a filter it cannot parse or resolve
            if not where:
                raise
            self.check_filter(where)   # names an unknown field, with the valid ones
            raise ConfigError(f"filter {where!r} is not valid: {_first_line(e)}") from None

    # ---- validating what users ask for ----------------------------------------------------------------------------
    def filter_columns(self) -> list[str]:
        """The fields a `where` filter may name: the built-in columns and every user-metadata field."""
        return sorted(c for c in self.store.columns() if c not in ("vector", "meta"))

    def check_filter(self, where: str | None) -> None:
        """A filter that names a field the collection does not have is a usage error that lists the fields (an
        engine would answer with a traceback, or, for Milvus's dynamic fields, silently match nothing)."""
        if not where:
            return
        known = set(self.filter_columns())
        unknown = [f for f in filter_fields(where) if f not in known]
        if unknown:
            raise ConfigError(f"filter {where!r}: collection {self.name!r} has no field {unknown[0]!r}; its fields "
                              f"are {', '.join(self.filter_columns())}")

    def check_modalities(self, modalities: str | Sequence[str] | None) -> list[str] | None:
        """Parse "image,video" or a list. A name that is no modality is a usage error (ConfigError); a modality
        the pinned space does not cover is a ModalityError (a search for it could only ever be empty)."""
        if modalities is None or modalities == "" or modalities == []:
            return None
        mods = [m.strip() for m in (modalities.split(",") if isinstance(modalities, str) else modalities)
                if str(m).strip()]
        covered = self.pinned.get("modalities")
        for m in mods:
            if m not in MODALITIES:
                raise ConfigError(f"unknown modality {m!r}; use one of {', '.join(MODALITIES)}")
            if covered is not None and m not in covered:
                raise ModalityError(f"collection {self.name!r} is pinned to space {self.pinned['name']!r}, which "
                                    f"does not cover {m} (it covers {', '.join(covered)})")
        return mods or None

    # ---- search -------------------------------------------------------------------------------------------------
    def query_vector(self, query: Any = None, *, image: Any = None, audio: Any = None, video: Any = None,
                     like: str | Sequence[str] | None = None, weights: Sequence[float] | None = None) -> np.ndarray:
        """One unit query vector from any mix of text/file, image, audio, video and stored items (ids, content
        hashes or stored paths), weighted."""
        return self._query_vector(query, image, audio, video, [self.find_item(i) for i in _listify(like)], weights)

    def _query_vector(self, query: Any, image: Any, audio: Any, video: Any, like_ids: list[str],
                      weights: Sequence[float] | None) -> np.ndarray:
        parts: list[tuple[str | None, Any]] = []
        for modality, value in ((None, query), ("image", image), ("audio", audio), ("video", video)):
            for v in _listify(value):
                parts.append((modality, v))
        if not parts and not like_ids:
            raise ConfigError("a search needs a query: text, a file, or an item id (like=)")
        if any(isinstance(v, str) and not v.strip() for _, v in parts):
            raise ConfigError("an empty query matches nothing: give text, a file, or an item (like=)")
        vecs = [self.space.embed([v], modality=m)[0] for m, v in parts] + [self.vector(i) for i in like_ids]
        return mix_query(vecs, weights)

    def search(self, query: Any = None, *, k: int = 10, modalities: Sequence[str] | None = None,
               where: str | None = None, min_score: float | None = None, image: Any = None, audio: Any = None,
               video: Any = None, like: str | Sequence[str] | None = None, weights: Sequence[float] | None = None,
               vector: np.ndarray | None = None) -> list[Hit]:
        likes = [self.find_item(i) for i in _listify(like)]   # ids, content hashes or stored paths
        q = vector if vector is not None else self._query_vector(query, image, audio, video, likes, weights)
        exclude = set(likes)
        return self.search_vector(q, k=k, modalities=modalities, where=where, min_score=min_score, exclude=exclude)

    def search_vector(self, q: np.ndarray, *, k: int = 10, modalities: Sequence[str] | None = None,
                      where: str | None = None, min_score: float | None = None,
                      exclude: set[str] = frozenset()) -> list[Hit]:
        q = np.asarray(q, np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise SpaceMismatchError(f"query has {q.shape[0]} dimensions; collection {self.name!r} has {self.dim}")
        modalities = self.check_modalities(modalities)
        self.check_filter(where)
        if isinstance(self.store, SearchingStore):  # an engine with its own index (Milvus) ranks and filters
            found = self.store.search(q, k=k, where=where, modalities=modalities, exclude=sorted(exclude),
                                      min_score=min_score)
            media = [i for i, _ in found]
            segments = sql_in("id", media) + " AND kind = 'segment'"  # for the best window of audio and video
            return self._hydrate(found, _Rows.load(self.store, self.dim, 0, where=segments), q)
        allowed = self._allowed_ids(where)
        mods = {m.encode() for m in modalities} if modalities else None
        index = self._index_for()
        if index is None:
            rows = self._rows()
            scores = rows.vectors @ q
            found = self._rank(rows, np.arange(len(scores)), scores, k, mods, allowed, min_score, exclude)
        else:
            found = self._search_ann(index, q, k, mods, allowed, min_score, exclude)
            rows = index
        return self._hydrate(found, rows, q)

    def _rank(self, rows, positions, scores, k, mods, allowed, min_score, exclude) -> list[tuple[str, float]]:
        """Best row per item, in score order; an item's first row is its best (pooled vector or a segment)."""
        hits: list[tuple[str, float]] = []
        seen = {e.encode() for e in exclude}
        for j in np.argsort(-scores, kind="stable"):
            score = float(scores[j])
            if len(hits) >= k or (min_score is not None and score < min_score):
                break
            p = positions[j]
            iid = rows.ids[p]
            if iid in seen or (mods is not None and rows.modalities[p] not in mods) or \
                    (allowed is not None and iid not in allowed):
                continue
            seen.add(iid)
            hits.append((iid.decode(), score))
        return hits

    def _search_ann(self, index, q, k, mods, allowed, min_score, exclude) -> list[tuple[str, float]]:
        """Widen the candidate set until k items pass the filters; then fall back to exact search if needed."""
        n = index.n_base
        want = max(8 * k, 64)
        while True:
            scores, positions = index.search(q, min(want, n))
            scores, positions = self._merge_delta(index, q, scores, positions)
            found = self._rank(index, positions, scores, k, mods, allowed, min_score, exclude)
            exhausted = want >= n or (len(scores) and min_score is not None and scores.min() < min_score)
            if len(found) >= k or exhausted:
                return found
            if want >= 64 * k and want * 4 < n:  # a very selective filter: score every row instead
                scores = np.asarray(index.vectors @ q)
                scores, positions = self._merge_delta(index, q, scores, np.arange(index.n_base))
                return self._rank(index, positions, scores, k, mods, allowed, min_score, exclude)
            want *= 4

    def _merge_delta(self, index, q, scores, positions):
        """Rows committed after the index was built are scored exactly; deleted rows are dropped."""
        if len(index.keys) > index.n_base:
            scores = np.concatenate([scores, index.extra_vectors @ q])
            positions = np.concatenate([positions, np.arange(index.n_base, len(index.keys))])
        if self._delta is not None and len(self._delta["deleted"]):
            keep = ~np.isin(index.keys[positions], self._delta["deleted"])
            scores, positions = scores[keep], positions[keep]
        return scores, positions

    # ---- what search reads --------------------------------------------------------------------------------------
    def _allowed_ids(self, where: str | None) -> set[bytes] | None:
        if not where:
            return None
        # Filters are SQL over the item rows; segments inherit their item's verdict.
        return {i.encode() for i in self.items(where, ["id"]).column("id").to_pylist()}

    def _rows(self) -> "_Rows":
        """All row vectors in memory for exact search, reloaded whenever the table has a new version."""
        version = self.store.version()
        if self._cache is None or self._cache.version != version:
            self._cache = _Rows.load(self.store, self.dim, version)
        return self._cache

    def _index_for(self):
        """The ANN search index for collections of at least ANN_MIN_ROWS rows, reconciled with the table: built
        if missing; if the table moved on, rebuilt when much changed, else used with the changes scored exactly."""
        from .search_index import SearchIndex

        n = self.store.count()
        if n < ann_min_rows():
            return None
        version = self.store.version()
        index = self._index if self._index is not None else SearchIndex.load(self.folder / "search")
        if index is None:
            index = SearchIndex.build(self.folder / "search", self.store, self.dim)
        if index.version != version and (self._delta is None or self._delta["version"] != version):
            keys = self.store.scan(None, ["key"]).column("key").to_numpy()
            added = np.setdiff1d(keys, index.keys, assume_unique=True)
            deleted = np.setdiff1d(index.keys, keys, assume_unique=True)
            if len(index.keys) - index.n_base + len(added) + len(deleted) > REBUILD_AFTER:
                index, self._delta = SearchIndex.build(self.folder / "search", self.store, self.dim), None
            else:
                self._delta = self._load_delta(index, added, deleted, version)
        if index.version == version:
            self._delta = None
        self._index = index
        return index

    def _load_delta(self, index, added: np.ndarray, deleted: np.ndarray, version: int) -> dict:
        """Rows added since the build join the index's arrays (scored exactly); deleted ones are masked out."""
        if len(added):
            index.extend(_Rows.load(self.store, self.dim, version, where=sql_in("key", added.tolist())))
        return {"version": version, "deleted": deleted}

    def refresh_index(self) -> bool:
        """Bring the ANN index up to date with the records (after indexing); False below the ANN size."""
        from .search_index import SearchIndex

        if isinstance(self.store, SearchingStore):  # the engine keeps its own index
            return self.store.refresh_index()
        if self.store.count() < ann_min_rows():
            return False
        self._index, self._delta = SearchIndex.build(self.folder / "search", self.store, self.dim), None
        return True

    def _hit_records(self, ids: list[str]) -> dict[str, dict]:
        """What hits show (modality, paths, metadata), kept per table version: a server answering many queries
        would otherwise pay one table scan per query for rows that rarely change."""
        version = self.store.version()
        if self._hit_cache is None or self._hit_cache[0] != version or len(self._hit_cache[1]) > HIT_CACHE_ROWS:
            self._hit_cache = (version, {})
        cache = self._hit_cache[1]
        missing = [i for i in ids if i not in cache]
        if missing:
            for r in self.items(sql_in("id", missing), ["id", "modality", "paths", "meta"]).to_pylist():
                cache[r["id"]] = r
        return {i: cache[i] for i in ids if i in cache}

    def _hydrate(self, found: list[tuple[str, float]], rows, q: np.ndarray) -> list[Hit]:
        if not found:
            return []
        recs = self._hit_records([f[0] for f in found])
        out = []
        for iid, score in found:
            r = recs.get(iid, {})
            start = end = None
            if r.get("modality") in ("audio", "video"):
                start, end = _best_segment(rows, iid, q)
            out.append(Hit(id=iid, score=score, modality=r.get("modality", ""), paths=r.get("paths") or [],
                           start=start, end=end, metadata=json.loads(r["meta"]) if r.get("meta") else {}))
        return out


def mix_query(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """One unit query vector from its parts' vectors: their weighted sum, normalised (every interface's query
    mix: Collection.search and the server)."""
    if not len(vectors):
        raise ConfigError("a search needs a query: text, a file, an item (like) or a vector")
    w = np.ones(len(vectors), np.float32) if weights is None else np.asarray(weights, np.float32).reshape(-1)
    if len(w) != len(vectors):
        raise ConfigError(f"{len(w)} weights for {len(vectors)} query parts")
    q = (np.stack(vectors) * w[:, None]).sum(0)
    n = float(np.linalg.norm(q))
    if not n > 0:
        raise ConfigError("the weighted query parts cancel out")
    return (q / n).astype(np.float32)


def ann_min_rows() -> int:
    """Collections with at least this many rows are searched through the ANN index (exact search below)."""
    return int(os.environ.get("OMNIVEC_ANN_MIN_ROWS", "20000"))


HIT_CACHE_ROWS = 100_000  # item rows kept for hits, per table version
REBUILD_AFTER = 5000  # rows added or deleted since the index was built, beyond which it is rebuilt


class _Rows:
    """The columns search needs, in memory: vectors (n, d) and per-row key, item id, kind, modality, times."""

    def __init__(self, version: int, keys, ids, kinds, modalities, start, end, vectors):
        self.version, self.keys, self.ids, self.kinds = version, keys, ids, kinds
        self.modalities, self.start, self.end, self.vectors = modalities, start, end, vectors

    def vector_rows(self, positions: np.ndarray) -> np.ndarray:
        return self.vectors[positions]

    @classmethod
    def load(cls, store, dim: int, version: int, where: str | None = None) -> "_Rows":
        t = store.scan(where, ["key", "id", "kind", "modality", "start", "end", "vector"])
        n = t.num_rows
        vectors = (np.asarray(t.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(n, dim)
                   if n else np.zeros((0, dim), np.float32))
        return cls(version, t.column("key").to_numpy(), np.asarray(t.column("id").to_pylist(), "S16"),
                   np.asarray([k == "segment" for k in t.column("kind").to_pylist()], np.int8),
                   np.asarray(t.column("modality").to_pylist(), "S8"),
                   np.asarray([np.nan if x is None else x for x in t.column("start").to_pylist()], np.float32),
                   np.asarray([np.nan if x is None else x for x in t.column("end").to_pylist()], np.float32),
                   vectors)


def _best_segment(rows, iid: str, q: np.ndarray) -> tuple[float | None, float | None]:
    """The segment of an audio or video item that matches the query best."""
    pos = np.flatnonzero((rows.ids == iid.encode()) & (rows.kinds == 1))
    if not len(pos):
        return None, None
    j = pos[int(np.argmax(rows.vector_rows(pos) @ q))]
    return float(rows.start[j]), float(rows.end[j])


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _content_hash(identity: str) -> str:
    if len(identity) == 64 and all(c in "0123456789abcdef" for c in identity):
        return identity
    import hashlib

    return hashlib.sha256(identity.encode()).hexdigest()


def _listify(v) -> list:
    if v is None:
        return []
    if isinstance(v, (list, tuple)) and not (len(v) == 2 and isinstance(v[0], np.ndarray)):
        return list(v)
    return [v]


def _sql(s: str) -> str:
    return s.replace("'", "''")


def _is_scalar(v) -> bool:
    return isinstance(v, (bool, int, float, str)) and not isinstance(v, np.ndarray)


def _arrow_type(v) -> pa.DataType:
    if isinstance(v, bool):
        return pa.bool_()
    if isinstance(v, int):
        return pa.int64()
    if isinstance(v, float):
        return pa.float64()
    if isinstance(v, str):
        return pa.string()
    raise TypeError(f"unsupported column value {v!r}")


def _plain(v: Any) -> Any:
    """numpy scalars and arrays as Python values, so they serialise to JSON and Arrow alike."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def _field_type(name: str, column: Sequence[Any]) -> pa.DataType:
    """The column type for a metadata field's values: a scalar type, a list of one, or JSON text for dicts."""
    present = [v for v in column if v is not None]
    if any(isinstance(v, dict) for v in present):
        return pa.string()
    if any(isinstance(v, list) for v in present):
        if not all(isinstance(v, list) for v in present):
            raise ConfigError(f"update_metadata: {name!r} mixes lists and single values")
        inner = _scalar_type(name, [x for v in present for x in v if x is not None])
        return pa.list_(pa.string() if inner == pa.null() else inner)
    return _scalar_type(name, present)


def _scalar_type(name: str, present: list) -> pa.DataType:
    kinds = {_arrow_type(v) if _is_scalar(v) else None for v in present}
    if None in kinds:
        raise ConfigError(f"update_metadata: {name!r} has a value that is not a bool, number, string, list or dict")
    if kinds <= {pa.int64(), pa.float64()} and kinds:
        return pa.float64() if pa.float64() in kinds else pa.int64()
    if len(kinds) > 1:
        raise ConfigError(f"update_metadata: {name!r} mixes value types {sorted(map(str, kinds))}")
    return kinds.pop() if kinds else pa.null()   # no values: null, which casts to any existing column type
