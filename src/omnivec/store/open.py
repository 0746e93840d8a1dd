"""Opening a collection: the one place that knows every kind of location and the open-or-create policy.

A folder (or a bare name under $OMNIVEC_HOME/collections) holds an embedded LanceDB store; a
`milvus://host:port/name` location keeps the records in a Milvus server. Either way the result is the same
Collection. This module sits above collection.py and milvus.py, so neither needs to import the other."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from ..spaces import Space
from .collection import INFO_FILE, Collection, as_space, collection_path, finish_reembed_swap, omnivec_home, pin_info
from .milvus import MilvusLocation, MilvusStore, is_milvus_uri


def open_collection(name_or_path: str | os.PathLike, *, space: Space | str | None = None,
                    create: bool = False) -> Collection:
    """Open a collection; with create=True and a space, make it if it does not exist."""
    if is_milvus_uri(str(name_or_path)):
        return _open_milvus(str(name_or_path), space=space, create=create)
    folder = collection_path(name_or_path)
    if not (folder / INFO_FILE).is_file():
        finish_reembed_swap(folder)   # a reembed killed between its two renames
    if (folder / INFO_FILE).is_file():
        return _attached(Collection(folder), space)
    return _create(str(name_or_path), space, create,
                   lambda sp: Collection.create(folder, sp), where=str(folder))


def _open_milvus(uri: str, *, space, create: bool) -> Collection:
    loc = MilvusLocation.parse(uri)
    store = MilvusStore(loc)   # pymilvus is imported here, only for Milvus collections
    # A Collection has a local folder for derived files; a Milvus collection needs none, so it is never created.
    folder = Path(omnivec_home() / "milvus" / f"{loc.host}_{loc.port}" / (loc.db or "default") / loc.name)
    info = store.read_info()
    if info is not None:
        return _attached(Collection(folder, store=store, info=info), space)

    def make(sp: Space) -> Collection:
        info = pin_info(loc.name, sp)
        store.create(sp.dim, info)
        return Collection(folder, sp, store=store, info=info)

    return _create(loc.uri, space, create, make, where=loc.uri)


def _attached(col: Collection, space) -> Collection:
    if space is not None:
        col.attach_space(as_space(space))
    return col


def _create(name: str, space, create: bool, make, where: str) -> Collection:
    if not create:
        raise ConfigError(f"no collection at {where}; create it with `omnivec index FOLDER --collection "
                          f"{name} --space SPACE`")
    if space is None:
        raise ConfigError(f"collection {name!r} does not exist yet: say which space to pin it to (--space)")
    return make(as_space(space))
