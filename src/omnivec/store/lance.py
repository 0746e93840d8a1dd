"""The embedded engine: LanceDB tables for records, files and errors, in the collection's folder.

Every write is one LanceDB commit (a new table version, made visible by an atomic manifest write), so a process
killed at any moment leaves each table at its last committed version."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa

from ..errors import ConfigError
from .base import Store
from .filters import sql_in
from .schema import ERRORS_SCHEMA, FILES_SCHEMA, record_schema

log = logging.getLogger(__name__)


def _cast(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise ConfigError(f"field {field.name!r} is a column of {field.type}; values of type {column.type} do not "
                          f"fit it ({e}); use another field name") from None


class LanceStore(Store):
    """The embedded store: LanceDB tables in the collection's folder. It has no `search` of its own; the
    Collection searches its records (exact, or through store/search_index.py)."""

    def __init__(self, folder: Path, dim: int):
        import lancedb

        self.db = lancedb.connect(str(folder))
        existing = set(self.db.list_tables().tables)
        # Open what exists (its schema may have grown user-metadata columns); create what does not.
        self.items, self.files, self.errors = (
            self.db.open_table(name) if name in existing else self.db.create_table(name, schema=schema, exist_ok=True)
            for name, schema in (("items", record_schema(dim)), ("files", FILES_SCHEMA), ("errors", ERRORS_SCHEMA)))

    # ---- records ------------------------------------------------------------------------------------------------
    def add_records(self, table: pa.Table) -> None:
        if table.num_rows:
            self.items.add(self._conform(table))

    def upsert_records(self, table: pa.Table) -> None:
        if table.num_rows:
            self.items.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(
                self._conform(table))

    def update_records(self, table: pa.Table) -> None:
        """Set the batch's columns on existing rows matched by `key`, in one commit. Columns the batch lacks (the
        vector among them) keep their values; keys not in the table are ignored."""
        if table.num_rows:
            fields = [self.items.schema.field(name) for name in table.column_names]
            data = pa.Table.from_arrays([_cast(table.column(f.name), f) for f in fields], schema=pa.schema(fields))
            self.items.merge_insert("key").when_matched_update_all().execute(data)

    def delete_records(self, where: str) -> None:
        self.items.delete(where)

    def scan(self, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
        q = self.items.search()
        if where:
            q = q.where(where)
        if columns:
            q = q.select(columns)
        return q.limit(None).to_arrow()

    def scan_batches(self, columns: list[str], batch: int = 65536) -> Iterator[pa.RecordBatch]:
        yield from self.items.search().select(columns).limit(None).to_batches(batch)

    def count(self, where: str | None = None) -> int:
        return self.items.count_rows(where)

    def version(self) -> int:
        return self.items.version

    def state(self) -> tuple:
        return self.items.version, self.files.version, self.errors.version

    def refresh(self) -> None:
        for table in (self.items, self.files, self.errors):
            table.checkout_latest()

    def columns(self) -> list[str]:
        return self.items.schema.names

    def add_columns(self, fields: list[pa.Field]) -> None:
        """Schema evolution for new user-metadata keys (existing rows get nulls)."""
        if fields:
            self.items.add_columns(fields)

    def _conform(self, table: pa.Table) -> pa.Table:
        """Order and cast to the table's schema; columns the batch lacks become nulls."""
        schema = self.items.schema
        cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                for f in schema]
        return pa.Table.from_arrays(cols, schema=schema)

    # ---- files and errors ---------------------------------------------------------------------------------------
    def all_files(self) -> pa.Table:
        return self.files.to_arrow()

    def files_for(self, paths: Sequence[str]) -> list[dict]:
        if not paths:
            return []
        return self.files.search().where(sql_in("path", list(paths))).limit(None).to_arrow().to_pylist()

    def file_status_counts(self) -> dict[str, int]:
        status = self.files.search().select(["status"]).limit(None).to_arrow().column("status")
        return {str(c["values"]): int(c["counts"]) for c in status.value_counts().to_pylist()} if len(status) else {}

    def upsert_files(self, rows: list[dict]) -> None:
        if rows:
            data = pa.Table.from_pylist(rows, schema=FILES_SCHEMA)
            self.files.merge_insert("path").when_matched_update_all().when_not_matched_insert_all().execute(data)

    def delete_files(self, paths: list[str]) -> None:
        for i in range(0, len(paths), 500):
            self.files.delete(sql_in("path", paths[i:i + 500]))

    def add_errors(self, rows: list[dict]) -> None:
        if rows:
            self.errors.add(pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA))

    def clear_errors(self, paths: list[str]) -> None:
        for i in range(0, len(paths), 500):
            self.errors.delete(sql_in("path", paths[i:i + 500]))

    def all_errors(self) -> pa.Table:
        return self.errors.to_arrow()

    def count_errors(self) -> int:
        return self.errors.count_rows()

    def compact(self) -> None:
        """Merge small fragments written by batch commits, and drop old versions."""
        for t in (self.items, self.files, self.errors):
            try:
                t.optimize()
            except Exception as e:  # optimisation is an optional nicety; a failure must not fail the indexing run
                log.warning("compacting table %s failed (the data is intact): %s", t.name, e)
