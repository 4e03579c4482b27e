"""The Switchboard app served on a loopback port in a background thread."""

from __future__ import annotations

import threading
import time

from flask import Flask
from gateway import get_state
from gateway.server import make_server
from gateway.webhook_worker import WebhookWorker
from inbox.webhook_queue import count_pending


class LiveServer:
    """Serves ``app`` (HTTP and Socket.IO) on 127.0.0.1 until ``stop``, with the webhook
    worker that ingests the webhooks it acknowledges, as ``switchboard run`` has."""

    def __init__(self, app: Flask, port: int = 0):
        self.app = app
        self._server = make_server("127.0.0.1", port, app)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            # Polled every 50 ms, so that stopping the server at the end of each test is quick.
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-server", daemon=True,
        )
        self._stop_worker = threading.Event()
        self._webhook_worker = WebhookWorker(get_state(app), self._stop_worker)
        self._worker_thread = threading.Thread(target=self._webhook_worker.run, name="live-webhooks", daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        self._worker_thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()
        self._stop_worker.set()
        self._webhook_worker.wakeup.set()
        self._worker_thread.join(10)

    def wait_until_ingested(self, timeout: float = 15.0) -> None:
        """Wait until the webhook worker has stored every webhook the server acknowledged."""
        state = get_state(self.app)
        deadline = time.monotonic() + timeout
        while True:
            with state.session_factory() as session:
                if count_pending(session) == 0:
                    return
            assert time.monotonic() < deadline, f"webhooks still pending after {timeout} s"
            self._stop_worker.wait(0.02)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
