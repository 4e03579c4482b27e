"""A lean Socket.IO client for the benchmarks: one WebSocket, handlers run on its reader thread.

python-socketio's client starts a thread for every event it receives. In a benchmark that
receives thousands of events a second on the same cores as the service, those threads cost
more CPU than some of the service's own steps, and so measure the client more than the
service. This client implements only what the benchmarks use of Engine.IO 4 and Socket.IO 5
over a WebSocket: the open packet, the namespace connect with an ``auth`` object, pings and
plain events. Each event is decoded with ``json.loads`` and passed to its handler in order,
on one thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import websocket

Handler = Callable[..., None]


class EventStream:
    """A client that receives the events of the default namespace and calls a handler per event name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._socket: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None

    def on(self, event: str, handler: Handler) -> None:
        self._handlers[event] = handler

    def connect(self, base_url: str, auth: dict[str, Any], timeout: float = 10.0) -> None:
        """Open the WebSocket and join the default namespace. Raise ConnectionError if the server rejects it."""
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self._socket = websocket.create_connection(
            f"{scheme}://{parts.netloc}/socket.io/?EIO=4&transport=websocket", timeout=timeout,
            # websocket-client checks UTF-8 byte by byte in Python unless wsaccel is installed.
            # Decoding the frame checks it too, in C.
            skip_utf8_validation=True,
        )
        opening = self._socket.recv()
        if not opening.startswith("0"):
            raise ConnectionError(f"expected an Engine.IO open packet, got {opening[:80]!r}")
        self._socket.send("40" + json.dumps(auth))
        while True:
            reply = self._socket.recv()
            if reply.startswith("40"):
                break
            if reply.startswith("44"):
                raise ConnectionError(f"the server rejected the connection: {reply[2:]}")
            if not self._handle(reply):
                raise ConnectionError(f"the connection ended while connecting: {reply[:80]!r}")
        self._socket.settimeout(None)
        self._reader = threading.Thread(target=self._read, name="event-stream", daemon=True)
        self._reader.start()

    def disconnect(self) -> None:
        if self._socket is None:
            return
        try:
            self._socket.send("41")
            self._socket.close()
        except (OSError, websocket.WebSocketException):
            pass
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._socket = None

    def _read(self) -> None:
        assert self._socket is not None
        socket = self._socket
        while True:
            try:
                packet = socket.recv()
            except (OSError, websocket.WebSocketException):
                return
            if not packet:
                return
            if not self._handle(packet):
                return

    def _handle(self, packet: str) -> bool:
        """Dispatch an event or reply to a ping. Return False when the server closes the connection."""
        if packet.startswith("42"):
            name, *args = json.loads(packet[2:])
            handler = self._handlers.get(name)
            if handler is not None:
                handler(*args)
        elif packet == "2":
            assert self._socket is not None
            self._socket.send("3")
        elif packet.startswith("1") or packet.startswith("41"):
            return False
        return True
