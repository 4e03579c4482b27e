"""Latency from a signed WhatsApp webhook to the agent's Socket.IO ``message.created``.

Starts the service on a loopback port with a fresh SQLite database, connects an agent's
python-socketio client, then posts signed webhooks one at a time and times each until its
event arrives. The reference is the round trip of ``GET /healthz`` on the same server in the
same run, so the ratio shows what ingestion and the event path add to a bare request.

    .venv/bin/python -m bench.event_latency [--messages 300] [--database-url URL]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import time
from pathlib import Path

import requests
import socketio
from twilio.request_validator import RequestValidator

from gateway import create_app, get_state
from gateway.config import Config
from gateway.database import upgrade_database
from gateway.simulate import build_message_form
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from tests.support.live import LiveServer

AUTH_TOKEN = "bench-auth-token"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="webhooks to time (default 300)")
    parser.add_argument("--database-url", help="an empty database; default a temporary SQLite file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    app = create_app(Config(database_url=url, secret_key="bench", instance_dir=str(workdir)))
    state = get_state(app)
    upgrade_database(state.engine)
    with state.session_factory() as session:
        agent = create_agent(session, "bench@example.com", "Bench", "bench password")
        token = create_api_token(session, agent, "bench")
        channel = add_channel(
            session, "whatsapp", "Bench", "+14155238886",
            {"account_sid": "AC" + "0" * 32, "auth_token": AUTH_TOKEN},
        )
        session.commit()

    events: queue.Queue[str] = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("message.created", lambda data: events.put(data["message"]["text"]))
    http = requests.Session()

    with LiveServer(app) as server:
        client.connect(server.url, auth={"token": token}, transports=["websocket"])
        webhook = f"{server.url}/webhooks/twilio/{channel.id}/messages"
        validator = RequestValidator(AUTH_TOKEN)

        # Warm up connections and caches before timing.
        for _ in range(10):
            http.get(f"{server.url}/healthz", timeout=10)

        reference = []
        for _ in range(args.messages):
            started = time.perf_counter()
            http.get(f"{server.url}/healthz", timeout=10).raise_for_status()
            reference.append(time.perf_counter() - started)

        latencies = []
        for index in range(args.messages):
            text = f"bench message {index}"
            form = build_message_form(channel, f"+1555{index % 50:07d}", text, None)
            signature = validator.compute_signature(webhook, form)
            started = time.perf_counter()
            http.post(webhook, data=form, headers={"X-Twilio-Signature": signature}, timeout=10).raise_for_status()
            while events.get(timeout=10) != text:
                pass
            latencies.append(time.perf_counter() - started)
        client.disconnect()
    state.engine.dispose()

    def describe(values: list[float]) -> str:
        return (
            f"p50 {statistics.median(values) * 1000:.1f} ms, p99 {percentile(values, 0.99) * 1000:.1f} ms, "
            f"max {max(values) * 1000:.1f} ms"
        )

    backend = url.split(":", 1)[0]
    print(f"database: {backend}; messages: {args.messages}")
    print(f"webhook -> message.created: {describe(latencies)}")
    print(f"reference GET /healthz:      {describe(reference)}")
    print(f"ratio (p50 latency / p50 reference): {statistics.median(latencies) / statistics.median(reference):.1f}")


if __name__ == "__main__":
    main()
