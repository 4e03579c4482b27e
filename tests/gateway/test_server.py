"""The HTTP server of ``switchboard run`` and ``web``: connection threads are reused and end when idle."""

from __future__ import annotations

import http.client
import logging
import queue
import socket
import threading
import time
from email.utils import parsedate_to_datetime

import pytest
import requests
import socketio
from flask import Flask, Response, request
from twilio.request_validator import RequestValidator
from werkzeug.serving import WSGIRequestHandler

import gateway.server as server_module
from gateway.server import MAX_BUFFERED_BODY_BYTES, PooledWSGIServer, make_server
from gateway.simulate import build_message_form
from tests.conftest import TWILIO_AUTH_TOKEN
from tests.support.live import LiveServer


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

    def start(app, idle_seconds: float | None = None) -> PooledWSGIServer:
        server = make_server("127.0.0.1", 0, app)
        if idle_seconds is not None:
            server.idle_seconds = idle_seconds
        # Polled every 50 ms, so that shutting down at the end of each test is quick.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
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


def test_thread_serves_on_after_failing_request(serve):
    server = serve(_thread_app())
    assert _get(server, "/fail")[0] == 500
    _wait_for(lambda: server._idle == 1)
    status, first = _get(server, "/thread")
    _wait_for(lambda: server._idle == 1)
    assert status == 200
    assert _get(server, "/thread") == (200, first)


def test_busy_threads_never_block_new_connections(serve):
    # An open WebSocket keeps its thread, so more of them than any fixed pool size must not
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


# --- keep-alive --------------------------------------------------------------------------------


def _keep_alive_app() -> Flask:
    app = _thread_app()

    @app.post("/echo")
    def echo() -> str:
        return request.get_data(as_text=True)

    @app.post("/ignore")
    def ignore() -> tuple[str, int]:
        return "not read", 403  # leaves the body unread, as a rejected webhook does

    @app.get("/stream")
    def stream() -> Response:
        return Response((part for part in ("one ", "two")), mimetype="text/plain")

    return app


def _raw_exchange(server: PooledWSGIServer, data: bytes, responses: int) -> list[bytes]:
    """Send ``data`` on one connection and return the raw text of ``responses`` responses."""
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(data)
        reader = connection.makefile("rb")
        return [_read_response(reader) for _ in range(responses)]


def _read_response(reader) -> bytes:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        assert line, "connection closed before a whole response"
        head += line
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    if lengths:
        return head + reader.read(int(lengths[0].split(b":")[1]))
    if b"transfer-encoding: chunked" in head.lower():
        body = b""
        while (size := int(reader.readline().strip(), 16)) > 0:
            body += reader.read(size)
            reader.readline()
        reader.readline()
        return head + body
    return head


def test_connection_stays_open_between_requests(serve):
    server = serve(_keep_alive_app())
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    connection.request("POST", "/echo", body="first", headers={"Content-Type": "text/plain"})
    first = connection.getresponse()
    assert first.read() == b"first"
    assert first.getheader("Connection") is None
    socket_used = connection.sock
    connection.request("POST", "/echo", body="second", headers={"Content-Type": "text/plain"})
    assert connection.getresponse().read() == b"second"
    assert connection.sock is socket_used
    connection.close()


def test_unread_body_does_not_leak_into_next_request(serve):
    server = serve(_keep_alive_app())
    request_text = (
        b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\n\r\nGET /thread HTTP/1.1\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnext"
    )
    rejected, echoed = _raw_exchange(server, request_text, 2)
    assert rejected.startswith(b"HTTP/1.1 403")
    assert echoed.startswith(b"HTTP/1.1 200")
    assert echoed.endswith(b"\r\n\r\nnext")


def test_pipelined_requests_all_answered(serve):
    server = serve(_keep_alive_app())
    one = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
    two = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
    responses = _raw_exchange(server, one + two, 2)
    assert [response.rsplit(b"\r\n\r\n", 1)[1] for response in responses] == [b"one", b"two"]


