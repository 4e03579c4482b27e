"""The inbox at scale: list, filtered view, search and a long thread at 100,000 conversations.

Fills a database with generated conversations and messages (bulk inserts: ``executemany``
on SQLite, ``COPY`` on PostgreSQL) at schema revision 0017, the one before search. Then it
upgrades the database to the newest revision as an existing installation would be upgraded,
which builds the search indexes over the stored rows. Last it times API requests through
Flask's test client with a bearer token, so every figure includes authentication, the
queries of ``inbox`` and the JSON encoding:

- list: ``GET /api/v1/conversations`` (the first page of 50)
- filtered: the same with ``status=open&priority=high&label=<id>``
- search: ``q=<word>`` for a rare word (in 0.1% of messages) and a common one (in 5%)
- thread: ``GET /api/v1/conversations/<id>`` of a 500-message conversation (its newest page)

It runs each database at a tenth of the size first, then at the full size, and prints p50
and p99 of each. Then it prints the ratio of the full-size p99 to the tenth-size p99 and
whether each request meets the aims: a p99 of at most 50 ms, and at most 1.5 times the
tenth-size p99. With ``--plans`` it also prints the database's plans of the main statement
and of the slowest statement of each request.

    .venv/bin/python -m bench.inbox_scale [--database sqlite|postgresql|both]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/sb_bench]
        [--conversations 100000] [--messages 1000000] [--samples 200] [--plans]
        [--requests list,filtered,...] [--keep DIR]

The PostgreSQL database named by ``--postgres-url`` is dropped and created anew. With
``--keep DIR`` the generated databases stay (SQLite files in DIR, PostgreSQL databases named
after the URL's with the size appended), and a later run with the same DIR and sizes measures
them again without generating: the code under test changes, the data stays the same. A kept
database that a newer migration left behind is upgraded first.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url

from gateway import create_app, freeze_start_up_objects, get_state
from gateway.config import Config
from gateway.database import alembic_config
from inbox.agents import create_agent, create_api_token
from inbox.db import make_engine

PRE_SEARCH_REVISION = "0017"
PAGE = 50
LONG_CONVERSATIONS = 100
LONG_LENGTH = 500
RARE_WORD = "thermostat"
RARE_SHARE = 0.001
COMMON_WORD = "delivery"
COMMON_SHARE = 0.05
# The labelled conversations (a fifth) that carry the first label, the one the filtered view
# shows. Enough that its open high-priority conversations fill a page at a tenth of the size
# too (about 70 of them), so both sizes serialize the same 50 conversations.
COMMON_LABEL_SHARE = 0.75
REQUESTS = ("list", "filtered", "search rare", "search common", "thread")
AIM_P99_MS = 50.0
AIM_RATIO = 1.5
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
STATUSES = [("open", 30), ("pending", 10), ("snoozed", 5), ("resolved", 50), ("closed", 5)]
PRIORITIES = [("low", 10), ("normal", 70), ("high", 15), ("urgent", 5)]
FIRST_NAMES = ["Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas",
               "Kavya", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq"]
LAST_NAMES = ["Almeida", "Berger", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
              "Jensen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Silva"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _weighted(rng: random.Random, choices: list[tuple[str, int]]) -> str:
    return rng.choices([value for value, _ in choices], [weight for _, weight in choices])[0]


def _vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ra", "to", "su", "vi", "de", "po", "an", "el", "or", "un", "is", "ba"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


@dataclass
class Dataset:
    """The generated rows, produced in chunks so a million messages never sit in memory at once."""

    conversations: int
    messages: int
    seed: int = 7
    long_ids: list[int] = field(default_factory=list)

    def sizes(self, rng: random.Random) -> list[int]:
        """Return the message count of each conversation: a few long ones, the rest short."""
        long_total = LONG_CONVERSATIONS * LONG_LENGTH
        rest = max(self.messages - long_total, self.conversations - LONG_CONVERSATIONS)
        average = rest / (self.conversations - LONG_CONVERSATIONS)
        sizes = [max(1, round(rng.uniform(1, 2 * average - 1))) for _ in range(self.conversations - LONG_CONVERSATIONS)]
        sizes += [LONG_LENGTH] * LONG_CONVERSATIONS
        rng.shuffle(sizes)
        return sizes


def generate(dataset: Dataset, channel_ids: dict[str, int], label_ids: list[int],
             agent_ids: list[int]) -> Iterator[dict[str, list[tuple]]]:
    """Yield chunks of rows for contacts, identities, conversations, labels links and messages."""
    rng = random.Random(dataset.seed)
    # A stream of its own, so that every other row stays as the main stream generated it.
    label_rng = random.Random(dataset.seed + 1)
    vocabulary = _vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    sizes = dataset.sizes(rng)
    contact_count = dataset.conversations // 2
    message_id = 0
    chunk: dict[str, list[tuple]] = {"contacts": [], "identities": [], "conversations": [], "labels": [], "messages": []}

    for contact_id in range(1, contact_count + 1):
        kind = "phone" if contact_id % 3 else "email"
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        value = f"+49151{contact_id:08d}" if kind == "phone" else f"customer{contact_id}@mail{contact_id % 97}.example"
        chunk["contacts"].append((contact_id, name, False, NOW))
        chunk["identities"].append((contact_id, contact_id, kind, value, NOW))

    for conversation_id, size in enumerate(sizes, start=1):
        contact_id = rng.randint(1, contact_count)
        kind = "whatsapp" if contact_id % 3 else "email"
        last_at = NOW - timedelta(seconds=rng.randint(0, 365 * 86400))
        first_at = last_at - timedelta(seconds=size * rng.randint(60, 3600))
        subject = " ".join(rng.choices(vocabulary, weights, k=4)).capitalize() if kind == "email" else None
        text_value = ""
        step = (last_at - first_at) / max(size, 1)
        for position in range(size):
            message_id += 1
            words = rng.choices(vocabulary, weights, k=rng.randint(6, 30))
            draw = rng.random()
            if draw < RARE_SHARE:
                words.insert(rng.randrange(len(words)), RARE_WORD)
            elif draw < RARE_SHARE + COMMON_SHARE:
                words.insert(rng.randrange(len(words)), COMMON_WORD)
            text_value = " ".join(words).capitalize() + "."
            inbound = position % 2 == 0
            chunk["messages"].append((
                message_id, conversation_id, channel_ids[kind], "inbound" if inbound else "outbound",
                contact_id if inbound else None, None if inbound else rng.choice(agent_ids),
                f"bench-{message_id}", "[]", subject, text_value, first_at + step * position,
            ))
        chunk["conversations"].append((
            conversation_id, channel_ids[kind], contact_id, subject, _weighted(rng, STATUSES), text_value[:160],
            rng.choice([0, 0, 0, 1, 2]), last_at, last_at, first_at, last_at, _weighted(rng, PRIORITIES),
            rng.choice(agent_ids + [None] * len(agent_ids)),
        ))
        if size == LONG_LENGTH:
            dataset.long_ids.append(conversation_id)
        if rng.random() < 0.2:
            label_id = rng.choice(label_ids)
            if label_rng.random() < COMMON_LABEL_SHARE:
                label_id = label_ids[0]
            chunk["labels"].append((conversation_id, label_id))
        if len(chunk["messages"]) >= 50_000:
            yield chunk
            chunk = {name: [] for name in chunk}
    yield chunk


_COLUMNS = {
    "contacts": ("id", "name", "name_set_by_agent", "created_at"),
    "identities": ("id", "contact_id", "kind", "value", "created_at"),
    "conversations": ("id", "channel_id", "contact_id", "subject", "status", "snippet", "unread_count",
                      "last_message_at", "last_inbound_at", "created_at", "updated_at", "priority", "assignee_id"),
    "labels": ("conversation_id", "label_id"),
    "messages": ("id", "conversation_id", "channel_id", "direction", "contact_id", "agent_id",
                 "provider_message_id", '"references"', "subject", "text", "created_at"),
}
_TABLES = {"contacts": "contacts", "identities": "contact_identities", "conversations": "conversations",
           "labels": "conversation_labels", "messages": "messages"}


def _sqlite_value(value: Any) -> Any:
    # SQLAlchemy's SQLite DateTime format, so keyset comparisons see the same strings.
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def bulk_insert(engine: Engine, chunks: Iterator[dict[str, list[tuple]]]) -> None:
    """Insert every chunk: ``executemany`` on SQLite, ``COPY`` on PostgreSQL."""
    postgres = engine.dialect.name == "postgresql"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for chunk in chunks:
            for name in ("contacts", "identities", "conversations", "labels", "messages"):
                rows = chunk[name]
                if not rows:
                    continue
                columns = _COLUMNS[name]
                if postgres:
                    with cursor.copy(f"COPY {_TABLES[name]} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" for _ in columns)
                    cursor.executemany(
                        f"INSERT INTO {_TABLES[name]} ({', '.join(columns)}) VALUES ({marks})",
                        [tuple(_sqlite_value(value) for value in row) for row in rows],
                    )
            raw.commit()
        if postgres:
            for table in ("contacts", "contact_identities", "conversations", "messages"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            raw.commit()
    finally:
        raw.close()


def _setup_rows(engine: Engine) -> tuple[dict[str, int], list[int], list[int]]:
    """Insert channels, agents and labels, and return their ids."""
    with engine.begin() as connection:
        channel_ids = {}
        for kind, address in (("whatsapp", "+14155238886"), ("email", "support@shop.example")):
            channel_ids["email" if kind == "email" else "whatsapp"] = connection.execute(text(
                "INSERT INTO channels (kind, name, address, settings, is_active, created_at)"
                " VALUES (:kind, :name, :address, :settings, true, :now) RETURNING id"
            ), {"kind": kind, "name": kind.title(), "address": address, "settings": "{}", "now": NOW}).scalar_one()
        agent_ids = [
            connection.execute(text(
                "INSERT INTO agents (email, name, password_hash, role, is_active, created_at)"
                " VALUES (:email, :name, 'x', 'agent', true, :now) RETURNING id"
            ), {"email": f"agent{number}@shop.example", "name": f"Agent {number}", "now": NOW}).scalar_one()
            for number in range(10)
        ]
        label_ids = [
            connection.execute(text(
                "INSERT INTO labels (name, name_key, created_at) VALUES (:name, :name, :now) RETURNING id"
            ), {"name": f"label{number}", "now": NOW}).scalar_one()
            for number in range(8)
        ]
    return channel_ids, agent_ids, label_ids


def _database_url(kind: str, postgres_url: str, workdir: Path, tag: str, keep: bool) -> str:
    """Return the URL of the database for one size: a file in ``workdir`` on SQLite, and on
    PostgreSQL the URL's database, or one per size when the databases are kept."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'{tag}.db'}"
    url = make_url(postgres_url)
    if keep:
        url = url.set(database=f"{url.database}_{tag.split('-')[-1]}")
    return url.render_as_string(hide_password=False)


