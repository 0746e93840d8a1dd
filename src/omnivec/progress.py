"""One progress display for long work (embedding, indexing): count, rate and ETA, on stderr so stdout stays data.

On a terminal it is rich's live bar. Elsewhere (a log file, CI, a pipe) a live bar cannot redraw and rich shows it
only when the work ends, so a plain line is printed at a steady rate instead ($OMNIVEC_PROGRESS_SECONDS, default
10 s) and once at the end."""
from __future__ import annotations

import os
import sys
import time


class ProgressBar:
    def __init__(self, label: str, total: int, unit: str = "items", transient: bool = False):
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self.t0 = self.last_line = time.monotonic()
        self.every = float(os.environ.get("OMNIVEC_PROGRESS_SECONDS", "10"))
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("[cyan]{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=transient)
            self.task = self.bar.add_task(label, total=total, rate="")
            self.bar.start()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            speed = self.bar.tasks[0].speed
            self.bar.update(self.task, advance=n, rate=f"{speed:.1f} {self.unit}/s" if speed else "")
        elif time.monotonic() - self.last_line >= self.every:
            self._line()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        else:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        self.last_line = now
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = f", ETA {_clock(left / rate)}" if rate > 0 and left > 0 else ""
        print(f"{self.label}: {self.done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s, "
              f"{_clock(elapsed)} elapsed{eta}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
