"""Email intake speed: a large mailbox imported from a real Dovecot into SQLite.

Measures, in one run against the same Dovecot:

- the limit: IMAPClient fetching every message in batches plus the stdlib parse
  (``parse_email``), with no database;
- the import: ``MailboxReader.import_new`` storing every message (raw payload, contact,
  thread, message, events, checkpoint), in messages per second and as a share of the limit;
- the CPU time per message of the limit, and of the import's reader process and parser
  process (Linux only for the parser process, read from /proc), which vary less between
  runs than the rates when other work shares the machine;
- an empty poll: ``import_new`` when nothing is new, at that mailbox size;
- new mail to event: with the reader idling (IMAP IDLE), the time from APPEND until the
  ``message.created`` event is published after commit.

Needs Debian's dovecot-imapd and root, like the tests.

    .venv/bin/python -m bench.email_ingest [--messages 10000] [--latency-samples 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from channels.email.imap import Checkpoint, ImapReader
from channels.email.parse import parse_email
from gateway import create_app, get_state
from gateway.channel_settings import imap_settings
from gateway.config import Config
from gateway.database import upgrade_database
from gateway.workers import MailboxReader, Workers
from inbox.channel_config import add_channel
from inbox.events import add_publisher
from tests.support.dovecot import DovecotServer

MAILBOX = "support@bench.example"
APPEND_CHUNK = 500


def make_message(index: int) -> bytes:
    """Return one of a few realistic shapes: plain, HTML with text, or with an attachment."""
    message = EmailMessage()
    customer = index % 700
    message["From"] = f"Customer {customer} <customer{customer}@example.com>"
    message["To"] = MAILBOX
    message["Subject"] = f"Order {100000 + index}: question about delivery"
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    message["Message-ID"] = f"<bench-{index}@example.com>"
    if index % 5 == 1 and index > 1:
        message["In-Reply-To"] = f"<bench-{index - 1}@example.com>"
        message["References"] = f"<bench-{index - 1}@example.com>"
    body = (
        f"Hello,\n\nmy order {100000 + index} has not arrived yet. Could you check where it is?\n\n"
        "Thanks,\nA customer\n" + "Some more context about the order. " * 10
    )
    message.set_content(body)
    if index % 3 == 0:
        message.add_alternative(f"<html><body><p>{body.replace(chr(10), '<br>')}</p></body></html>", subtype="html")
    if index % 10 == 0:
        message.add_attachment(b"%PDF-1.4 " + bytes(range(256)) * 40, maintype="application",
                               subtype="pdf", filename=f"invoice-{index}.pdf")
    return message.as_bytes()


def fill_mailbox(dovecot: DovecotServer, count: int) -> int:
    total = 0
    client = dovecot.client()
    try:
        for start in range(0, count, APPEND_CHUNK):
            chunk = [make_message(i) for i in range(start, min(count, start + APPEND_CHUNK))]
            client.multiappend("INBOX", chunk)
            total += sum(len(raw) for raw in chunk)
    finally:
        client.logout()
    return total


def measure_limit(dovecot: DovecotServer, batch_size: int) -> tuple[int, float, float]:
    """Fetch and parse the whole mailbox. Returns the count, the seconds and the CPU seconds."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    count = 0
    with ImapReader(dovecot.settings(batch_size=batch_size)) as reader:
        for batch in reader.fetch_new(Checkpoint(None, 0)):
            for mail in batch:
                parse_email(mail.raw)
                count += 1
    return count, time.perf_counter() - started, time.process_time() - cpu_started


