"""Throughput and acknowledgement time of the Twilio webhook endpoints.

Two topologies:

- ``single`` (the default): the service runs in a process of its own on a loopback port with
  a fresh database (a temporary SQLite file unless ``--database-url`` names one), as
  ``switchboard run`` runs it: the service's HTTP server (``gateway.server``) and the
  workers, the webhook worker among them.
- ``split``: the deployment of docs/deployment.md. ``--web-processes`` ``switchboard web``
  processes on separate ports and ``--workers`` ``switchboard worker`` processes (default
  one). They share a PostgreSQL database that the bench drops and creates anew
  (``--database-url``, default ``sb_webhook_bench``; its name must contain "bench") and a
  Redis database that it flushes (``--redis-db``). Each HTTP client keeps its connection to
  one web process, taken round robin, as a load balancer spreads connections. The Socket.IO
  client is connected to the first web process, and the worker's events reach it through
  Redis.

This process drives the service with keep-alive ``http.client`` connections, one per client
thread, and an agent's Socket.IO connection (``bench.event_stream``, which decodes each event
on its reader thread instead of starting a thread per event). It measures, in one run:

1. reference: a bare Flask POST endpoint on the same server processes (it reads the form and
   answers 200), posted by the same clients over the same connections;
2. inbound: signed incoming-message webhooks end to end (signature check, store as a
   pending payload, answer; then the webhook worker's ingestion and commit, and Socket.IO
   ``message.created`` received by the client), in messages per second;
3. acknowledgement: signed webhooks sent at a fixed rate (default 320 per second, open
   loop), each timed from its scheduled start to Twilio's 200, so a slow server cannot hide
   its queue (no coordinated omission); the run then waits until every one of them has
   reached the client, so their ingestion does not overlap the storm;
4. status storm: delivery callbacks (sent, delivered, read, each posted twice) for many
   sent messages, shuffled and posted concurrently, in callbacks per second until the
   client received the ``read`` event of every message (the webhook worker applies the
   callbacks after they are acknowledged), followed by a check that every message ends ``read``
   and that no ``message.updated`` event moved a message back.

For the bare run, the end-to-end run and the storm it also prints the CPU time that the
service's processes used, by role, divided by the requests posted (read from ``/proc``, so
on Linux only). Rates swing with the machine's other load; CPU per operation much less.

    .venv/bin/python -m bench.whatsapp_webhooks [--topology single|split] [--web-processes 2] \\
        [--workers 1] [--messages 2000] [--clients 8] [--rate 320] [--seconds 10] [--callbacks-for 1000] \\
        [--database-url URL] [--redis-db 14]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import logging
import multiprocessing
import os
import queue
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

from bench.bare_web import BARE_PATH, add_bare_endpoint
from bench.event_stream import EventStream
from channels.delivery import STATUS_ORDER
from channels.types import DeliveryState
from gateway import create_app, get_state
from gateway.config import Config
from gateway.database import upgrade_database
from gateway.server import make_server
from gateway.simulate import build_message_form
from gateway.workers import Workers
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from inbox.models import Conversation, Direction, Message, utcnow

AUTH_TOKEN = "bench-auth-token"
CALLBACK_STATES = ("sent", "delivered", "read")
SPLIT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/sb_webhook_bench"
REDIS_BASE_URL = "redis://127.0.0.1:6379"
START_TIMEOUT = 60.0
AIMS = (
    "aims: webhook/bare >= 0.4; paced p99 <= 50 ms at 320/s; "
    "status storm >= 1,500 callbacks/s with no regression"
)


# --- the service -----------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return the user and system CPU seconds that process ``pid`` and its reaped children used.

    Read from Linux /proc. A PostgreSQL backend that exits between two readings counts in
    the second one, because the postmaster has reaped it by then.
    """
    try:
        # The command name in field 2 may contain spaces, so the fields are counted after its ")".
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0  # a backend that exited
    return sum(int(field) for field in fields[11:15]) / CLOCK_TICKS


