"""Which versions of the libraries that turn inputs into vectors made a collection's vectors.

An upgrade of torch, transformers, open_clip or a decoder can move vectors slightly (other kernels, another
resize), so a collection records the versions it was made with and says so when they differ on open: items
added later may not be exactly comparable with the old ones until `omnivec reembed` makes them all again."""
from __future__ import annotations

import warnings
from importlib import metadata

VECTOR_LIBRARIES = ("omnivec", "torch", "transformers", "open_clip_torch", "pillow", "av", "soxr")


class LibraryVersionWarning(UserWarning):
    """The libraries that make vectors are not the versions a collection's vectors were made with."""


def library_versions() -> dict[str, str]:
    """Installed versions of the vector-making libraries (read from package metadata: nothing is imported)."""
    out = {}
    for name in VECTOR_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def warn_if_changed(recorded: dict | None, what: str) -> list[str]:
    """Warn (LibraryVersionWarning) naming each recorded library whose installed version differs; returns them."""
    if not recorded:
        return []
    now = library_versions()
    changed = [f"{name} {old} -> {now.get(name, 'not installed')}" for name, old in sorted(recorded.items())
               if now.get(name) != old]
    if changed:
        warnings.warn(f"{what} was made with other library versions ({'; '.join(changed)}): vectors made now may "
                      f"differ slightly from the stored ones; `omnivec reembed` makes them all again",
                      LibraryVersionWarning, stacklevel=3)
    return changed
