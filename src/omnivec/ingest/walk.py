"""Walking folders: deterministic order, hidden and system files skipped unless asked, no symlink loops."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

# Files and folders operating systems and NAS boxes scatter around photo libraries.
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", ".ds_store", "__macosx", "@eadir", "$recycle.bin", "lost+found",
                "system volume information", ".trash", ".trashes", ".spotlight-v100", ".fseventsd"}


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def walk(root: Path, include_hidden: bool = False) -> Iterator[Path]:
    """Regular files under `root` (or `root` itself), sorted; symlinked folders are not followed."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if include_hidden or not is_hidden(d))
        for f in sorted(filenames):
            if include_hidden or not is_hidden(f):
                p = Path(dirpath) / f
                if p.is_file():
                    yield p