def pids_named(command: str) -> list[int]:
    """Return the ids of the running processes whose command name is ``command``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU seconds of the service's processes, by role ("web", "worker"), between two readings.

    A role given as a command name (``"postgres"``) counts every process of that name
    that runs at each reading.
    """

    def __init__(self, roles: dict[str, list[int] | str]) -> None:
        self.roles = roles
        self.started: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        return {
            role: sum(cpu_seconds(pid) for pid in (pids_named(pids) if isinstance(pids, str) else pids))
            for role, pids in self.roles.items()
        }

    def start(self) -> None:
        self.started = self.read()

    def per_operation(self, count: int) -> dict[str, float]:
        """Return each role's CPU seconds since ``start``, divided by ``count``."""
        now = self.read()
        return {role: (now[role] - self.started[role]) / count for role in self.roles}



def serve(config: Config, ports: multiprocessing.Queue) -> None:
    """Serve the app with the bare endpoint and the workers on a free loopback port, as
    ``switchboard run`` does; put the port on ``ports``."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(config)
    add_bare_endpoint(app)
    server = make_server("127.0.0.1", 0, app)
    Workers(get_state(app)).start()
    ports.put(server.server_port)
    server.serve_forever()


class SingleProcess:
    """``switchboard run`` in one process of its own."""

    def __init__(self, config: Config) -> None:
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        self.process = context.Process(target=serve, args=(config, ports), daemon=True)
        self.process.start()
        self.base_urls = [f"http://127.0.0.1:{ports.get(timeout=START_TIMEOUT)}"]

    def describe(self) -> str:
        return "single (switchboard run: 1 process, web and workers)"

    def cpu_roles(self) -> dict[str, list[int]]:
        return {"service": [self.process.pid]}

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SplitProcesses:
    """``web_processes`` ``switchboard web`` processes (with the bare endpoint) and ``workers``
    ``switchboard worker`` processes."""

    def __init__(
        self, config: Config, redis_url: str, web_processes: int, workers: int, log_dir: Path,
        worker_nice: int | None = None,
    ) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("SWITCHBOARD_")}
        env.update({
            "SWITCHBOARD_DATABASE_URL": config.database_url,
            "SWITCHBOARD_SECRET_KEY": config.secret_key,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_INSTANCE_DIR": config.instance_dir,
            "SWITCHBOARD_LOG_LEVEL": "WARNING",
        })
        self.web_count = web_processes
        self.worker_count = workers
        self.log_dir = log_dir
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.base_urls = []
        try:
            for index in range(web_processes):
                port = free_port()
                self._start(f"web{index + 1}", ["-m", "bench.bare_web", "web", "--port", str(port)], env)
                self.base_urls.append(f"http://127.0.0.1:{port}")
            for index in range(workers):
                nice = [] if worker_nice is None else ["--nice", str(worker_nice)]
                self._start(f"worker{index + 1}", ["-m", "gateway.cli", "worker", *nice], env)
            for base_url in self.base_urls:
                self._wait_until_serving(base_url)
            for index in range(workers):
                self._wait_for_output(f"worker{index + 1}", "worker running")
        except BaseException:
            self.stop()
            raise

    def describe(self) -> str:
        workers = f"{self.worker_count} switchboard worker" + ("s" if self.worker_count > 1 else "")
        return (f"split ({self.web_count} switchboard web processes, {workers}; "
                f"PostgreSQL and Redis; logs in {self.log_dir})")

    def cpu_roles(self) -> dict[str, list[int] | str]:
        roles: dict[str, list[int] | str] = {"web": [], "worker": []}
        for name, process in self.processes:
            roles["web" if name.startswith("web") else "worker"].append(process.pid)
        # Every PostgreSQL and Redis process on the machine, the benchmark's own connections
        # included: on a machine that runs other databases these figures include their work.
        roles["postgres"] = "postgres"
        roles["redis"] = "redis-server"
        return roles

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as log:
            process = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.processes.append((name, process))

    def _check_running(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                output = (self.log_dir / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{output[-3000:]}")

    def _wait_until_serving(self, base_url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_running()
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{base_url} did not respond within {START_TIMEOUT:.0f} s; logs in {self.log_dir}")

    def _wait_for_output(self, name: str, text_: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while text_ not in (self.log_dir / f"{name}.log").read_text(errors="replace"):
            self._check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within {START_TIMEOUT:.0f} s; logs in {self.log_dir}")
            time.sleep(0.1)

    def stop(self) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                process.terminate()
        for _, process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def recreate_database(url: str) -> None:
    """Drop and create the PostgreSQL database of ``url``; only a database named for the bench."""
    parsed = make_url(url)
    name = parsed.database or ""
    if not parsed.drivername.startswith("postgresql") or "bench" not in name:
        raise SystemExit(f"--database-url must name a PostgreSQL database with 'bench' in its name, not {name!r}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def flush_redis(url: str) -> None:
    """Empty the one Redis database of ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# --- the load generator ----------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One form post: the path, the encoded body, and its signature for each web process."""

    path: str
    body: bytes
    signatures: tuple[str, ...] = ()


