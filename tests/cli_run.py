"""Running the omnivec command line from tests: in a child process (the real entry point) or in this process
(saves starting Python and loading the model for each call)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args, home: Path) -> subprocess.CompletedProcess:
    """`python -m omnivec ARGS` in a child process, wide so that tables do not wrap."""
    env = {**os.environ, "OMNIVEC_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "omnivec", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def main(*args, home: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """The same command line in this process: exit code, stdout, stderr."""
    from omnivec.cli import main as omnivec_main

    monkeypatch.setenv("OMNIVEC_HOME", str(home))
    with pytest.raises(SystemExit) as e:
        omnivec_main([str(a) for a in args])
    captured = capsys.readouterr()
    return e.value.code, captured.out, captured.err
