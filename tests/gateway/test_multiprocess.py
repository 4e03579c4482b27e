"""Events caused in one process reach Socket.IO clients of another through Redis."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import socketio

from channels.whatsapp import parse_inbound
from gateway import create_app, get_state
from gateway.simulate import build_message_form
from inbox.ingest import ingest_message
from tests.support.components import require

REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def web_process(config, agent, whatsapp_channel):
    require(_redis_available(), "Redis is not reachable at 127.0.0.1:6379")
    port = _free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": config.database_url,
        "SWITCHBOARD_SECRET_KEY": config.secret_key,
        "SWITCHBOARD_REDIS_URL": REDIS_URL,
        "SWITCHBOARD_INSTANCE_DIR": config.instance_dir,
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "web", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                process.kill()
                pytest.fail(f"switchboard web did not start: {output}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def test_event_from_another_process_reaches_client(config, web_process, api_token, whatsapp_channel):
    events: queue.Queue = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("message.created", lambda data: events.put(data))
    client.connect(web_process, auth={"token": api_token}, transports=["websocket"])
    # This process plays a worker: it shares the database and the Redis queue, not the server.
    worker_app = create_app(replace(config, redis_url=REDIS_URL))
    state = get_state(worker_app)
    try:
        form = build_message_form(whatsapp_channel, "+15551230000", "from the worker side", None)
        with state.session_factory() as session:
            ingest_message(session, whatsapp_channel.id, parse_inbound(form, b"raw=from-worker"))

        received = events.get(timeout=10)
    finally:
        client.disconnect()
        state.engine.dispose()

    assert received["message"]["text"] == "from the worker side"
    assert received["event_id"] >= 1
