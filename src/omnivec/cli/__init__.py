"""The `omnivec` command line: one typer app, one module per command group.

Exit codes: 0 all good; 1 some inputs failed (the rest were done); 2 bad usage or config;
3 model weights not found; 4 a space asked for a modality it does not cover."""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from ..errors import ConfigError, MediaError, ModalityError, ModelNotFoundError, OmnivecError

app = typer.Typer(name="omnivec", help="Text, images, audio and video in one vector space.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)



def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"omnivec {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print omnivec's version and exit.")) -> None:
    """Text, images, audio and video in one vector space."""


# Every module of this package that defines `register(app)` adds its commands; a new command group is a new
# module, with no list to keep in step. Command modules import heavy libraries inside their commands.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    if hasattr(_module, "register"):
        _module.register(app)

EXIT_CODES = [(ModelNotFoundError, 3), (ModalityError, 4), (ConfigError, 2), (MediaError, 1), (OmnivecError, 1)]


def main(argv: list[str] | None = None) -> None:
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except OmnivecError as e:
        code = next(c for t, c in EXIT_CODES if isinstance(e, t))
        print(f"omnivec: error: {e}", file=sys.stderr)
        sys.exit(code)
    except typer.TyperException as e:  # usage errors (bad option, missing argument) carry exit code 2
        e.show()
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