def _create_database(kind: str, database_url: str) -> None:
    """Remove the database if it exists and create it empty."""
    if kind == "sqlite":
        Path(make_url(database_url).database).unlink(missing_ok=True)
        return
    url = make_url(database_url)
    admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()


@dataclass
class Result:
    name: str
    times_ms: list[float]
    plan: str = ""

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p99(self) -> float:
        return percentile(self.times_ms, 0.99)


def build(kind: str, url: str, conversations: int, messages: int) -> tuple[Dataset, dict[str, float]]:
    """Create the schema, fill it, upgrade it to the newest revision, and return the timings."""
    engine = make_engine(url)
    config = alembic_config(url)
    timings: dict[str, float] = {}
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, PRE_SEARCH_REVISION)
    channel_ids, agent_ids, label_ids = _setup_rows(engine)
    dataset = Dataset(conversations, messages)

    started = time.perf_counter()
    bulk_insert(engine, generate(dataset, channel_ids, label_ids, agent_ids))
    timings["insert_s"] = time.perf_counter() - started

    started = time.perf_counter()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    timings["upgrade_s"] = time.perf_counter() - started

    # Planner statistics, as autovacuum (PostgreSQL) or a periodic ANALYZE (SQLite) keeps them.
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    timings["analyze_s"] = time.perf_counter() - started
    engine.dispose()
    return dataset, timings


