"""Running the omnivec command line from tests: in a child process (the real entry point) or in this process
(saves starting Python and loading the model for each call)."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
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


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def in_process(*args, home: Path) -> Run:
    """The command line in this process, stdout and stderr captured (so not terminals), with OMNIVEC_HOME set."""
    from omnivec.cli import main as omnivec_main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("OMNIVEC_HOME", str(home))
        try:
            omnivec_main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return Run(code, out.getvalue(), err.getvalue())
