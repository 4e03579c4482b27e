"""A loopback TCP proxy in front of an IMAP server that can drop a connection mid-FETCH.

No real server can be configured to fail in the middle of a FETCH response. This proxy
forwards bytes both ways. Once armed, it closes both sides after a set number of the
response bytes that follow a client's FETCH command::

    with ImapProxy(dovecot.host, dovecot.port) as proxy:
        proxy.cut_during_fetch(after_bytes=3000, skip_fetches=1)
        reader = ImapReader(dovecot.settings(port=proxy.port))
"""

from __future__ import annotations

import re
import socket
import threading
from types import TracebackType

# A tagged FETCH or UID FETCH command line from the client.
_FETCH_COMMAND = re.compile(rb"^\S+ (?:UID )?FETCH ", re.IGNORECASE | re.MULTILINE)
_CHUNK = 65536


class ImapProxy:
    """A proxy from 127.0.0.1:``port`` to ``target_host``:``target_port``, with one thread per direction."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cuts = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._cut_after: int | None = None
        self._skip_fetches = 0
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []

    def __enter__(self) -> ImapProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        """Close the listener and every open connection, then wait for the threads."""
        if self._listener is not None:
            _close(self._listener)
            self._listener = None
        with self._lock:
            for sock in self._open:
                _close(sock)
        for thread in self._threads:
            thread.join(5)

    def cut_during_fetch(self, after_bytes: int, skip_fetches: int = 0) -> None:
        """Arm one cut: after ``skip_fetches`` FETCH commands pass untouched, forward only
        ``after_bytes`` bytes of the response to the next one, then close both sides."""
        with self._lock:
            self._cut_after = after_bytes
            self._skip_fetches = skip_fetches

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            connection = _Connection(self, client, server)
            with self._lock:
                self._open += [client, server]
            self._spawn(connection.client_to_server)
            self._spawn(connection.server_to_client)

    def _take_armed_fetch(self) -> int | None:
        """Return the byte budget when this FETCH is the one to cut, and disarm."""
        with self._lock:
            if self._cut_after is None:
                return None
            if self._skip_fetches > 0:
                self._skip_fetches -= 1
                return None
            budget, self._cut_after = self._cut_after, None
            return budget


class _Connection:
    """One proxied client connection. ``budget`` is set while a cut is pending."""

    def __init__(self, proxy: ImapProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.budget: int | None = None
        self.lock = threading.Lock()

    def client_to_server(self) -> None:
        while True:
            data = _receive(self.client)
            if not data:
                break
            for _ in _FETCH_COMMAND.finditer(data):
                budget = self.proxy._take_armed_fetch()
                if budget is not None:
                    with self.lock:
                        self.budget = budget
            try:
                self.server.sendall(data)
            except OSError:
                break
        self.close()

    def server_to_client(self) -> None:
        while True:
            data = _receive(self.server)
            if not data:
                break
            with self.lock:
                budget = self.budget
                if budget is not None:
                    data = data[:budget]
                    self.budget = budget - len(data)
            try:
                self.client.sendall(data)
            except OSError:
                break
            if budget is not None and self.budget == 0:
                self.proxy.cuts += 1
                break
        self.close()

    def close(self) -> None:
        for sock in (self.client, self.server):
            _close(sock)


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(_CHUNK)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