def upgrade_kept(url: str) -> float | None:
    """Upgrade a kept database that a later migration left behind, and run ANALYZE after it.
    Return the seconds that took, or None when the database was at the newest revision."""
    engine = make_engine(url)
    config = alembic_config(url)
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == ScriptDirectory.from_config(config).get_current_head():
        engine.dispose()
        return None
    started = time.perf_counter()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


class StatementLog:
    """Records the statements one request runs, with their durations."""

    def __init__(self, engine: Engine):
        self.entries: list[tuple[float, str, Any]] = []
        self.active = False
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            self.entries.append((time.perf_counter() - conn.info["bench_started"], statement, parameters))


def explain(engine: Engine, statement: str, parameters: Any) -> str:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, parameters)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join("    " + " ".join(str(part) for part in row[-1:]) for row in cursor.fetchall())
    finally:
        raw.close()


_PAGE_STATEMENT = re.compile(r"FROM (conversations|messages)\s.*ORDER BY .*LIMIT", re.DOTALL)


def _plans(engine: Engine, entries: list[tuple[float, str, Any]]) -> str:
    """Return the plans of a request's main statement (its first page of conversations or
    messages) and of its slowest one."""
    main = next((entry for entry in entries if _PAGE_STATEMENT.search(entry[1])), entries[0])
    slowest = max(entries, key=lambda entry: entry[0])
    lines = [f"   plan of the main statement ({main[0] * 1000:.1f} ms):", explain(engine, main[1], main[2])]
    if slowest is not main:
        lines += [f"   plan of the slowest statement ({slowest[0] * 1000:.1f} ms):", explain(engine, slowest[1], slowest[2])]
    return "\n".join(lines)


