"""The HTTP server of ``switchboard run`` and ``web``: connection threads are reused and end when idle."""

from __future__ import annotations

import http.client
import threading
import time

import pytest
from flask import Flask

from gateway.server import PooledWSGIServer, make_server


def _thread_app(release: threading.Event | None = None) -> Flask:
    app = Flask(__name__)

    @app.get("/thread")
    def thread() -> str:
        return str(threading.get_ident())

    @app.get("/wait")
    def wait() -> str:
        assert release is not None and release.wait(10)
        return "released"

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("broken view")

    return app


@pytest.fixture
def serve():
    servers: list[PooledWSGIServer] = []

    def start(app: Flask, idle_seconds: float | None = None) -> PooledWSGIServer:
        server = make_server("127.0.0.1", 0, app)
        if idle_seconds is not None:
            server.idle_seconds = idle_seconds
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(server: PooledWSGIServer, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _pool_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "switchboard-http"]


def test_sequential_connections_share_one_thread(serve):
    server = serve(_thread_app())
    idents = set()
    for _ in range(20):
        status, body = _get(server, "/thread")
        assert status == 200
        idents.add(body)
        # The thread is back in the pool once the server counts it idle.
        _wait_for(lambda: server._idle == 1)
    assert len(idents) == 1


def test_a_failing_request_leaves_its_thread_serving(serve):
    server = serve(_thread_app())
    assert _get(server, "/fail")[0] == 500
    _wait_for(lambda: server._idle == 1)
    status, first = _get(server, "/thread")
    _wait_for(lambda: server._idle == 1)
    assert status == 200
    assert _get(server, "/thread") == (200, first)


def test_busy_threads_never_block_new_connections(serve):
    # An open WebSocket holds its thread; more of them than any fixed pool size must not
    # keep a webhook waiting.
    release = threading.Event()
    server = serve(_thread_app(release))
    results: list[tuple[int, str]] = []
    waiting = [threading.Thread(target=lambda: results.append(_get(server, "/wait"))) for _ in range(40)]
    for thread in waiting:
        thread.start()
    _wait_for(lambda: len(_pool_threads()) >= 40)
    assert _get(server, "/thread")[0] == 200
    release.set()
    for thread in waiting:
        thread.join(10)
    assert results == [(200, "released")] * 40


def test_idle_threads_exit(serve):
    before = len(_pool_threads())
    server = serve(_thread_app(), idle_seconds=0.2)
    threads = [threading.Thread(target=_get, args=(server, "/thread")) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    _wait_for(lambda: len(_pool_threads()) == before and server._idle == 0)


def test_closing_ends_the_idle_threads():
    server = make_server("127.0.0.1", 0, _thread_app())
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    before = set(_pool_threads())
    assert _get(server, "/thread")[0] == 200
    _wait_for(lambda: server._idle == 1)
    mine = [thread for thread in _pool_threads() if thread not in before]
    assert len(mine) == 1
    server.shutdown()
    server.server_close()
    mine[0].join(5)
    assert not mine[0].is_alive()
