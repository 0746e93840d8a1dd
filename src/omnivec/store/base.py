"""What a Collection needs from the engine that keeps its records: the store protocol.

Two engines implement it: LanceStore (store/lance.py, embedded, one folder) and MilvusStore (store/milvus.py, a
Milvus server or cluster). Both inherit from these abstract classes, so a missing method is an error when the store is made, and nothing
above store/ touches an engine's tables: a Collection (and through it ingest, ops, quality and the server) talks
to its store only through these methods, so pinning, record layout, ingestion, filters and hits are the same on
both.

Conventions every store keeps:
- Records are rows of the layout in schema.py (`record_schema(dim)`, one row per vector, keyed by `key`) plus
  user-metadata columns added by `add_columns`. A missing value is null.
- `where` is omnivec's filter language: the SQL subset LanceDB accepts (`=`, `!=`, `<`, `>=`, `IN (...)`,
  `IS NULL`, `LIKE 'prefix%'`, `AND`/`OR`/`NOT`, 'string' literals); comparisons with null are unknown, as in SQL.
  Stores whose engine speaks another language translate it (filters.py for Milvus).
- Each write call is one commit: after a crash a reader sees the whole batch or none of it (LanceDB versions;
  Milvus: one request per batch, upserts keyed by `key`, so a repeated batch does not duplicate rows).
- `files` rows say which paths are done (FILES_SCHEMA); `errors` rows say what failed (ERRORS_SCHEMA).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa


class Store(ABC):
    # ---- records ------------------------------------------------------------------------------------------------
    @abstractmethod
    def add_records(self, table: pa.Table) -> None:
        """Append rows (columns the table lacks are null)."""

    @abstractmethod
    def upsert_records(self, table: pa.Table) -> None:
        """Insert rows, replacing whole rows whose `key` is already stored."""

    @abstractmethod
    def update_records(self, table: pa.Table) -> None:
        """Set the table's columns on the stored rows with the same `key`; other columns keep their values, and
        keys not stored are ignored. Values must fit the columns' types (ConfigError otherwise)."""

    @abstractmethod
    def delete_records(self, where: str) -> None:
        """Delete the rows the filter selects."""

    @abstractmethod
    def scan(self, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
        """The rows the filter selects (all rows without one), with the named columns (all without a list)."""

    @abstractmethod
    def scan_batches(self, columns: list[str], batch: int = 65536) -> Iterator[pa.RecordBatch]:
        """Every row's named columns in batches of at most `batch` rows, for reads too large for one table."""

    @abstractmethod
    def count(self, where: str | None = None) -> int:
        """How many rows the filter selects."""

    @abstractmethod
    def version(self) -> int:
        """A number that changes whenever the records change (caches of derived data compare it)."""

    @abstractmethod
    def state(self) -> tuple:
        """A value that changes whenever the records, files or errors change (for caches of counts)."""

    @abstractmethod
    def refresh(self) -> None:
        """See the commits other processes made since this store was opened (a server beside `omnivec index`)."""

    @abstractmethod
    def columns(self) -> list[str]:
        """Every record column: the built-in layout, then user-metadata columns in the order they were added."""

    @abstractmethod
    def add_columns(self, fields: list[pa.Field]) -> None:
        """New user-metadata columns; existing rows hold nulls in them."""

    # ---- files and errors ---------------------------------------------------------------------------------------
    @abstractmethod
    def all_files(self) -> pa.Table:
        """Every row of the files table (FILES_SCHEMA): path, content_hash, size, mtime_ns, status, reason."""

    @abstractmethod
    def files_for(self, paths: Sequence[str]) -> list[dict]:
        """The files rows of these paths (those that have one)."""

    @abstractmethod
    def file_status_counts(self) -> dict[str, int]:
        """How many files rows have each status (indexed, skipped, failed)."""

    @abstractmethod
    def upsert_files(self, rows: list[dict]) -> None:
        """Insert or replace files rows by path."""

    @abstractmethod
    def delete_files(self, paths: list[str]) -> None:
        ...

    @abstractmethod
    def add_errors(self, rows: list[dict]) -> None:
        """Append errors rows (ERRORS_SCHEMA): path, stage, error, time."""

    @abstractmethod
    def clear_errors(self, paths: list[str]) -> None:
        """Delete every errors row of these paths."""

    @abstractmethod
    def all_errors(self) -> pa.Table:
        ...

    @abstractmethod
    def count_errors(self) -> int:
        ...

    @abstractmethod
    def compact(self) -> None:
        """Housekeeping after many small commits; never fails the caller."""


class SearchingStore(Store):
    """A store whose engine keeps its own vector index. The Collection hands it whole searches instead of
    reading vectors out for its exact or ANN search (store/search_index.py)."""

    @abstractmethod
    def search(self, q: np.ndarray, *, k: int, where: str | None = None, modalities: Sequence[str] | None = None,
               exclude: Sequence[str] = (), min_score: float | None = None) -> list[tuple[str, float]]:
        """The best k items for the unit query vector: (item id, score) in descending score, one entry per item
        (an item scores by its best row: its pooled vector or one of its segments). Filters as in `scan`; rows
        of `modalities` only; items in `exclude` left out; scores below `min_score` dropped."""

    @abstractmethod
    def refresh_index(self) -> bool:
        """Make recently written rows served by the engine's index (after an indexing run)."""
