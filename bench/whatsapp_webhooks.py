"""Throughput and acknowledgement time of the Twilio webhook endpoints.

Starts the service in a process of its own on a loopback port with a fresh database, as
``switchboard run`` does: Werkzeug's threaded server and the workers, the webhook worker
among them. This process drives it, with an agent's python-socketio client, so that the
load generator does not share the server's interpreter lock. It measures, in one run:

1. reference: a bare Flask POST endpoint on the same server (it reads the form and answers
   200), posted by the same concurrent clients;
2. inbound: signed incoming-message webhooks end to end (signature check, store as a
   pending payload, answer; then the webhook worker's ingestion and commit, and Socket.IO
   ``message.created`` received by the client), in messages per second;
3. acknowledgement: signed webhooks sent at a fixed rate (default 320 per second, open
   loop), each timed from its scheduled start to Twilio's 200, so a slow server cannot hide
   its queue (no coordinated omission); the run then waits until every one of them has
   reached the client, so their ingestion does not overlap the storm;
4. status storm: delivery callbacks (sent, delivered, read, each posted twice) for many
   sent messages, shuffled and posted concurrently, in callbacks per second, followed by a
   check that every message ends ``read`` and that no ``message.updated`` event moved a
   message back.

    .venv/bin/python -m bench.whatsapp_webhooks [--messages 2000] [--clients 8] \\
        [--rate 320] [--seconds 10] [--callbacks-for 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import queue
import random
import secrets
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import socketio
from flask import Flask, request
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

import gateway.auth
from channels.delivery import STATUS_ORDER
from channels.types import DeliveryState
from gateway import create_app, get_state
from gateway.config import Config
from gateway.database import upgrade_database
from gateway.simulate import build_message_form
from gateway.workers import Workers
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from inbox.models import Conversation, Direction, Message, utcnow

AUTH_TOKEN = "bench-auth-token"
BARE_ENDPOINT = "bench_bare"
CALLBACK_STATES = ("sent", "delivered", "read")


def serve(config: Config, ports: multiprocessing.Queue) -> None:
    """Serve the app with the bare endpoint and the workers on a free loopback port, as
    ``switchboard run`` does; put the port on ``ports``."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(config)
    add_bare_endpoint(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    Workers(get_state(app)).start()
    ports.put(server.server_port)
    server.serve_forever()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def add_bare_endpoint(app: Flask) -> None:
    """Add a POST endpoint that only reads the form, outside the login guard."""

    def bare() -> tuple[str, int]:
        request.form.get("MessageSid")
        return "", 200

    app.add_url_rule("/bench/bare", BARE_ENDPOINT, bare, methods=["POST"])
    # The guard lets public endpoints through; the bench's own endpoint is one.
    gateway.auth.PUBLIC_ENDPOINTS = gateway.auth.PUBLIC_ENDPOINTS | {BARE_ENDPOINT}


class Poster:
    """Posts forms from a pool of threads, each with its own keep-alive session."""

    def __init__(self, clients: int):
        self.pool = ThreadPoolExecutor(clients)
        self.local = threading.local()

    def post(self, url: str, form: dict[str, str], signature: str | None = None) -> float:
        """Post one form and return the seconds it took; raise on a status other than 2xx."""
        http = getattr(self.local, "http", None)
        if http is None:
            http = self.local.http = requests.Session()
        headers = {"X-Twilio-Signature": signature} if signature else {}
        started = time.perf_counter()
        response = http.post(url, data=form, headers=headers, timeout=30)
        elapsed = time.perf_counter() - started
        if response.status_code // 100 != 2:
            raise RuntimeError(f"{url} returned HTTP {response.status_code}: {response.text[:200]}")
        return elapsed

    def run_all(self, jobs: Iterable[Callable[[], object]]) -> list[object]:
        return [future.result() for future in [self.pool.submit(job) for job in jobs]]

    def close(self) -> None:
        self.pool.shutdown()


def signed(validator: RequestValidator, url: str, form: dict[str, str]) -> tuple[str, dict[str, str], str]:
    return url, form, validator.compute_signature(url, form)


def measure_bare(poster: Poster, base_url: str, count: int) -> float:
    url = f"{base_url}/bench/bare"
    forms = [{"MessageSid": "SM" + secrets.token_hex(16), "Body": "hello"} for _ in range(count)]
    started = time.perf_counter()
    poster.run_all(lambda form=form: poster.post(url, form) for form in forms)
    return count / (time.perf_counter() - started)


def measure_inbound(poster: Poster, validator, url: str, channel, count: int, created: queue.Queue) -> float:
    """Post ``count`` signed webhooks concurrently; return messages per second until the last event."""
    requests_ = [
        signed(validator, url, build_message_form(channel, f"+1555{index % 500:07d}", f"inbound {index} 📦", None))
        for index in range(count)
    ]
    started = time.perf_counter()
    poster.run_all(lambda item=item: poster.post(*item) for item in requests_)
    for _ in range(count):
        created.get(timeout=60)
    return count / (time.perf_counter() - started)


def measure_paced(poster: Poster, validator, url: str, channel, rate: float, seconds: float) -> list[float]:
    """Send webhooks at ``rate`` per second for ``seconds``; return each one's time to its response."""
    count = int(rate * seconds)
    requests_ = [
        signed(validator, url, build_message_form(channel, f"+1556{index % 500:07d}", f"paced {index}", None))
        for index in range(count)
    ]
    start = time.perf_counter() + 0.2

    def send(index: int) -> float:
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        poster.post(*requests_[index])
        return time.perf_counter() - scheduled

    return poster.run_all(lambda index=index: send(index) for index in range(count))


def make_sent_messages(state, channel_id: int, count: int) -> list[tuple[int, str]]:
    """Store ``count`` queued outbound messages with provider ids, as the dispatcher leaves them."""
    with state.session_factory() as session:
        conversation = session.query(Conversation).filter_by(channel_id=channel_id).first()
        rows = []
        for _ in range(count):
            sid = "SM" + secrets.token_hex(16)
            message = Message(
                conversation=conversation, channel_id=channel_id, direction=Direction.OUTBOUND.value,
                text="Your parcel ships today.", provider_message_id=sid,
                delivery_status=DeliveryState.QUEUED.value, sent_at=utcnow(),
            )
            session.add(message)
            rows.append((message, sid))
        session.commit()
        return [(message.id, sid) for message, sid in rows]


def measure_storm(poster: Poster, validator, url: str, messages: list[tuple[int, str]], seed: int) -> tuple[float, int]:
    """Post shuffled, duplicated callbacks; return callbacks per second and how many were posted."""
    callbacks = []
    for _, sid in messages:
        for status in CALLBACK_STATES:
            form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                    "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01"}
            callbacks.extend([signed(validator, url, form)] * 2)
    random.Random(seed).shuffle(callbacks)
    started = time.perf_counter()
    poster.run_all(lambda item=item: poster.post(*item) for item in callbacks)
    return len(callbacks) / (time.perf_counter() - started), len(callbacks)


