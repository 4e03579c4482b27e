"""Email intake under faults, against a real Dovecot: a killed reader, a UIDVALIDITY reset
with mail arriving during the resync, a connection dropped mid-FETCH, and a 30 MB mail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import gateway.workers
from channels.email.imap import Checkpoint, FetchedMail, ImapReader, MailboxError
from gateway import Switchboard
from gateway.channel_settings import imap_settings
from gateway.config import Config
from gateway.workers import MailboxReader
from inbox.channel_config import add_channel
from inbox.models import Attachment, Channel, MailboxCheckpoint, Message, RawPayload
from inbox.storage import attachment_store
from tests.support.dovecot import DovecotServer
from tests.support.imap_proxy import ImapProxy

pytestmark = pytest.mark.dovecot

SUPPORT = "support@shop.example"
ROOT = Path(__file__).resolve().parents[2]

# Run by a child Python: import the channel's mailbox in a loop until the parent kills it.
READER_SCRIPT = """
import sys, threading
from dataclasses import replace
from channels.email.imap import ImapReader
from gateway import create_app, get_state
from gateway.channel_settings import imap_settings
from gateway.config import Config
from gateway.workers import MailboxReader

database_url, instance_dir, channel_id, batch_size = sys.argv[1:5]
state = get_state(create_app(Config(
    database_url=database_url, secret_key="test-secret-key", instance_dir=instance_dir,
)))

# The fifth batch stops inside its transaction, after its rows are written and before the
# commit, and creates a marker file. The test kills the reader there. A fast machine cannot
# finish the folder first, and the kill always cuts an open batch.
import time
from pathlib import Path
import gateway.workers
store_batch = gateway.workers.ingest_batch
batches = 0
def store_then_stop(*args, **kwargs):
    global batches
    results = store_batch(*args, **kwargs)
    batches += 1
    if batches == 5:
        Path(instance_dir).mkdir(parents=True, exist_ok=True)
        Path(instance_dir, "inside-batch").touch()
        time.sleep(3600)
    return results
gateway.workers.ingest_batch = store_then_stop

reader = MailboxReader(state, int(channel_id), threading.Event())
settings = replace(imap_settings(reader._channel()), batch_size=int(batch_size))
with ImapReader(settings) as connection:
    while True:
        reader.import_new(connection, settings.folder)
