"""Printing for the CLI: JSON on stdout when asked, rich tables otherwise, diagnostics on stderr."""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.table import Table



class _Console(Console):
    """A terminal gets rich's wrapping at its width. Piped or captured output is read by programs and by people's
    tools (grep, a log, a CI page): there a path wrapped at 80 columns cannot be found or copied, so lines are
    never wrapped and tables take their natural width."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(UNWRAPPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.is_terminal:
            kwargs.setdefault("soft_wrap", True)
        super().print(*objects, **kwargs)


UNWRAPPED_WIDTH = 10_000   # wider than any table omnivec prints, so tables keep their natural width
out = _Console()
err = _Console(stderr=True)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_default) + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[_fmt(x) for x in r])
    out.print(t)


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _default(x: Any):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)
