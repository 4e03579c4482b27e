"""Mailbox leases: on PostgreSQL one reader reads a folder, and a standby takes over.

Every worker process starts a reader for each folder of each email channel. The readers
here run in the test process, but each holds its lease on a database connection of its
own, as readers in separate worker processes do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select, text

import gateway.workers
from gateway import Switchboard
from gateway.locks import AdvisoryLock
from gateway.workers import MailboxReader, mailbox_lease_key
from inbox.models import Channel, Message, RawPayload
from tests.gateway.conftest import SUPPORT
from tests.support.dovecot import DovecotServer

pytestmark = pytest.mark.dovecot


def _mail(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"customer{number}@customer.example"
    message["To"] = SUPPORT
    message["Subject"] = f"Question {number}"
    message["Message-ID"] = f"<lease-{number}@customer.example>"
    message.set_content(f"Body of question {number}.\n")
    return message.as_bytes()


def _wait_until(condition: Callable[[], bool], description: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {description}")
        time.sleep(0.05)


def _count(state: Switchboard, model: type) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))


class _RunningReader:
    """A mailbox reader on a thread of its own, with its own stop flag."""

    def __init__(self, state: Switchboard, channel_id: int, connected: list[_RunningReader]) -> None:
        self.stop = threading.Event()
        self.reader = MailboxReader(state, channel_id, self.stop)
        read_connected = self.reader._read_connected

        def recording(channel: Channel) -> None:
            connected.append(self)
            read_connected(channel)

        self.reader._read_connected = recording
        self.thread = threading.Thread(target=self.reader.run, daemon=True)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def postgres_only(state: Switchboard) -> None:
    if state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serves one process, whose readers take no lease; the PostgreSQL pass runs this test")


@pytest.fixture
def quick_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.workers, "MAILBOX_LEASE_RETRY_SECONDS", 0.2)
    monkeypatch.setattr(gateway.workers, "IDLE_SLICE_SECONDS", 0.5)


@pytest.fixture
def readers(state: Switchboard, email_channel: Channel) -> Iterator[tuple[list[_RunningReader], list[_RunningReader]]]:
    """Two readers of the channel's inbox, not started, and the list of those that connected."""
    connected: list[_RunningReader] = []
    pair = [_RunningReader(state, email_channel.id, connected) for _ in range(2)]
    yield pair, connected
    for running in pair:
        running.stop.set()
    for running in pair:
        if running.thread.ident is not None:
            running.thread.join(15)


def test_lease_keys_differ_per_channel_and_folder():
    keys = {
        mailbox_lease_key(channel, folder)
        for channel in (1, 2, 2**31 - 1) for folder in ("INBOX", "Support/Ärger", "inbox")
    }

    assert len(keys) == 9
    assert all(0 < key < 2**63 for key in keys)


def test_standby_takes_over_lease(
    postgres_only, quick_leases, state, mailbox: DovecotServer, readers
):
    pair, connected = readers
    for running in pair:
        running.thread.start()
    mailbox.append(_mail(1))
    _wait_until(lambda: _count(state, Message) == 1, "the first mail is imported")
    # Both readers have tried by now. One reads and the other waits, and neither connected twice.
    time.sleep(1.0)
    assert len(connected) == 1
    leader = connected[0]
    standby = pair[1] if leader is pair[0] else pair[0]

    leader.halt()
    mailbox.append(_mail(2))
    _wait_until(lambda: _count(state, Message) == 2, "the standby imports the second mail")

    assert connected == [leader, standby]
    assert _count(state, RawPayload) == 2


def test_lost_lease_is_taken_again(
    postgres_only, quick_leases, state, mailbox: DovecotServer, email_channel, readers
):
    pair, connected = readers
    only = pair[0]
    only.thread.start()
    mailbox.append(_mail(1))
    _wait_until(lambda: _count(state, Message) == 1, "the first mail is imported")

    # A database restart or a network cut ends the lease's connection, and with it the lock.
    key = mailbox_lease_key(email_channel.id, "INBOX")
    with state.engine.connect() as connection:
        ended = connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid::bigint = :high AND objid::bigint = :low"
        ), {"high": key >> 32, "low": key & 0xFFFFFFFF}).all()
    assert ended == [(True,)]
    _wait_until(lambda: len(connected) == 2, "the reader takes its lease again and reconnects")
    mailbox.append(_mail(2))
    _wait_until(lambda: _count(state, Message) == 2, "the second mail is imported")

    assert connected == [only, only]
    assert _count(state, RawPayload) == 2


def test_lease_connection_uses_keepalives(postgres_only, state):
    lease = AdvisoryLock(state.engine, mailbox_lease_key(1, "INBOX"), "test lease")
    try:
        assert lease.try_acquire()
        settings = lease._connection.execute(text(
            "SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'),"
            " current_setting('tcp_keepalives_count')"
        )).one()
    finally:
        lease.dispose()

    assert tuple(settings) == ("30", "10", "3")