"""


def _mail(number: int, body: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"customer{number % 7}@customer.example"
    message["To"] = SUPPORT
    message["Subject"] = f"Question {number}"
    message["Message-ID"] = f"<q{number}@customer.example>"
    message.set_content(body or f"Body of question {number}.\n")
    return message.as_bytes()


def _append_many(server: DovecotServer, mails: list[bytes]) -> list[int]:
    """Append over one connection, because a login per mail makes 200 mails slow."""
    client = server.client()
    try:
        responses = [client.append("INBOX", raw) for raw in mails]
    finally:
        client.logout()
    return [int(response.split(b"APPENDUID ")[1].split(b"]")[0].split()[1]) for response in responses]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer(username=SUPPORT) as server:
        yield server


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> DovecotServer:
    dovecot.expunge_all()
    return dovecot


@pytest.fixture
def email_channel(state: Switchboard, mailbox: DovecotServer) -> Channel:
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop Support", SUPPORT,
            {
                "imap_host": mailbox.host, "imap_port": mailbox.port,
                "imap_username": mailbox.username, "imap_password": mailbox.password,
                "imap_ssl": False,
                "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
            },
        )
        session.commit()
        return channel


def _import(state: Switchboard, channel: Channel, **overrides: object) -> int:
    """Run one import pass on a fresh connection, as a restarted reader would."""
    reader = MailboxReader(state, channel.id, threading.Event())
    settings = replace(imap_settings(channel), **overrides)  # type: ignore[arg-type]
    with ImapReader(settings, timeout=30) as connection:
        return reader.import_new(connection, "INBOX")


def _stored_message_ids(state: Switchboard) -> list[str]:
    with state.session_factory() as session:
        return list(session.scalars(select(Message.provider_message_id).order_by(Message.id)))


def _message_count(state: Switchboard) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Message))


def _checkpoint(state: Switchboard) -> tuple[int | None, int | None]:
    with state.session_factory() as session:
        row = session.scalar(select(MailboxCheckpoint))
        return (row.uidvalidity, row.last_uid) if row else (None, None)


def _expected_ids(numbers: range | list[int]) -> list[str]:
    return [f"q{number}@customer.example" for number in numbers]


def test_killed_reader_restarts_without_duplicates(state, config: Config, mailbox, email_channel, tmp_path):
    uids = _append_many(mailbox, [_mail(number) for number in range(200)])
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-c", READER_SCRIPT,
        config.database_url, str(tmp_path / "child"), str(email_channel.id), "7",
    ]

    child = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.PIPE)
    try:
        # Wait until the reader stops inside its fifth batch, then kill without any cleanup.
        marker = tmp_path / "child" / "inside-batch"
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.poll() is None, child.stderr.read().decode(errors="replace")
        assert marker.exists(), "the reader never reached its fifth batch"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
        child.stderr.close()

    stored_at_kill = _message_count(state)
    _, checkpoint_at_kill = _checkpoint(state)
    # Four batches of seven were committed; the fifth, written but not committed, is gone.
    assert stored_at_kill == 28
    assert checkpoint_at_kill is None or checkpoint_at_kill <= uids[stored_at_kill - 1]

    # The restarted reader fetches again from the checkpoint, so the batch cut by the kill
    # comes back and must be recognised.
    assert _import(state, email_channel, batch_size=7) == 200 - stored_at_kill

    stored = _stored_message_ids(state)
    assert sorted(stored) == sorted(_expected_ids(range(200)))
    assert len(stored) == len(set(stored))
    assert _checkpoint(state)[1] == uids[-1]


class _AppendDuringFetch:
    """Wraps an ImapReader and appends mail to the server after the first yielded batch,
    so the mail arrives while a pass over the folder is running."""

    def __init__(self, reader: ImapReader, server: DovecotServer, mails: list[bytes]) -> None:
        self.reader = reader
        self.server = server
        self.mails = mails

    def fetch_new(self, checkpoint: Checkpoint) -> Iterator[list[FetchedMail]]:
        for index, batch in enumerate(self.reader.fetch_new(checkpoint)):
            yield batch
            if index == 0:
                _append_many(self.server, self.mails)


def test_uidvalidity_reset_with_mail_during_resync(state, mailbox, email_channel):
    _append_many(mailbox, [_mail(number) for number in range(6)])
    assert _import(state, email_channel) == 6

    new_uidvalidity = int(time.time()) + 54321
    mailbox.set_uidvalidity(new_uidvalidity)
    resync_uids = _append_many(mailbox, [_mail(number) for number in range(6, 9)])

    reader = MailboxReader(state, email_channel.id, threading.Event())
    settings = replace(imap_settings(email_channel), batch_size=2)
    with ImapReader(settings) as connection:
        during = _AppendDuringFetch(connection, mailbox, [_mail(number) for number in range(9, 12)])
        # The resync reads all nine mails again, but stores only the three new ones.
        assert reader.import_new(during, "INBOX") == 3  # type: ignore[arg-type]
        assert _checkpoint(state) == (new_uidvalidity, resync_uids[-1])

        # Mail appended during the resync has higher UIDs and comes with the next pass.
        assert reader.import_new(connection, "INBOX") == 3
        assert reader.import_new(connection, "INBOX") == 0

    stored = _stored_message_ids(state)
    assert sorted(stored) == sorted(_expected_ids(range(12)))
    assert len(stored) == len(set(stored))
    assert _checkpoint(state) == (new_uidvalidity, resync_uids[-1] + 3)


# Each batch response is about 5 KB, so every cut lands inside the second one.
@pytest.mark.parametrize("after_bytes", [1, 700, 3000])
def test_connection_drop_during_fetch_loses_nothing(state, mailbox, email_channel, after_bytes):
    uids = _append_many(mailbox, [_mail(number, ("x" * 70 + "\n") * 20) for number in range(9)])

    with ImapProxy(mailbox.host, mailbox.port) as proxy:
        # Each batch is two FETCHes (sizes, then bodies). The first batch passes, and the
        # second batch's body FETCH is cut part-way through its response.
        proxy.cut_during_fetch(after_bytes=after_bytes, skip_fetches=3)
        with pytest.raises(MailboxError):
            _import(state, email_channel, port=proxy.port, batch_size=3)
        assert proxy.cuts == 1

    assert _stored_message_ids(state) == _expected_ids(range(3))
    assert _checkpoint(state)[1] == uids[2]

    assert _import(state, email_channel, batch_size=3) == 6
    stored = _stored_message_ids(state)
    assert sorted(stored) == sorted(_expected_ids(range(9)))
    assert len(stored) == len(set(stored))
    assert _checkpoint(state)[1] == uids[-1]


def test_connection_drop_in_fetch_thread_loses_nothing(state, mailbox, email_channel):
    batch_size = MailboxReader.PARSE_IN_WORKER_FROM
    uids = _append_many(mailbox, [_mail(number) for number in range(3 * batch_size)])

    with ImapProxy(mailbox.host, mailbox.port) as proxy:
        # A first batch this large makes the reader fetch the next ones in a thread, and
        # the second batch's body FETCH is cut there.
        proxy.cut_during_fetch(after_bytes=700, skip_fetches=3)
        with pytest.raises(MailboxError):
            _import(state, email_channel, port=proxy.port, batch_size=batch_size)
        assert proxy.cuts == 1

    assert _stored_message_ids(state) == _expected_ids(range(batch_size))
    assert _checkpoint(state)[1] == uids[batch_size - 1]

    assert _import(state, email_channel, batch_size=batch_size) == 2 * batch_size
    assert sorted(_stored_message_ids(state)) == sorted(_expected_ids(range(3 * batch_size)))


def _large_mail(size: int) -> bytes:
    message = EmailMessage()
    message["From"] = "big@customer.example"
    message["To"] = SUPPORT
    message["Subject"] = "Scans"
    message["Message-ID"] = "<big@customer.example>"
    message.set_content("Three scans attached.\n")
    part_size = size // 3 * 3 // 4  # base64 grows the data by a third
    for index in range(3):
        data = os.urandom(part_size)
        message.add_attachment(data, maintype="application", subtype="pdf", filename=f"scan-{index}.pdf")
    return message.as_bytes()


def test_thirty_megabyte_mail_between_small_ones(state, mailbox, email_channel):
    big = _large_mail(30 * 1024 * 1024)
    assert len(big) > 30 * 1024 * 1024 * 0.95
    first = mailbox.append(_mail(1))
    mailbox.append(big)
    last = mailbox.append(_mail(2))

    assert _import(state, email_channel) == 3

    assert sorted(_stored_message_ids(state)) == sorted(
        ["big@customer.example", *_expected_ids([1, 2])]
    )
    with state.session_factory() as session:
        attachments = session.scalars(select(Attachment).order_by(Attachment.id)).all()
        assert [attachment.filename for attachment in attachments] == ["scan-0.pdf", "scan-1.pdf", "scan-2.pdf"]
        store = attachment_store(session)
        for attachment in attachments:
            # The bytes went to the attachment store, not into the database row.
            assert attachment.data is None
            assert store.path(attachment.storage_key).stat().st_size == attachment.size
        raw = session.scalar(
            select(RawPayload.body).join(Message, Message.raw_payload_id == RawPayload.id)
            .where(Message.provider_message_id == "big@customer.example")
        )
        assert raw.replace(b"\r\n", b"\n") == big.replace(b"\r\n", b"\n")
    assert _checkpoint(state)[1] == last
    assert first < last


def test_reader_outlives_database_outage(state, mailbox, email_channel, monkeypatch):
    """While the database is down, the reader can read neither its channel nor store the error.
    It waits and tries again instead of ending its thread."""
    monkeypatch.setattr(gateway.workers, "RECONNECT_BACKOFF_START", 0.1)
    failures = []

    def unavailable(*args: object, **kwargs: object) -> None:
        failures.append(args)
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database unavailable"))

    stop = threading.Event()
    reader = MailboxReader(state, email_channel.id, stop)
    read_channel = reader._channel
    reader._channel = lambda: unavailable() if len(failures) < 3 else read_channel()
    monkeypatch.setattr(gateway.workers, "record_channel_error", unavailable)
    mailbox.append(_mail(1))
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while _message_count(state) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(15)

    assert len(failures) >= 3
    assert _message_count(state) == 1


def _message_count(state: Switchboard) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Message))


def _set_password_with_long_backoff(state, email_channel, monkeypatch, password: str) -> None:
    """Store the channel's IMAP password, with a reconnect backoff of ten minutes and settings
    checked every 0.2 s."""
    monkeypatch.setattr(gateway.workers, "RECONNECT_BACKOFF_START", 600.0)
    monkeypatch.setattr(gateway.workers, "SETTINGS_CHECK_SECONDS", 0.2)
    with state.session_factory() as session:
        channel = session.get(Channel, email_channel.id)
        channel.settings = {**channel.settings, "imap_password": password}
        session.commit()


def test_corrected_password_ends_the_backoff(state, mailbox, email_channel, monkeypatch):
    """A reader that failed to sign in waits out a long backoff, unless an admin changes the
    channel's settings meanwhile: then it reconnects within a settings check."""
    _set_password_with_long_backoff(state, email_channel, monkeypatch, "a wrong password")
    mailbox.append(_mail(1))
    stop = threading.Event()
    thread = threading.Thread(target=MailboxReader(state, email_channel.id, stop).run, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: _channel_error(state) is not None)
        assert "rejected the sign-in" in _channel_error(state)
        _set_password_with_long_backoff(state, email_channel, monkeypatch, mailbox.password)

        assert _wait_for(lambda: _message_count(state) == 1)
    finally:
        stop.set()
        thread.join(15)