def check_storm(state, messages: list[tuple[int, str]], updates: dict[int, list[str]]) -> list[str]:
    """Return a line per message that did not end read or whose events went backwards."""
    problems = []
    ids = [message_id for message_id, _ in messages]
    with state.session_factory() as session:
        final = dict(session.query(Message.id, Message.delivery_status).filter(Message.id.in_(ids)))
    for message_id in ids:
        if final[message_id] != "read":
            problems.append(f"message {message_id} ended {final[message_id]}")
        ranks = [STATUS_ORDER[DeliveryState(status)] for status in updates.get(message_id, [])]
        if ranks != sorted(ranks):
            problems.append(f"message {message_id} moved back: {updates[message_id]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="webhooks for the throughput runs")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--rate", type=float, default=320.0, help="requests per second of the paced run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced run")
    parser.add_argument("--callbacks-for", type=int, default=1000, help="sent messages in the status storm")
    parser.add_argument("--database-url", help="an empty database; default a temporary SQLite file")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    config = Config(database_url=url, secret_key="bench", instance_dir=str(workdir))
    state = get_state(create_app(config))
    upgrade_database(state.engine)
    with state.session_factory() as session:
        agent = create_agent(session, "bench@example.com", "Bench", "bench password")
        token = create_api_token(session, agent, "bench")
        channel = add_channel(session, "whatsapp", "Bench", "+14155238886",
                              {"account_sid": "AC" + "0" * 32, "auth_token": AUTH_TOKEN})
        session.commit()
        session.expunge(channel)

    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server_process = context.Process(target=serve, args=(config, ports), daemon=True)
    server_process.start()
    base_url = f"http://127.0.0.1:{ports.get(timeout=60)}"

    created: queue.Queue[int] = queue.Queue()
    updates: dict[int, list[str]] = defaultdict(list)
    client = socketio.Client(reconnection=False)
    client.on("message.created", lambda data: created.put(data["message"]["id"]))
    client.on("message.updated",
              lambda data: updates[data["message"]["id"]].append(data["message"]["delivery_status"]))
    poster = Poster(args.clients)
    validator = RequestValidator(AUTH_TOKEN)

    try:
        client.connect(base_url, auth={"token": token}, transports=["websocket"])
        inbound_url = f"{base_url}/webhooks/twilio/{channel.id}/messages"
        status_url = f"{base_url}/webhooks/twilio/{channel.id}/status"

        measure_bare(poster, base_url, 200)  # warm up connections
        bare = measure_bare(poster, base_url, args.messages)
        inbound = measure_inbound(poster, validator, inbound_url, channel, args.messages, created)
        paced = measure_paced(poster, validator, inbound_url, channel, args.rate, args.seconds)
        # The paced webhooks are answered; their ingestion ends before the storm starts.
        for _ in range(len(paced)):
            created.get(timeout=120)
        sent = make_sent_messages(state, channel.id, args.callbacks_for)
        storm, callbacks = measure_storm(poster, validator, status_url, sent, args.seed)
        time.sleep(1.0)  # the last events are on their way to the client
        client.disconnect()
    finally:
        poster.close()
        server_process.terminate()
        server_process.join(10)
    problems = check_storm(state, sent, updates)
    state.engine.dispose()

    backend = url.split(":", 1)[0]
    print(f"database: {backend}; clients: {args.clients}; webhooks: {args.messages}")
    print(f"reference bare POST:             {bare:8.0f} requests/s")
    print(f"signed webhook -> message.created: {inbound:6.0f} messages/s (ratio to bare {inbound / bare:.2f})")
    print(
        f"paced {args.rate:g}/s for {args.seconds:g} s:        p50 {statistics.median(paced) * 1000:.1f} ms, "
        f"p99 {percentile(paced, 0.99) * 1000:.1f} ms, max {max(paced) * 1000:.1f} ms"
    )
    print(f"status storm: {callbacks} callbacks, {storm:6.0f} callbacks/s; "
          f"{len(sent) - len({p.split()[1] for p in problems})} of {len(sent)} messages read, "
          f"{len(problems)} problems")
    for line in problems[:10]:
        print("  " + line)


if __name__ == "__main__":
    main()