class Poster:
    """Posts from ``clients`` threads, each over one keep-alive connection of its own.

    Client ``i`` posts to ``base_urls[i % len(base_urls)]``, as a load balancer spreads
    connections. ``http.client`` with bodies encoded and signed beforehand keeps this process's
    share of the CPU small: a request costs it tens of microseconds.
    """

    HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}

    def __init__(self, base_urls: Sequence[str], clients: int):
        self.base_urls = list(base_urls)
        self.clients = clients
        self.hosts = [url.split("://", 1)[1] for url in self.base_urls]
        self.connections: list[http.client.HTTPConnection | None] = [None] * clients
        # This process's CPU seconds and wall seconds of the last run: how busy the generator was.
        self.last_cpu = self.last_wall = 0.0

    def target(self, client: int) -> int:
        return client % len(self.base_urls)

    def _post(self, client: int, item: Post) -> None:
        target = self.target(client)
        headers = dict(self.HEADERS)
        if item.signatures:
            headers["X-Twilio-Signature"] = item.signatures[target]
        for attempt in (0, 1):
            connection = self.connections[client]
            if connection is None:
                connection = self.connections[client] = http.client.HTTPConnection(self.hosts[target], timeout=60)
            try:
                connection.request("POST", item.path, item.body, headers)
                response = connection.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: open another once.
                connection.close()
                self.connections[client] = None
                if attempt:
                    raise
                continue
            if response.status // 100 != 2:
                raise RuntimeError(f"{item.path} returned HTTP {response.status}: {content[:200]!r}")
            if response.will_close:
                connection.close()
                self.connections[client] = None
            return

    def run(self, items: Sequence[Post], rate: float | None = None) -> list[float]:
        """Post every item and return each one's seconds to its response.

        Without ``rate`` the clients post as fast as they are answered (closed loop). With
        it, item ``i`` is due ``i / rate`` seconds after the start, and is timed from then.
        """
        times = [0.0] * len(items)
        order = itertools.count()  # next() on it is atomic in CPython
        errors: list[BaseException] = []
        start = time.perf_counter() + 0.2
        cpu_started, wall_started = time.process_time(), time.perf_counter()

        def client_loop(client: int) -> None:
            try:
                while not errors:
                    index = next(order)
                    if index >= len(items):
                        return
                    if rate is None:
                        due = time.perf_counter()
                    else:
                        due = start + index / rate
                        delay = due - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    self._post(client, items[index])
                    times[index] = time.perf_counter() - due
            except BaseException as error:  # noqa: BLE001 - reported by run()
                errors.append(error)

        threads = [threading.Thread(target=client_loop, args=(client,), daemon=True) for client in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.last_cpu = time.process_time() - cpu_started
        self.last_wall = time.perf_counter() - wall_started
        if errors:
            raise errors[0]
        return times

    def close(self) -> None:
        for connection in self.connections:
            if connection is not None:
                connection.close()


class Signer:
    """Signs forms as Twilio does, for the URL of each web process."""

    def __init__(self, base_urls: Sequence[str]):
        self.base_urls = list(base_urls)
        self.validator = RequestValidator(AUTH_TOKEN)

    def post(self, path: str, form: dict[str, str]) -> Post:
        signatures = tuple(self.validator.compute_signature(base + path, form) for base in self.base_urls)
        return Post(path, urlencode(form).encode(), signatures)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- the measures ----------------------------------------------------------------------------


def measure_bare(poster: Poster, count: int) -> float:
    items = [Post(BARE_PATH, urlencode({"MessageSid": "SM" + secrets.token_hex(16), "Body": "hello"}).encode())
             for _ in range(count)]
    started = time.perf_counter()
    poster.run(items)
    return count / (time.perf_counter() - started)


def measure_inbound(
    poster: Poster, signer: Signer, path: str, channel, count: int, created: queue.Queue
) -> tuple[float, float, float]:
    """Post ``count`` signed webhooks concurrently; return messages per second until the last
    event, the seconds until the last webhook was acknowledged, and this process's CPU
    seconds per message (load generator and event client)."""
    items = [
        signer.post(path, build_message_form(channel, f"+1555{index % 500:07d}", f"inbound {index} 📦", None))
        for index in range(count)
    ]
    started, cpu_started = time.perf_counter(), time.process_time()
    poster.run(items)
    acknowledged = time.perf_counter() - started
    for _ in range(count):
        created.get(timeout=120)
    return count / (time.perf_counter() - started), acknowledged, (time.process_time() - cpu_started) / count


def measure_paced(poster: Poster, signer: Signer, path: str, channel, rate: float, seconds: float) -> list[float]:
    """Send webhooks at ``rate`` per second for ``seconds``; return each one's time to its response."""
    items = [
        signer.post(path, build_message_form(channel, f"+1556{index % 500:07d}", f"paced {index}", None))
        for index in range(int(rate * seconds))
    ]
    return poster.run(items, rate=rate)


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


def measure_storm(
    poster: Poster, signer: Signer, path: str, messages: list[tuple[int, str]], seed: int,
    updates: dict[int, list[str]],
) -> tuple[float, int, float]:
    """Post shuffled, duplicated callbacks; return callbacks per second until the client saw
    every message read, how many callbacks were posted, and the seconds until the last one
    was acknowledged."""
    callbacks = []
    for _, sid in messages:
        for status in CALLBACK_STATES:
            form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                    "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01"}
            callbacks.extend([signer.post(path, form)] * 2)
    random.Random(seed).shuffle(callbacks)
    started = time.perf_counter()
    poster.run(callbacks)
    acknowledged = time.perf_counter() - started
    # The worker applies the callbacks after they are acknowledged, so the clock runs until the
    # last message's read event arrived (or 120 s passed, which check_storm then reports).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all((updates.get(message_id) or [""])[-1] == "read" for message_id, _ in messages):
            break
        time.sleep(0.005)
    return len(callbacks) / (time.perf_counter() - started), len(callbacks), acknowledged


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


