"""The HTTP server of ``switchboard run`` and ``switchboard web``: Werkzeug's, with pooled
threads and keep-alive connections.

Werkzeug's threaded server starts a thread for every connection and closes the connection
after one response, so each webhook paid for a new connection and a new thread. In a sampled
profile of a web process under a storm of Twilio status callbacks, starting those threads
took about a quarter of the process's time, and accepting the connections about as much.

``PooledWSGIServer`` keeps a connection's thread when the connection ends and gives it the
next connection. A thread that waits ``IDLE_SECONDS`` without one exits, so a burst leaves
no threads behind. The pool has no upper bound, because a Socket.IO WebSocket keeps its
thread for as long as it is open, and a bound would let open WebSockets starve the webhooks.

``KeepAliveRequestHandler`` serves further requests on an HTTP/1.1 connection, as a proxy
with upstream keep-alive or a webhook sender that reuses its connections expects. It does
so only for requests whose body it can read whole first (see ``_can_keep_alive``). Any
other request, a WebSocket upgrade among them, goes through Werkzeug's handler unchanged,
which closes the connection after the response.
"""

from __future__ import annotations

import email.errors
import io
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

log = logging.getLogger(__name__)
# Werkzeug's request log, one line per request at INFO.
_REQUEST_LOG = logging.getLogger("werkzeug")

# How long a pooled thread waits for a connection before it exits.
IDLE_SECONDS = 30.0
# How long closing the server waits for the connections in progress, in all.
CLOSE_WAIT_SECONDS = 5.0
# How long an open connection may wait for its next request.
KEEP_ALIVE_SECONDS = 15.0
# How long each read of a request's head or buffered body may wait for the client.
REQUEST_READ_SECONDS = 15.0
# How long a write of a response may wait for the client to read more of it. A WebSocket has no such limit.
RESPONSE_WRITE_SECONDS = 60.0
# The largest request body read before the app runs. A larger one closes its connection.
MAX_BUFFERED_BODY_BYTES = 64 * 1024
# Request headers that make Werkzeug's handler serve the request and close the connection.
_CLOSING_HEADERS = ("Upgrade", "Transfer-Encoding", "Expect")

_Connection = tuple[socket.socket, Any]
# Defects that the header parser reports for a line that is no header, and for a folded first line.
_MALFORMED_HEADER_DEFECTS = (
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
)


class _SocketWriter(io.BufferedIOBase):
    """The response writer of a connection, on which the socket's timeout bounds each wait
    for the client to make room, not the whole of a write.

    ``socket.sendall``, which the standard handler's writer calls, applies its timeout to
    all of the data (Python 3.5 and later), so it cut off a client that read a large body
    slowly but steadily.
    """

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with memoryview(data) as view, view.cast("B") as remaining:
            size = remaining.nbytes
            while remaining:
                remaining = remaining[self._connection.send(remaining):]
        return size

    def fileno(self) -> int:
        return self._connection.fileno()


class KeepAliveRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler, which keeps HTTP/1.1 connections open between requests."""

    protocol_version = "HTTP/1.1"
    # The second and text of the last Date header sent.
    _date_header: tuple[int, str] = (0, "")

    def setup(self) -> None:
        super().setup()
        # A response goes out as two writes, its head and then its body. On an open connection
        # Nagle's algorithm held the body back until the client's delayed ACK of the head,
        # about 40 ms per response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.wfile = _SocketWriter(self.connection)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # Formatting the Date header took about 3% of a web process's time in a storm of
        # callbacks, and it changes once a second.
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second = int(time.time())
        cached_second, text = KeepAliveRequestHandler._date_header
        if second != cached_second:
            text = super().date_time_string(second)
            # One assignment of a tuple, so that other threads read a consistent pair.
            KeepAliveRequestHandler._date_header = (second, text)
        return text

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Werkzeug formats the line before the logger's level is checked, and the service
        # turns its request log off (gateway.cli), which made that about 4% of a web process's time.
        if _REQUEST_LOG.isEnabledFor(logging.INFO):
            super().log_request(code, size)

    def handle_one_request(self) -> None:
        # This wait covers the first request too, because browsers open connections ahead of
        # use. Those that stay unused then close quietly, without a "Request timed out" error.
        if not self._next_request_arrives():
            self.close_connection = True
            return
        # Without a timeout a client that stops sending mid-request would keep this thread for
        # ever. ``run_wsgi`` lifts it before the app runs, which may serve a quiet WebSocket.
        # NOTE: it bounds each read, so a client that sends a byte now and then is not cut off.
        self.connection.settimeout(REQUEST_READ_SECONDS)
        try:
            super().handle_one_request()
        finally:
            self.connection.settimeout(None)

    def _next_request_arrives(self) -> bool:
        """Wait up to ``KEEP_ALIVE_SECONDS`` for the next request, or return False on a timeout or a close."""
        if not self.server.start_keep_alive_wait(self.connection):
            return False
        # The timeout applies only to this wait: a WebSocket later served on the connection
        # must not time out while it is quiet.
        self.connection.settimeout(KEEP_ALIVE_SECONDS)
        try:
            return bool(self.rfile.peek(1))
        except (TimeoutError, ConnectionError):
            return False
        finally:
            self.connection.settimeout(None)
            self.server.end_keep_alive_wait(self.connection)

    def _can_keep_alive(self) -> bool:
        """Tell whether this request can be served with the connection kept open afterwards.

        The request's whole body must be read before the app runs, because a body that the
        app leaves unread would be taken for the next request. So the body needs exactly one
        valid Content-Length of at most ``MAX_BUFFERED_BODY_BYTES``, and no chunked encoding.
        """
        if self.close_connection or self.request_version != "HTTP/1.1" or self.server.ssl_context is not None:
            return False
        if any(header in self.headers for header in _CLOSING_HEADERS):
            return False
        # http.server closes only on a Connection value of exactly "close", but the header is a
        # list of options, such as "TE, close".
        connection_options = ",".join(self.headers.get_all("Connection") or ()).split(",")
        if "close" in (option.strip().lower() for option in connection_options):
            return False
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return True
        # ``isdigit`` alone passes "²", and ``int`` raises on more than 4300 digits by default.
        length = lengths[0]
        return (
            len(lengths) == 1 and length.isascii() and length.isdigit() and len(length) <= 20
            and int(length) <= MAX_BUFFERED_BODY_BYTES
        )

    def run_wsgi(self) -> None:
        if any(isinstance(defect, _MALFORMED_HEADER_DEFECTS) for defect in self.headers.defects):
            # The header parser drops every line from a malformed one on, a Content-Length or
            # Transfer-Encoding among them, which a proxy in front may have used. Other defects
            # concern the body, which the parser never reads, such as a multipart Content-Type's.
            self.send_error(400, "Malformed header line")
            return
        if not self._can_keep_alive():
            # Werkzeug's handler closes the connection after its response.
            if self.request_version in ("HTTP/0.9", "HTTP/1.0"):
                # Werkzeug chunks a response without a Content-Length whenever the handler speaks
                # HTTP/1.1, but HTTP/1.0 has no chunked encoding. There the body ends at the close.
                self.protocol_version = "HTTP/1.0"
            if "Upgrade" not in self.headers:
                # A client that stops reading is disconnected as on a kept-alive connection. The
                # app reads the body itself here, so each of its reads may wait as long.
                self.connection.settimeout(RESPONSE_WRITE_SECONDS)
                super().run_wsgi()
                return
            # A WebSocket may stay quiet for as long as it is open.
            self.connection.settimeout(None)
            # A WebSocket stays open until the client leaves, so closing the server ends it.
            self.server.add_websocket(self.connection)
            try:
                super().run_wsgi()
            finally:
                self.server.remove_websocket(self.connection)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True  # the client closed before sending its whole body
            return
        # Without a timeout a client that stops reading would keep this thread for ever, once
        # the socket's buffers are full. The timeout bounds each wait for the client to take more.
        self.connection.settimeout(RESPONSE_WRITE_SECONDS)
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        self._call_app(environ)

    def _call_app(self, environ: dict[str, Any]) -> None:
        """Run the app and write its response, framed so that the connection can stay open."""
        response: dict[str, Any] = {}
        headers_sent = False

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info and headers_sent:
                raise exc_info[1].with_traceback(exc_info[2])
            response["status"], response["headers"] = status, headers
            return write_chunk

        def write_chunk(data: bytes) -> None:
            nonlocal headers_sent
            if not headers_sent:
                headers_sent = True
                self._send_head(response["status"], response["headers"])
            self._write_body(data)

        chunks: Iterable[bytes] = ()
        try:
            chunks = self.server.app(environ, start_response)
            for data in chunks:
                write_chunk(data)
            if not headers_sent:
                write_chunk(b"")
            self._end_body()
        except (ConnectionError, socket.timeout) as error:
            self.close_connection = True
            self.connection_dropped(error, environ)
        except Exception:
            self.close_connection = True
            log.exception("request %s %s failed in the app", self.command, self.path)
            if not headers_sent:
                self._send_server_error()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        names = set()
        for name, value in headers:
            self.send_header(name, value)
            names.add(name.lower())
        self._body_allowed = self.command != "HEAD" and code >= 200 and code not in (204, 304)
        self._chunked = self._body_allowed and "content-length" not in names
        self._remaining: int | None = None
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif "content-length" in names and self._body_allowed:
            self._remaining = int(dict((name.lower(), value) for name, value in headers)["content-length"])
        self.end_headers()

    def _write_body(self, data: bytes) -> None:
        if not data or not self._body_allowed:
            return
        if self._chunked:
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
            return
        if self._remaining is not None:
            if len(data) > self._remaining:
                # The client would read the bytes beyond the Content-Length as the next response.
                log.warning("request %s %s: the app sent more than its Content-Length", self.command, self.path)
                data = data[: self._remaining]
                self.close_connection = True
            self._remaining -= len(data)
        self.wfile.write(data)

    def _end_body(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
        elif self._remaining:
            # The app sent less than its Content-Length, so the client cannot find the end.
            self.close_connection = True
        self.wfile.flush()

    def _send_server_error(self) -> None:
        body = b"Internal Server Error"
        self.send_response(500)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class PooledWSGIServer(ThreadedWSGIServer):
    """Werkzeug's threaded WSGI server, which reuses the threads of ended connections."""

    idle_seconds = IDLE_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handoff: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()
        self._pool_lock = threading.Lock()
        # Threads waiting on the handoff queue that no queued connection is meant for.
        self._idle = 0
        self._threads_running: set[threading.Thread] = set()
        # Connections whose handler waits for their next request.
        self._keep_alive_waits: set[socket.socket] = set()
        # Connections upgraded to a WebSocket.
        self._websockets: set[socket.socket] = set()
        self._closed = False
        self._close_deadline: float | None = None

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._pool_lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1
        if reuse:
            self._handoff.put((request, client_address))
            return
        thread = threading.Thread(
            target=self._serve_connections, args=(request, client_address),
            name="switchboard-http", daemon=True,
        )
        with self._pool_lock:
            self._threads_running.add(thread)
        try:
            thread.start()
        except BaseException:
            # Starting fails at the process's thread limit, and closing would fail on a thread never started.
            with self._pool_lock:
                self._threads_running.discard(thread)
            raise

    def _serve_connections(self, request: socket.socket, client_address: Any) -> None:
        try:
            while True:
                # Handles the connection, reports errors and closes the socket.
                self.process_request_thread(request, client_address)
                connection = self._next_connection()
                if connection is None:
                    return
                request, client_address = connection
        finally:
            with self._pool_lock:
                self._threads_running.discard(threading.current_thread())

    def _next_connection(self) -> _Connection | None:
        """Wait for the next connection, or return None when this thread should exit."""
        with self._pool_lock:
            if self._closed:
                return None
            self._idle += 1
        while True:
            try:
                return self._handoff.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._pool_lock:
                    # ``_idle`` still counts this thread unless ``process_request`` has just
                    # claimed it, in which case a connection is on its way to the queue.
                    if self._idle > 0:
                        self._idle -= 1
                        return None

    def start_keep_alive_wait(self, connection: socket.socket) -> bool:
        """Record that ``connection`` waits for its next request, or return False once closing."""
        with self._pool_lock:
            if self._closed:
                return False
            self._keep_alive_waits.add(connection)
            return True

    def end_keep_alive_wait(self, connection: socket.socket) -> None:
        with self._pool_lock:
            self._keep_alive_waits.discard(connection)

    def add_websocket(self, connection: socket.socket) -> None:
        with self._pool_lock:
            self._websockets.add(connection)

    def remove_websocket(self, connection: socket.socket) -> None:
        with self._pool_lock:
            self._websockets.discard(connection)

    def server_close(self) -> None:
        """Close the listening socket, end the idle threads and give the busy ones time to finish.

        Connections waiting for their next request close at once, and so do WebSockets: the
        browsers reconnect and replay what they missed. Busy threads get ``CLOSE_WAIT_SECONDS``
        in all. They are daemon threads, as in Werkzeug's server, so a thread still busy does
        not keep the process alive after that. Werkzeug's ``serve_forever`` closes the server
        when it returns, so a second close waits only until the same deadline.
        """
        super().server_close()
        with self._pool_lock:
            self._closed = True
            if self._close_deadline is None:
                self._close_deadline = time.monotonic() + CLOSE_WAIT_SECONDS
            deadline = self._close_deadline
            idle, self._idle = self._idle, 0
            running = list(self._threads_running)
            waiting = list(self._keep_alive_waits)
            websockets = list(self._websockets)
        for _ in range(idle):
            self._handoff.put(None)
        for connection in waiting:
            try:
                # Ends the handler's wait as if the client had closed.
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # the handler has closed it meanwhile
        for connection in websockets:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the WebSocket has closed meanwhile
        for thread in running:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def make_server(host: str, port: int, app: Any) -> PooledWSGIServer:
    """Return a server for ``app`` bound to ``host`` and ``port`` (0 picks a free port)."""
    return PooledWSGIServer(host, port, app, handler=KeepAliveRequestHandler)
