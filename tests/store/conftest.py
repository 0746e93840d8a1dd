"""Both stores under one test suite: `backend` runs a test on the embedded store (LanceDB) and on a real Milvus
server, started once per session from PyPI's `milvus` package (an embedded Milvus standalone) and stopped at the
end. When the server cannot start, the Milvus tests fail with its log; they are never skipped."""
from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

import pytest

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")
START_TIMEOUT_S = float(os.environ.get("OMNIVEC_TEST_MILVUS_TIMEOUT", "240"))
_names = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(base: Path, lines: int = 40) -> str:
    out = []
    for name in ("milvus-stderr.log", "milvus-stdout.log"):
        p = base / "logs" / name
        if p.is_file():
            tail = p.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {p} (last {lines} lines)\n" + "\n".join(tail))
    return "\n".join(out) or f"(no server log under {base / 'logs'})"


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """host:port of a Milvus standalone server for this session.

    Every component advertises 127.0.0.1, so the server's own traffic stays on loopback, and the embedded etcd
    listens on loopback only. Milvus 2.3.5 has no setting for the address its gRPC and metrics ports listen on:
    they bind every interface (`ss -ltnp` shows *:PORT), so the ports are free ones chosen here, and the server
    lives only as long as the session."""
    from milvus import MilvusServer, MilvusServerConfig

    if os.environ.get("OMNIVEC_TEST_MILVUS"):  # a developer's running server (host:port); CI starts its own
        yield os.environ["OMNIVEC_TEST_MILVUS"]
        return
    base = tmp_path_factory.mktemp("milvus")
    server = MilvusServer(MilvusServerConfig(), wait_for_started=False)
    server.set_base_dir(str(base))
    server.listen_port = _free_port()
    etcd_port, peer_port = _free_port(), _free_port()
    server.config.update(etcd_port=etcd_port)
    for component in COMPONENTS:
        server.config.set(f"{component}.ip", "127.0.0.1")
    # Test tempo: a strongly consistent read waits for the next time tick (200 ms by default) and a load is
    # noticed at the next coordinator check (1 s); shorter intervals make the suite several times faster.
    server.config.set("proxy.timeTickInterval", 50)
    server.config.set("queryCoord.checkInterval", 200)
    # The embedded etcd's peer port is fixed at 2380 unless its own config file says otherwise; a second Milvus
    # or etcd on the machine would make the server exit. This one listens on loopback, on free ports.
    etcd_config = base / "embed-etcd.yaml"
    etcd_config.write_text(
        f"name: default\nlisten-client-urls: http://127.0.0.1:{etcd_port}\n"
        f"advertise-client-urls: http://127.0.0.1:{etcd_port}\nlisten-peer-urls: http://127.0.0.1:{peer_port}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{peer_port}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer_port}\n")
    saved = os.environ.get("ETCD_CONFIG_PATH")
    os.environ["ETCD_CONFIG_PATH"] = str(etcd_config)  # read by the server process at its start (etcd.config.path)
    try:
        server.start()  # unpacks the binary on first use, writes the config, spawns the process
        _wait_until_serving(server, time.monotonic() + START_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - any failure to start is reported with the server's own words
        server.stop()
        pytest.fail(f"the Milvus test server did not start ({type(e).__name__}: {e})\n{_log_tail(base)}",
                    pytrace=False)
    finally:
        if saved is None:
            del os.environ["ETCD_CONFIG_PATH"]
        else:
            os.environ["ETCD_CONFIG_PATH"] = saved
    yield f"127.0.0.1:{server.listen_port}"
    server.stop()


def _wait_until_serving(server, deadline: float) -> None:
    """Until the health endpoint says OK and a real call succeeds (the proxy takes requests a little after the
    health check passes); an exited server process ends the wait at once."""
    import urllib.request

    from pymilvus import MilvusClient

    last: Exception | str = "no answer yet"
    while time.monotonic() < deadline:
        code = server.server_proc.poll()
        if code is not None:
            raise RuntimeError(f"the server process exited with code {code}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.webservice_port}/healthz", timeout=5) as r:
                if b"OK" in r.read():
                    client = MilvusClient(uri=f"http://127.0.0.1:{server.listen_port}", timeout=10)
                    client.list_collections()
                    client.close()
                    return
        except Exception as e:  # noqa: BLE001 - not serving yet
            last = e
        time.sleep(0.5)
    raise TimeoutError(f"no answer within {START_TIMEOUT_S:.0f} s: {last}")


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
