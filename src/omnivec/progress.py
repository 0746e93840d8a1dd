"""One progress bar for long work (embedding, indexing): count, rate and ETA, on stderr so stdout stays data."""
from __future__ import annotations


class ProgressBar:
    def __init__(self, label: str, total: int, unit: str = "items", transient: bool = False):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.unit = unit
        self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("[cyan]{task.fields[rate]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=transient)
        self.task = self.bar.add_task(label, total=total, rate="")
        self.bar.start()

    def advance(self, n: int = 1) -> None:
        speed = self.bar.tasks[0].speed
        self.bar.update(self.task, advance=n, rate=f"{speed:.1f} {self.unit}/s" if speed else "")

    def close(self) -> None:
        self.bar.stop()