def test_streamed_response_is_chunked(serve):
    server = serve(_keep_alive_app())
    streamed, echoed = _raw_exchange(
        server, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok", 2,
    )
    assert b"transfer-encoding: chunked" in streamed.lower()
    assert streamed.endswith(b"\r\n\r\none two")
    assert echoed.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize(
    "head",
    [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: TE, close\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close \r\nContent-Length: 3\r\n\r\nabc",
    ],
    ids=["chunked-request", "http-1.0", "client-close", "two-lengths", "close-among-options", "close-with-space"],
)
def test_other_requests_close_the_connection(serve, head):
    server = serve(_keep_alive_app())
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(head)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.") == 1
    assert b"connection: close" in received.lower()


def test_large_body_served_then_closed(serve):
    server = serve(_keep_alive_app())
    body = "x" * (MAX_BUFFERED_BODY_BYTES + 1)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    connection.request("POST", "/echo", body=body, headers={"Content-Type": "text/plain"})
    response = connection.getresponse()
    assert response.read() == body.encode()
    assert response.getheader("Connection") == "close"
    connection.close()


def test_app_error_answers_500_and_closes(serve):
    def broken_app(environ, start_response):
        raise RuntimeError("broken app")

    server = serve(broken_app)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 500
    assert response.getheader("Connection") == "close"
    connection.close()


def test_error_mid_body_closes_the_connection(serve):
    def truncating_app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        yield b"half"
        raise RuntimeError("broken stream")

    server = serve(truncating_app)
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    assert received.endswith(b"\r\n\r\nhalf")


