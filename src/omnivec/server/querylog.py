"""The query log: one JSON line per query (time, endpoint, modality, latency, best score, result count, and
optionally the query vector), read later for drift and no-match signals. Retention is by total size and age.

Files: `queries.jsonl` is written; when it passes its share of the size budget it is renamed
`queries-<unix ns>.jsonl`. Rolled files older than the age limit, or beyond the size budget (oldest first), are
deleted. logging.handlers.RotatingFileHandler rotates by size only and renames every backup on each roll; this
keeps names stable (readers can tail the rolled files safely) and adds the age limit."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

ROLLED_FILES = 8  # the live file rolls at 1/ROLLED_FILES of the budget, so the budget holds about this many


class QueryLog:
    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024, max_age_days: float = 30.0,
                 log_vectors: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age = max_bytes, max_age_days * 86400
        self.roll_bytes = max(4096, max_bytes // ROLLED_FILES)
        self.log_vectors = log_vectors
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")
        self._first = _first_time(self.path)  # the oldest entry in the live file
        self._last_stamp = 0
        self.prune()

    def write(self, *, endpoint: str, modality: str, latency_ms: float, best_score: float | None, results: int,
              k: int | None = None, vector: np.ndarray | None = None, when: float | None = None) -> None:
        entry = {"time": round(when if when is not None else time.time(), 3), "endpoint": endpoint,
                 "modality": modality, "latency_ms": round(latency_ms, 3),
                 "best_score": None if best_score is None else round(float(best_score), 6), "results": results,
                 "k": k}
        if self.log_vectors and vector is not None:
            entry["vector"] = [round(float(x), 6) for x in np.asarray(vector).reshape(-1)]
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            self._first = self._first if self._first is not None else entry["time"]
            # Rolling on age too means a quiet server's live file never holds entries much past the age limit.
            if self._file.tell() >= self.roll_bytes or entry["time"] - self._first > self.max_age / ROLLED_FILES:
                self._roll()

    def _roll(self) -> None:
        self._file.close()
        # Names must never repeat (a second roll in the same tick would replace the first file).
        stamp = max(time.time_ns(), self._last_stamp + 1)
        self._last_stamp = stamp
        os.replace(self.path, self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}"))
        self._file = open(self.path, "a", encoding="utf-8")
        self._first = None
        self.prune()

    def rolled(self) -> list[Path]:
        """Rolled files, oldest first (their names sort by time)."""
        return sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"),
                      key=lambda p: int(p.stem.rsplit("-", 1)[1]) if p.stem.rsplit("-", 1)[1].isdigit() else 0)

    def prune(self) -> None:
        """Delete rolled files past the age limit, then the oldest until all files fit the size budget."""
        now = time.time()
        files = self.rolled()
        keep = []
        for p in files:
            try:
                if now - p.stat().st_mtime > self.max_age:
                    p.unlink()
                else:
                    keep.append(p)
            except FileNotFoundError:
                continue
        # The live file may still grow to roll_bytes before the next prune: leave it that room.
        total = max(self.path.stat().st_size if self.path.exists() else 0, self.roll_bytes)
        total += sum(p.stat().st_size for p in keep)
        while keep and total > self.max_bytes:
            oldest = keep.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()

    def entries(self) -> Iterator[dict]:
        """Every retained entry, oldest first."""
        with self._lock:
            self._file.flush()
        for p in [*self.rolled(), self.path]:
            with open(p, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _first_time(path: Path) -> float | None:
    try:
        with open(path, encoding="utf-8") as f:
            return float(json.loads(f.readline())["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # empty, missing or foreign first line: age counts from the next entry