def measure(kind: str, url: str, long_ids: list[int], args: argparse.Namespace, workdir: Path) -> list[Result]:
    app = create_app(Config(database_url=url, secret_key="bench", instance_dir=str(workdir / "instance")))
    state = get_state(app)
    with state.session_factory() as session:
        # A new agent per run, because a kept database still has the previous runs' agents.
        agent = create_agent(session, f"bench-{time.time_ns()}@example.com", "Bench", "bench password")
        token = create_api_token(session, agent, "bench")
        session.commit()
        label_id = session.execute(text("SELECT min(id) FROM labels")).scalar_one()
    # ``switchboard run`` and ``switchboard web`` do this once started. Without it, Python's full
    # collections walk the process's long-lived objects and pause about one request in a hundred.
    freeze_start_up_objects()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    statements = StatementLog(state.engine)
    requests = {
        "list": lambda n: f"/api/v1/conversations?limit={PAGE}",
        "filtered": lambda n: f"/api/v1/conversations?limit={PAGE}&status=open&priority=high&label={label_id}",
        "search rare": lambda n: f"/api/v1/conversations?limit={PAGE}&q={RARE_WORD}",
        "search common": lambda n: f"/api/v1/conversations?limit={PAGE}&q={COMMON_WORD}",
        "thread": lambda n: f"/api/v1/conversations/{long_ids[n % len(long_ids)]}",
    }
    results = []
    for name, path in requests.items():
        if name not in args.requests:
            continue
        for number in range(5):
            assert client.get(path(number), headers=headers).status_code == 200
        times = []
        for number in range(args.samples):
            started = time.perf_counter()
            response = client.get(path(number), headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.data[:300]
        result = Result(name, times)
        if args.plans:
            statements.entries.clear()
            statements.active = True
            client.get(path(0), headers=headers)
            statements.active = False
            result.plan = _plans(state.engine, statements.entries)
        results.append(result)
    state.engine.dispose()
    return results


def run_size(kind: str, args: argparse.Namespace, conversations: int, messages: int, workdir: Path) -> list[Result]:
    tag = f"{kind}-{conversations}"
    url = _database_url(kind, args.postgres_url, workdir, tag, keep=args.keep is not None)
    # Written after a complete build, so a kept database without it is built again.
    built = workdir / f"{tag}-{messages}.json"
    if built.exists():
        long_ids = json.loads(built.read_text())["long_ids"]
        upgrade_s = upgrade_kept(url)
        upgraded = f", upgraded to the newest revision in {upgrade_s:.0f} s" if upgrade_s is not None else ""
        print(f"{kind}: {conversations:,} conversations, {messages:,} messages: kept from a previous run{upgraded}",
              flush=True)
    else:
        _create_database(kind, url)
        started = time.perf_counter()
        dataset, timings = build(kind, url, conversations, messages)
        long_ids = dataset.long_ids
        print(f"{kind}: {conversations:,} conversations, {messages:,} messages: generated and inserted in "
              f"{timings['insert_s']:.0f} s, upgraded to the search schema in {timings['upgrade_s']:.0f} s, "
              f"ANALYZE {timings['analyze_s']:.0f} s (total {time.perf_counter() - started:.0f} s)", flush=True)
        if args.keep is not None:
            built.write_text(json.dumps({"long_ids": long_ids}))
    results = measure(kind, url, long_ids, args, workdir / tag)
    for result in results:
        print(f"  {result.name:14} p50 {result.p50:7.1f} ms   p99 {result.p99:7.1f} ms", flush=True)
        if result.plan:
            print(result.plan, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/sb_bench",
                        help="a PostgreSQL database that the benchmark drops and creates anew")
    parser.add_argument("--conversations", type=int, default=100_000, help="full size (default 100000)")
    parser.add_argument("--messages", type=int, default=1_000_000, help="full size (default 1000000)")
    parser.add_argument("--samples", type=int, default=200, help="requests timed per figure (default 200)")
    parser.add_argument("--only-small", action="store_true", help="run the tenth size only")
    parser.add_argument("--plans", action="store_true", help="print the plans of each request's main and slowest statements")
    parser.add_argument("--requests", default=",".join(REQUESTS),
                        help=f"comma-separated requests to time (default: all of {','.join(REQUESTS)})")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="keep the generated databases, and reuse the ones a previous run kept in DIR")
    args = parser.parse_args()
    args.requests = [name.strip() for name in args.requests.split(",") if name.strip()]
    unknown = sorted(set(args.requests) - set(REQUESTS))
    if unknown:
        parser.error(f"unknown requests {', '.join(unknown)}; choose from {', '.join(REQUESTS)}")

    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    workdir = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="sb-scale-"))
    summary: dict[str, Any] = {}
    try:
        for kind in kinds:
            small = run_size(kind, args, args.conversations // 10, args.messages // 10, workdir)
            if args.only_small:
                continue
            large = run_size(kind, args, args.conversations, args.messages, workdir)
            print(f"\n{kind}: full size against a tenth (aims: p99 <= {AIM_P99_MS:.0f} ms and <= {AIM_RATIO}x)")
            print(f"  {'request':14} {'tenth p99':>10} {'full p50':>9} {'full p99':>9} {'ratio':>6}  aims")
            for low, high in zip(small, large):
                ratio = high.p99 / low.p99
                met = "met" if high.p99 <= AIM_P99_MS and ratio <= AIM_RATIO else "MISSED"
                print(f"  {high.name:14} {low.p99:8.1f} ms {high.p50:6.1f} ms {high.p99:6.1f} ms {ratio:6.2f}  {met}")
                summary[f"{kind} {high.name}"] = {"small_p99": low.p99, "p50": high.p50, "p99": high.p99, "ratio": ratio}
        if summary:
            print("\n" + json.dumps(summary, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