def test_idle_connection_closed_after_keep_alive(serve, monkeypatch):
    monkeypatch.setattr(server_module, "KEEP_ALIVE_SECONDS", 0.2)
    server = serve(_keep_alive_app())
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(b"GET /thread HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = connection.makefile("rb")
        assert _read_response(reader).startswith(b"HTTP/1.1 200")
        # The server closes the idle connection, so the next read returns nothing.
        assert reader.read() == b""
    _wait_for(lambda: server._idle == 1)


def test_request_log_follows_its_logger_level(serve, monkeypatch, caplog):
    server = serve(_keep_alive_app())
    formatted = []
    original = WSGIRequestHandler.log_request
    monkeypatch.setattr(WSGIRequestHandler, "log_request",
                        lambda handler, *args: formatted.append(args) or original(handler, *args))

    caplog.set_level(logging.WARNING, logger="werkzeug")
    assert _get(server, "/thread")[0] == 200
    assert formatted == []

    caplog.set_level(logging.INFO, logger="werkzeug")
    assert _get(server, "/thread")[0] == 200
    assert len(formatted) == 1
    assert any('"GET /thread HTTP/1.1" 200' in record.getMessage() for record in caplog.records)


# --- hostile clients -----------------------------------------------------------------------------


def _receive_until_closed(server: PooledWSGIServer, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(data)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "head",
    [
        # A proxy that tolerates the space uses this Content-Length and forwards the GET as
        # body. So the server must not serve the GET as a request of its own.
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 33\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\n Host: x\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["space-before-colon", "spaced-transfer-encoding", "first-line-folded"],
)
def test_malformed_header_line_rejected(serve, head):
    server = serve(_keep_alive_app())
    received = _receive_until_closed(server, head + b"GET /thread HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400")
    assert received.count(b"HTTP/1.") == 1


@pytest.mark.parametrize("length", [b"\xb2", b"9" * 5000], ids=["superscript-two", "5000-digits"])
def test_odd_content_length_answered_and_closed(serve, length):
    server = serve(_keep_alive_app())
    received = _receive_until_closed(
        server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\nab",
    )
    assert received.startswith(b"HTTP/1.1 ")
    assert b"connection: close" in received.lower()
def test_body_beyond_content_length_is_not_sent(serve):
    # A file that grows while send_file streams it yields more than its Content-Length. The
    # client would read the extra bytes as the start of the next response.
    def overlong_app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])
        return [b"12345", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfake"]

    server = serve(overlong_app)
    received = _receive_until_closed(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received.endswith(b"\r\n\r\n12345")
    assert b"fake" not in received


def test_stalled_request_times_out(serve, monkeypatch):
    monkeypatch.setattr(server_module, "REQUEST_READ_SECONDS", 0.2)
    server = serve(_keep_alive_app())
    for stalled in (b"GET /thread HTTP/1.1\r\nHost: x\r\n", b"POST /echo HTTP/1.1\r\nContent-Length: 9\r\n\r\nhalf"):
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
            connection.sendall(stalled)
            # The server gives up on the request and closes the connection.
            assert connection.recv(65536) == b""


def _large_app(size: int) -> Flask:
    """Return the thread app with ``/large``, a response of ``size`` bytes."""
    app = _thread_app()
    app.add_url_rule("/large", "large", lambda: Response(b"x" * size, mimetype="application/octet-stream"))
    return app

def test_unread_response_times_out(serve, monkeypatch):
    monkeypatch.setattr(server_module, "RESPONSE_WRITE_SECONDS", 0.2)
    size = 64 * 1024 * 1024
    server = serve(_large_app(size))
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        # Nothing is read until the thread gave up on its write and waits for the next connection.
        _wait_for(lambda: server._idle == 1)
        received = 0
        while chunk := connection.recv(1024 * 1024):
            received += len(chunk)
    assert 0 < received < size


@pytest.mark.parametrize("request_line", [
    b"GET /large HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /large HTTP/1.0\r\n\r\n",
])
def test_unread_response_times_out_when_closing(serve, monkeypatch, request_line):
    # A request that ends its connection is served by Werkzeug's handler, and a client that
    # asks for that and never reads must not keep the thread either.
    monkeypatch.setattr(server_module, "RESPONSE_WRITE_SECONDS", 0.2)
    size = 64 * 1024 * 1024
    server = serve(_large_app(size))
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(request_line)
        # The thread gives up on its write and waits for the next connection.
        _wait_for(lambda: server._idle == 1)
        received = 0
        while chunk := connection.recv(1024 * 1024):
            received += len(chunk)
    assert 0 < received < size


def _read_slowly(connection: socket.socket, size: int, piece: int, pause: float) -> int:
    """Read a response's head and then up to ``size`` bytes of body, or until the server closes,
    in pieces of ``piece`` bytes with ``pause`` seconds between them. Returns the body's length."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(piece)
        if not chunk:
            return 0
        head += chunk
    received = len(head.partition(b"\r\n\r\n")[2])
    while received < size:
        time.sleep(pause)
        chunk = connection.recv(piece)
        if not chunk:
            break
        received += len(chunk)
    return received


@pytest.mark.parametrize("connection_header", [b"", b"Connection: close\r\n"])
def test_slow_reader_gets_whole_response(serve, monkeypatch, connection_header):
    monkeypatch.setattr(server_module, "RESPONSE_WRITE_SECONDS", 1.0)
    size = 24 * 1024 * 1024
    server = serve(_large_app(size))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
        # A small receive buffer, so that the body takes several times the write timeout to arrive.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        connection.settimeout(10)
        connection.connect(("127.0.0.1", server.server_port))
        connection.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n" + connection_header + b"\r\n")
        started = time.monotonic()
        received = _read_slowly(connection, size, 256 * 1024, 0.02)
        elapsed = time.monotonic() - started
    assert elapsed > 2.0, "the response arrived too fast to prove anything"
    assert received == size, f"cut off after {received} of {size} bytes in {elapsed:.1f} s"


def test_streamed_pauses_do_not_time_out(serve, monkeypatch):
    monkeypatch.setattr(server_module, "RESPONSE_WRITE_SECONDS", 0.2)
    app = _thread_app()

    def paused():
        def chunks():
            for index in range(3):
                time.sleep(0.5)
                yield b"part %d\n" % index
        return Response(chunks(), mimetype="text/plain")

    app.add_url_rule("/paused", "paused", paused)
    server = serve(app)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        connection.request("GET", "/paused")
        response = connection.getresponse()
        assert response.read() == b"part 0\npart 1\npart 2\n"
        # The connection stays open for the next request.
        connection.request("GET", "/thread")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_closing_ends_idle_connections_at_once():
    server = make_server("127.0.0.1", 0, _keep_alive_app())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        connection.sendall(b"GET /thread HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = connection.makefile("rb")
        assert _read_response(reader).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        server.shutdown()
        server.server_close()
        assert time.monotonic() - started < 1
        assert reader.read() == b""


def test_second_close_does_not_wait_again(monkeypatch):
    # Werkzeug's serve_forever closes the server when it returns, and switchboard run closes
    # it once more. With an open WebSocket, each close waited CLOSE_WAIT_SECONDS.
    monkeypatch.setattr(server_module, "CLOSE_WAIT_SECONDS", 0.5)
    release = threading.Event()
    server = make_server("127.0.0.1", 0, _thread_app(release))
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    busy = threading.Thread(target=_get, args=(server, "/wait"), daemon=True)
    busy.start()
    _wait_for(lambda: server._threads_running)
    server.shutdown()
    serving.join(5)
    started = time.monotonic()
    server.server_close()
    assert time.monotonic() - started < 0.25
    release.set()


def test_failed_thread_start_leaves_close_working(serve, monkeypatch):
    server = serve(_thread_app())

    class UnstartableThread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")  # as at the process's thread limit

    monkeypatch.setattr(server_module.threading, "Thread", UnstartableThread)
    with pytest.raises(ConnectionError):
        _get(server, "/thread")
    monkeypatch.undo()
    assert _get(server, "/thread")[0] == 200
    server.shutdown()
    server.server_close()


def test_unused_connection_closed_without_error(serve, monkeypatch, caplog):
    monkeypatch.setattr(server_module, "KEEP_ALIVE_SECONDS", 0.2)
    server = serve(_keep_alive_app())
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as connection:
        assert connection.recv(65536) == b""
    _wait_for(lambda: server._idle == 1)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_http_1_0_response_not_chunked(serve):
    server = serve(_keep_alive_app())
    received = _receive_until_closed(server, b"GET /stream HTTP/1.0\r\n\r\n")
    assert received.startswith(b"HTTP/1.0 200")
    assert b"transfer-encoding" not in received.lower()
    assert received.endswith(b"\r\n\r\none two")


def test_date_header_is_current(serve):
    server = serve(_keep_alive_app())
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    sent = []
    for _ in range(2):
        connection.request("GET", "/thread")
        response = connection.getresponse()
        response.read()
        sent.append(parsedate_to_datetime(response.getheader("Date")).timestamp())
        assert abs(sent[-1] - time.time()) <= 1
        time.sleep(1.1)
    connection.close()
    assert sent[1] > sent[0]


def test_multipart_upload_kept_alive(serve):
    # The header parser reports defects for a multipart Content-Type, because it never reads
    # the body. Those defects are no reason to reject the request.
    app = _keep_alive_app()

    @app.post("/upload")
    def upload() -> str:
        return request.files["file"].read().decode()

    server = serve(app)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n--b--\r\n'
    connection.request("POST", "/upload", body=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == b"hello"
    connection.close()


def test_closing_ends_open_websockets(app, api_token):
    # A WebSocket never finishes on its own, so closing the server ends it instead of
    # waiting for it. The browser then reconnects and replays what it missed.
    live = LiveServer(app).start()
    client = socketio.Client(reconnection=False)
    disconnected = threading.Event()
    client.on("disconnect", disconnected.set)
    client.connect(live.url, auth={"token": api_token}, transports=["websocket"])
    try:
        assert client.transport() == "websocket"
        live.stop()
        assert disconnected.wait(10)
        assert live._server._threads_running == set()
    finally:
        client.disconnect()


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_quiet_socketio_connection_stays_open(live_server, api_token, whatsapp_channel, monkeypatch, transport):
    monkeypatch.setattr(server_module, "RESPONSE_WRITE_SECONDS", 0.2)
    events: queue.Queue[dict] = queue.Queue()
    disconnected = threading.Event()
    client = socketio.Client(reconnection=False)
    client.on("message.created", events.put)
    client.on("disconnect", disconnected.set)
    client.connect(live_server.url, auth={"token": api_token}, transports=[transport])
    try:
        assert client.transport() == transport
        # Quiet for several times the write timeout: a long poll waits in the app meanwhile.
        assert not disconnected.wait(1.5)

        form = build_message_form(whatsapp_channel, "+15551230000", "after a quiet while", None)
        url = f"{live_server.url}/webhooks/twilio/{whatsapp_channel.id}/messages"
        signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
        assert requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10).status_code == 200
        event = events.get(timeout=10)
        assert not disconnected.is_set()
    finally:
        client.disconnect()
    assert event["message"]["text"] == "after a quiet while"