def process_cpu_seconds(pid: int) -> float | None:
    """Return the CPU time (user and system) a process has used, or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 in proc(5), and this split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parser_cpu_seconds() -> float:
    parser = MailboxReader._parser
    seconds = process_cpu_seconds(parser.pid) if parser is not None else None
    return seconds or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="mailbox size (default 10000)")
    parser.add_argument("--latency-samples", type=int, default=30, help="IDLE latency samples (default 30)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sb-email-bench-"))
    config = Config(database_url=f"sqlite:///{workdir / 'bench.db'}", secret_key="bench",
                    instance_dir=str(workdir), imap_poll_interval=60)
    app = create_app(config)
    state = get_state(app)
    upgrade_database(state.engine)

    with DovecotServer(username=MAILBOX) as dovecot:
        started = time.perf_counter()
        size = fill_mailbox(dovecot, args.messages)
        print(f"mailbox: {args.messages} messages, {size / 1e6:.1f} MB, filled in {time.perf_counter() - started:.1f} s")

        with state.session_factory() as session:
            channel = add_channel(session, "email", "Bench", MAILBOX, {
                "imap_host": dovecot.host, "imap_port": dovecot.port, "imap_username": dovecot.username,
                "imap_password": dovecot.password, "imap_ssl": False,
                "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
            })
            session.commit()
            session.expunge(channel)
        settings = imap_settings(channel)

        limit_count, limit_seconds, limit_cpu = measure_limit(dovecot, settings.batch_size)
        limit_rate = limit_count / limit_seconds

        reader = MailboxReader(state, channel.id, threading.Event())
        with ImapReader(settings) as connection:
            parser_cpu_before = parser_cpu_seconds()
            started = time.perf_counter()
            cpu_started = time.process_time()
            stored = reader.import_new(connection, settings.folder)
            import_seconds = time.perf_counter() - started
            reader_cpu = time.process_time() - cpu_started
            parser_cpu = parser_cpu_seconds() - parser_cpu_before
            import_rate = stored / import_seconds

            polls = []
            for _ in range(20):
                started = time.perf_counter()
                reader.import_new(connection, settings.folder)
                polls.append(time.perf_counter() - started)

        latencies = measure_idle_latency(state, dovecot, args.latency_samples)

    print(f"limit (IMAP fetch + parse, no database): {limit_rate:,.0f} messages/s ({limit_count} in {limit_seconds:.1f} s)")
    print(f"import into SQLite: {import_rate:,.0f} messages/s ({stored} stored in {import_seconds:.1f} s)")
    print(f"ratio (import / limit): {import_rate / limit_rate:.2f}")
    print(f"CPU time per message: limit {limit_cpu / limit_count * 1e6:.0f} us, import {reader_cpu / stored * 1e6:.0f} us "
          f"in the reader and {parser_cpu / stored * 1e6:.0f} us in the parser process")
    print(f"empty poll at {args.messages} messages: median {statistics.median(polls) * 1000:.1f} ms, "
          f"max {max(polls) * 1000:.1f} ms")
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(f"new mail to message.created with IDLE: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms ({len(latencies)} samples)")
    state.engine.dispose()


def measure_idle_latency(state, dovecot: DovecotServer, samples: int) -> list[float]:
    """Append mail while the running reader idles; time APPEND to the published event."""
    published: dict[str, float] = {}
    arrived = threading.Condition()

    def record(events: list[dict]) -> None:
        with arrived:
            for event in events:
                if event["type"] == "message.created":
                    published[event["message"]["text"].strip()] = time.perf_counter()
            arrived.notify_all()

    add_publisher(state.session_factory, record)
    workers = Workers(state)
    workers.start()
    latencies = []
    try:
        time.sleep(2)  # let the reader reach IDLE
        for index in range(samples):
            text = f"latency probe {index}"
            message = EmailMessage()
            message["From"] = "probe@example.com"
            message["To"] = MAILBOX
            message["Subject"] = text
            message["Message-ID"] = f"<probe-{index}@example.com>"
            message.set_content(text)
            started = time.perf_counter()
            dovecot.append(message.as_bytes())
            with arrived:
                if not arrived.wait_for(lambda: text in published, timeout=90):
                    print(f"probe {index} not imported within 90 s")
                    continue
            latencies.append(published[text] - started)
            time.sleep(0.3)  # back to IDLE before the next probe
    finally:
        workers.stop(timeout=2)
    return latencies


if __name__ == "__main__":
    main()