def prepare(config: Config):
    """Create the schema, an agent with an API token, and a Twilio WhatsApp channel."""
    state = get_state(create_app(config))
    upgrade_database(state.engine)
    with state.session_factory() as session:
        agent = create_agent(session, "bench@example.com", "Bench", "bench password")
        token = create_api_token(session, agent, "bench")
        channel = add_channel(session, "whatsapp", "Bench", "+14155238886",
                              {"account_sid": "AC" + "0" * 32, "auth_token": AUTH_TOKEN})
        session.commit()
        session.expunge(channel)
    return state, token, channel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", choices=("single", "split"), default="single",
                        help="one switchboard run process, or web processes and a worker")
    parser.add_argument("--web-processes", type=int, default=2, help="switchboard web processes (split)")
    parser.add_argument("--workers", type=int, default=1, help="switchboard worker processes (split)")
    parser.add_argument("--worker-nice", type=int, help="the workers' --nice (split; default the command's own)")
    parser.add_argument("--messages", type=int, default=2000, help="webhooks for the throughput runs")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (connections)")
    parser.add_argument("--rate", type=float, default=320.0, help="requests per second of the paced run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced run")
    parser.add_argument("--callbacks-for", type=int, default=1000, help="sent messages in the status storm")
    parser.add_argument("--database-url", help="single: an empty database, default a temporary SQLite file; "
                        f"split: the PostgreSQL database to drop and create, default {SPLIT_DATABASE_URL}")
    parser.add_argument("--redis-db", type=int, default=14, help="the Redis database to flush and use (split)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    redis_url = f"{REDIS_BASE_URL}/{args.redis_db}"
    if args.topology == "split":
        url = args.database_url or SPLIT_DATABASE_URL
        recreate_database(url)
        flush_redis(redis_url)
    else:
        url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    config = Config(database_url=url, secret_key="bench", instance_dir=str(workdir))
    state, token, channel = prepare(config)
    load_before = Path("/proc/loadavg").read_text().split()[:3]

    if args.topology == "split":
        service = SplitProcesses(config, redis_url, args.web_processes, args.workers, workdir, args.worker_nice)
    else:
        service = SingleProcess(config)
    base_urls = service.base_urls

    created: queue.Queue[int] = queue.Queue()
    updates: dict[int, list[str]] = defaultdict(list)
    client = EventStream()
    client.on("message.created", lambda data: created.put(data["message"]["id"]))
    client.on("message.updated",
              lambda data: updates[data["message"]["id"]].append(data["message"]["delivery_status"]))
    poster = Poster(base_urls, args.clients)
    signer = Signer(base_urls)
    meter = CpuMeter(service.cpu_roles())
    # CPU seconds per operation of each of the service's roles, by measure.
    cpu: dict[str, dict[str, float]] = {}

    try:
        client.connect(base_urls[0], auth={"token": token})
        inbound_path = f"/webhooks/twilio/{channel.id}/messages"
        status_path = f"/webhooks/twilio/{channel.id}/status"

        measure_bare(poster, 200)  # warm up connections
        meter.start()
        bare = measure_bare(poster, args.messages)
        cpu["bare"] = meter.per_operation(args.messages)
        generator_cpu = poster.last_cpu / args.messages, poster.last_cpu / poster.last_wall
        meter.start()
        inbound, inbound_acknowledged, inbound_bench_cpu = measure_inbound(poster, signer, inbound_path, channel, args.messages, created)
        cpu["webhook"] = meter.per_operation(args.messages)
        paced = measure_paced(poster, signer, inbound_path, channel, args.rate, args.seconds)
        # The paced webhooks are answered; their ingestion ends before the storm starts.
        for _ in range(len(paced)):
            created.get(timeout=120)
        sent = make_sent_messages(state, channel.id, args.callbacks_for)
        storm_bare = measure_bare(poster, args.callbacks_for * len(CALLBACK_STATES) * 2)
        meter.start()
        storm, callbacks, storm_acknowledged = measure_storm(poster, signer, status_path, sent, args.seed, updates)
        cpu["callback"] = meter.per_operation(callbacks)
        time.sleep(1.0)  # the last events are on their way to the client
        client.disconnect()
    finally:
        poster.close()
        service.stop()
    problems = check_storm(state, sent, updates)
    state.engine.dispose()
    load_after = Path("/proc/loadavg").read_text().split()[:3]

    backend = url.split(":", 1)[0].split("+")[0]
    spread = f"round robin over {len(base_urls)} web processes" if len(base_urls) > 1 else "one server"
    print(f"topology: {service.describe()}")
    print(f"database: {backend}; clients: {args.clients} keep-alive connections, {spread}; webhooks: {args.messages}")
    print(f"load average: {' '.join(load_before)} at start, {' '.join(load_after)} at end")
    print(f"reference bare POST:               {bare:6.0f} requests/s")
    print(f"load generator in the bare run:    {generator_cpu[0] * 1e6:6.0f} us CPU per request "
          f"({generator_cpu[1]:.0%} of one core, event client included)")
    print(f"signed webhook -> message.created: {inbound:6.0f} messages/s (ratio to bare {inbound / bare:.2f})")
    print(f"  all acknowledged after {inbound_acknowledged:.2f} s ({args.messages / inbound_acknowledged:.0f}/s), "
          f"all events received after {args.messages / inbound:.2f} s")
    print(f"  load generator and event client: {inbound_bench_cpu * 1e6:.0f} us CPU per message")
    print(
        f"paced {args.rate:g}/s for {args.seconds:g} s:           p50 {statistics.median(paced) * 1000:.1f} ms, "
        f"p99 {percentile(paced, 0.99) * 1000:.1f} ms, max {max(paced) * 1000:.1f} ms"
    )
    print(f"reference bare POST before storm:  {storm_bare:6.0f} requests/s")
    print(f"status storm: {callbacks} callbacks, {storm:6.0f} callbacks/s (ratio to bare {storm / storm_bare:.2f}); "
          f"{len(sent) - len({p.split()[1] for p in problems})} of {len(sent)} messages read, "
          f"{len(problems)} problems")
    print(f"  all acknowledged after {storm_acknowledged:.2f} s ({callbacks / storm_acknowledged:.0f}/s), "
          f"all applied after {callbacks / storm:.2f} s")
    for line in problems[:10]:
        print("  " + line)
    for measure, label in (("bare", "bare POST"), ("webhook", "webhook to event"), ("callback", "status callback")):
        shares = ", ".join(f"{role} {seconds * 1e6:.0f}" for role, seconds in cpu[measure].items())
        print(f"service CPU per {label + ':':18} {shares} us")
    print(AIMS)


if __name__ == "__main__":
    main()