def test_password_corrected_before_backoff_starts(state, mailbox, email_channel, monkeypatch):
    """The backoff compares the settings with those of the failed sign-in, so a fix that lands
    between storing the error and the start of the wait is not taken for the old settings."""
    _set_password_with_long_backoff(state, email_channel, monkeypatch, "a wrong password")
    record_error = MailboxReader._record_error

    def record_error_then_fix(reader: MailboxReader, error: Exception) -> None:
        record_error(reader, error)
        _set_password_with_long_backoff(state, email_channel, monkeypatch, mailbox.password)

    monkeypatch.setattr(MailboxReader, "_record_error", record_error_then_fix)
    mailbox.append(_mail(1))
    stop = threading.Event()
    thread = threading.Thread(target=MailboxReader(state, email_channel.id, stop).run, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: _message_count(state) == 1)
    finally:
        stop.set()
        thread.join(15)


def _wait_for(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _channel_error(state: Switchboard) -> str | None:
    with state.session_factory() as session:
        return session.scalar(select(Channel.last_error))


def _recording_checkpoint_saves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the last UID of every checkpoint the reader saves."""
    saves: list[int] = []
    save = gateway.workers.save_checkpoint

    def recording(session, channel_id: int, folder: str, uidvalidity: int, last_uid: int) -> None:
        saves.append(last_uid)
        save(session, channel_id, folder, uidvalidity, last_uid)

    monkeypatch.setattr(gateway.workers, "save_checkpoint", recording)
    return saves


def test_import_saves_checkpoint_once_within_interval(state, mailbox, email_channel, monkeypatch):
    uids = _append_many(mailbox, [_mail(number) for number in range(9)])
    monkeypatch.setattr(gateway.workers, "CHECKPOINT_INTERVAL_SECONDS", 3600.0)
    saves = _recording_checkpoint_saves(monkeypatch)

    assert _import(state, email_channel, batch_size=3) == 9

    assert saves == [uids[-1]]
    assert _checkpoint(state)[1] == uids[-1]


def test_import_saves_checkpoint_per_batch_after_interval(state, mailbox, email_channel, monkeypatch):
    uids = _append_many(mailbox, [_mail(number) for number in range(9)])
    monkeypatch.setattr(gateway.workers, "CHECKPOINT_INTERVAL_SECONDS", 0.0)
    saves = _recording_checkpoint_saves(monkeypatch)

    assert _import(state, email_channel, batch_size=3) == 9

    assert saves == [uids[2], uids[5], uids[8]]
