"""Server fixtures: a small indexed collection of generated shapes (trained shapes model), apps over it, and a
live uvicorn server on a free loopback port."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import omnivec
from omnivec.ingest import index
from omnivec.samples import make_sample_folder

from liveserver import LiveServer  # tests/server is on sys.path while its tests are collected

pytest.importorskip("fastapi")


@pytest.fixture(scope="session")
def server_media(tmp_path_factory) -> Path:
    return make_sample_folder(tmp_path_factory.mktemp("server-media"), per_concept=2, image_size=64)


@pytest.fixture(scope="session", params=["lance", "milvus"])
def server_col(request, server_media, shapes_clip, tmp_path_factory):
    """The served collection, on each store: every server test runs against LanceDB and a real Milvus server."""
    if request.param == "lance":
        location = tmp_path_factory.mktemp("server-cols") / "shapes"
    else:
        location = f"milvus://{request.getfixturevalue('milvus_server')}/server_shapes_{os.getpid()}"
    col = omnivec.open_collection(location, space=shapes_clip, create=True)
    index(col, [server_media])
    return col


@pytest.fixture
def make_client(server_col, tmp_path):
    """TestClient over an app with the given config; each app logs queries to its own file."""
    from fastapi.testclient import TestClient

    from omnivec.server import ServerConfig, create_app

    clients = []

    def make(collection=None, **options):
        options.setdefault("query_log", tmp_path / f"queries-{len(clients)}.jsonl")
        client = TestClient(create_app(collection or server_col, ServerConfig(**options)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def live_server(server_col, tmp_path):
    from omnivec.server import ServerConfig, create_app

    with LiveServer(create_app(server_col, ServerConfig(query_log=tmp_path / "queries.jsonl"))) as live:
        yield live
