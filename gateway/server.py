"""The HTTP server of ``switchboard run`` and ``switchboard web``: Werkzeug's, with pooled threads.

Werkzeug's threaded server starts a thread for every connection and closes the connection
after one response, so each webhook paid for a new thread. In a sampled profile of a web
process under a storm of Twilio status callbacks, starting those threads took about a
quarter of the process's time. ``PooledWSGIServer`` keeps a connection's thread when the
connection ends and gives it the next connection. A thread that waits ``IDLE_SECONDS``
without one exits, so a burst leaves no threads behind, and the pool has no upper bound:
a Socket.IO WebSocket keeps its thread for as long as it is open, and a bound would let
open WebSockets starve the webhooks.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

from werkzeug.serving import ThreadedWSGIServer

# How long a pooled thread waits for a connection before it exits.
IDLE_SECONDS = 30.0
# How long closing the server waits for the connections in progress, in all.
CLOSE_WAIT_SECONDS = 5.0

_Connection = tuple[socket.socket, Any]


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
        self._closed = False

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
        thread.start()

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

    def server_close(self) -> None:
        """Close the listening socket, end the idle threads and give the busy ones time to finish.

        Busy threads get ``CLOSE_WAIT_SECONDS`` in all. They are daemon threads, as in
        Werkzeug's server, so an open WebSocket does not keep the process alive after that.
        """
        super().server_close()
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, 0
            running = list(self._threads_running)
        for _ in range(idle):
            self._handoff.put(None)
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        for thread in running:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def make_server(host: str, port: int, app: Any) -> PooledWSGIServer:
    """Return a server for ``app`` bound to ``host`` and ``port`` (0 picks a free port)."""
    return PooledWSGIServer(host, port, app)
