"""Both stores under one test suite: `backend` runs a test on the embedded store (LanceDB) and on a real Milvus
server (the session's `milvus_server`, tests/conftest.py)."""
from __future__ import annotations

import itertools
import os

import pytest

_names = itertools.count()


@pytest.fixture(scope="module", params=["lance", "milvus"])
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def new_location(backend, request, tmp_path_factory):
    """`new_location(name)`: where a new collection of this backend goes: a folder, or a milvus:// URI with a
    name unique in the session. Milvus collections made here are dropped at the end of the module."""
    made: list[str] = []

    def make(name: str = "col"):
        if backend == "lance":
            return tmp_path_factory.mktemp("cols") / name
        address = request.getfixturevalue("milvus_server")
        uri = f"milvus://{address}/t{os.getpid()}_{next(_names)}_{name}"
        made.append(uri)
        return uri

    yield make
    if made:
        from omnivec.store.milvus import MilvusLocation, MilvusStore

        for uri in made:
            try:
                MilvusStore(MilvusLocation.parse(uri)).drop()
            except Exception:  # noqa: BLE001 - a server already gone has nothing left to drop
                pass
