"""Manifests: CSV, JSONL or parquet files listing paths or URLs, with metadata in the other columns."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError

LOCATION_COLUMNS = ("path", "url", "uri", "file", "filepath")
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")


def is_manifest(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES


def read_manifest(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, metadata) per row; relative paths are taken relative to the manifest's folder."""
    rows = list(_rows(path))
    if not rows:
        return
    column = next((c for c in LOCATION_COLUMNS if c in rows[0]), None)
    if column is None:
        raise ConfigError(f"manifest {path}: needs a column named one of {', '.join(LOCATION_COLUMNS)}")
    for n, row in enumerate(rows, 1):
        loc = row.pop(column, None)
        if not loc:
            raise ConfigError(f"manifest {path}, row {n}: empty {column}")
        loc = str(loc)
        if not loc.startswith(("http://", "https://")) and not Path(loc).is_absolute():
            loc = str((path.parent / loc).resolve())
        yield loc, {k: _typed(v) for k, v in row.items() if v not in (None, "")}


def _rows(path: Path) -> Iterator[dict]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    elif suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"manifest {path}, line {n}: not JSON ({e.msg})") from e
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    else:
        raise ConfigError(f"{path}: manifests are .csv, .jsonl or .parquet")


def _typed(v):
    """CSV cells are text: numbers become numbers so that filters like `year >= 2020` work."""
    if not isinstance(v, str):
        return v
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)
