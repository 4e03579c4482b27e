"""ImapReader against a real Dovecot started on loopback."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from channels.email.imap import (
    Checkpoint,
    FetchedMail,
    ImapReader,
    MailboxAuthError,
    MailboxError,
)
from channels.errors import ChannelError
from tests.support.dovecot import DovecotServer
from tests.support.smtp_server import SmtpTestServer

pytestmark = pytest.mark.dovecot

# Dovecot without IDLE in its capability list, to drive the NOOP path.
NO_IDLE_CONFIG = "imap_capability = IMAP4rev1 LITERAL+ SASL-IR NAMESPACE UIDPLUS"


_folder_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    # One server for the module, because stopping Dovecot takes seconds; each test
    # gets its own folder instead.
    with DovecotServer() as server:
        yield server


@pytest.fixture
def own_dovecot() -> Iterator[DovecotServer]:
    """A server of the test's own, for tests that stop it."""
    with DovecotServer() as server:
        yield server


@pytest.fixture
def folder(dovecot: DovecotServer) -> str:
    name = f"Case{next(_folder_numbers)}"
    dovecot.create_folder(name)
    return name


@pytest.fixture
def reader(dovecot: DovecotServer, folder: str) -> Iterator[ImapReader]:
    with ImapReader(dovecot.settings(folder=folder), timeout=10) as connected:
        yield connected


def make_mail(number: int) -> bytes:
    return (
        f"From: customer{number}@example.com\r\n"
        f"To: support@shop.example\r\n"
        f"Subject: Question {number}\r\n"
        f"Message-ID: <question-{number}@example.com>\r\n"
        f"\r\n"
        f"Body of question {number}.\r\n"
    ).encode()


def fetch_batches(reader: ImapReader, checkpoint: Checkpoint) -> list[list[FetchedMail]]:
    return list(reader.fetch_new(checkpoint))


def uids_of(batches: list[list[FetchedMail]]) -> list[list[int]]:
    return [[mail.uid for mail in batch] for batch in batches]


def checkpoint_after(batches: list[list[FetchedMail]]) -> Checkpoint:
    last = batches[-1][-1]
    return Checkpoint(uidvalidity=last.uidvalidity, last_uid=last.uid)


def test_fetch_new_returns_all_mail_in_uid_order(dovecot, folder, reader):
    appended = [dovecot.append(make_mail(number), folder) for number in range(3)]

    batches = fetch_batches(reader, Checkpoint(uidvalidity=None, last_uid=0))

    assert uids_of(batches) == [appended]
    assert [mail.raw for mail in batches[0]] == [make_mail(number) for number in range(3)]
    assert len({mail.uidvalidity for mail in batches[0]}) == 1


def test_fetch_from_checkpoint_yields_nothing(dovecot, folder, reader):
    for number in range(3):
        dovecot.append(make_mail(number), folder)
    checkpoint = checkpoint_after(fetch_batches(reader, Checkpoint(None, 0)))

    assert fetch_batches(reader, checkpoint) == []


def test_mail_after_checkpoint_is_the_only_one_fetched(dovecot, folder, reader):
    for number in range(3):
        dovecot.append(make_mail(number), folder)
    checkpoint = checkpoint_after(fetch_batches(reader, Checkpoint(None, 0)))
    new_uid = dovecot.append(make_mail(3), folder)

    batches = fetch_batches(reader, checkpoint)

    assert uids_of(batches) == [[new_uid]]
    assert batches[0][0].raw == make_mail(3)


def test_batches_respect_batch_size(dovecot, folder):
    for number in range(5):
        dovecot.append(make_mail(number), folder)

    with ImapReader(dovecot.settings(folder=folder, batch_size=2)) as reader:
        batches = fetch_batches(reader, Checkpoint(None, 0))

    assert uids_of(batches) == [[1, 2], [3, 4], [5]]


def test_batches_stop_at_max_batch_bytes(dovecot, folder):
    padding = b"x" * 3000
    large = [make_mail(number) + padding for number in range(4)]
    for raw in large:
        dovecot.append(raw, folder)
    dovecot.append(make_mail(4), folder)

    # Room for two of the large mails, so they come two by two, then the small one joins the last pair.
    limit = 2 * len(large[0]) + 200
    with ImapReader(dovecot.settings(folder=folder, max_batch_bytes=limit)) as reader:
        batches = fetch_batches(reader, Checkpoint(None, 0))

    assert uids_of(batches) == [[1, 2], [3, 4, 5]]
    assert [mail.raw for batch in batches for mail in batch] == [*large, make_mail(4)]


def test_mail_above_max_batch_bytes_comes_alone(dovecot, folder):
    dovecot.append(make_mail(0), folder)
    dovecot.append(make_mail(1) + b"y" * 5000, folder)
    dovecot.append(make_mail(2), folder)

    with ImapReader(dovecot.settings(folder=folder, max_batch_bytes=1000)) as reader:
        batches = fetch_batches(reader, Checkpoint(None, 0))

    assert uids_of(batches) == [[1], [2], [3]]
    assert batches[1][0].truncated is False


def test_oversize_header_fetch_does_not_count_toward_batch_bytes(dovecot, folder):
    dovecot.append(make_mail(0), folder)
    dovecot.append(make_mail(1) + b"z" * 20_000, folder)
    dovecot.append(make_mail(2), folder)

    settings = dovecot.settings(folder=folder, max_message_bytes=10_000, max_batch_bytes=1000)
    with ImapReader(settings) as reader:
        batches = fetch_batches(reader, Checkpoint(None, 0))

    assert uids_of(batches) == [[1, 2, 3]]
    assert [mail.truncated for mail in batches[0]] == [False, True, False]


def test_uidvalidity_mismatch_refetches_everything(dovecot, folder, reader):
    for number in range(3):
        dovecot.append(make_mail(number), folder)
    checkpoint = checkpoint_after(fetch_batches(reader, Checkpoint(None, 0)))
    stale = Checkpoint(uidvalidity=checkpoint.uidvalidity + 1, last_uid=checkpoint.last_uid)

    batches = fetch_batches(reader, stale)

    assert uids_of(batches) == [[1, 2, 3]]


def test_uidvalidity_changed_on_server_refetches_everything(dovecot, folder, reader):
    for number in range(2):
        dovecot.append(make_mail(number), folder)
    checkpoint = checkpoint_after(fetch_batches(reader, Checkpoint(None, 0)))
    new_uidvalidity = checkpoint.uidvalidity + 1000
    dovecot.set_uidvalidity(new_uidvalidity, folder)

    batches = fetch_batches(reader, checkpoint)

    assert uids_of(batches) == [[1, 2]]
    assert {mail.uidvalidity for mail in batches[0]} == {new_uidvalidity}


def test_expunged_newest_mail_does_not_refetch_older(dovecot, folder, reader):
    for number in range(3):
        dovecot.append(make_mail(number), folder)
    dovecot.expunge([3], folder)

    # UIDNEXT is 4, so SEARCH runs for 3:*, for which servers return the highest UID, 2.
    assert fetch_batches(reader, Checkpoint(None, 2)) == []


def test_uid_expunged_between_search_and_fetch_is_skipped(dovecot, folder):
    for number in range(3):
        dovecot.append(make_mail(number), folder)

    with ImapReader(dovecot.settings(folder=folder, batch_size=1)) as reader:
        batches = reader.fetch_new(Checkpoint(None, 0))
        first = next(batches)
        dovecot.expunge([2], folder)
        rest = list(batches)

    assert uids_of([first, *rest]) == [[1], [3]]


def test_reading_sets_no_flags(dovecot, folder, reader):
    uid = dovecot.append(make_mail(1), folder)

    fetch_batches(reader, Checkpoint(None, 0))

    client = dovecot.client()
    client.select_folder(folder, readonly=True)
    flags = client.get_flags([uid])[uid]
    client.logout()
    assert b"\\Seen" not in flags


def test_wait_for_changes_returns_true_after_append_elsewhere(dovecot, folder, reader):
    assert reader.supports_idle
    appended = threading.Event()

    def append_from_another_connection() -> None:
        dovecot.append(make_mail(1), folder)
        appended.set()

    appender = threading.Thread(target=append_from_another_connection)
    appender.start()
    try:
        changed = reader.wait_for_changes(timeout=60)
    finally:
        appender.join()

    assert appended.is_set()
    assert changed is True


def test_stop_ends_idle_early(dovecot, folder, reader):
    stop = threading.Event()
    stopper = threading.Timer(0.3, stop.set)
    started = time.monotonic()
    stopper.start()
    try:
        changed = reader.wait_for_changes(timeout=600, stop=stop)
    finally:
        stopper.cancel()

    assert changed is False
    assert time.monotonic() - started < 60
    # IDLE ended cleanly, so the connection still works.
    dovecot.append(make_mail(1), folder)
    assert uids_of(fetch_batches(reader, Checkpoint(None, 0))) == [[1]]


def test_wait_sees_mail_since_fetch(dovecot, folder, reader):
    dovecot.append(make_mail(1), folder)
    fetch_batches(reader, Checkpoint(None, 0))
    dovecot.append(make_mail(2), folder)

    # timeout=0: the result must come from the check before IDLE, not from waiting.
    assert reader.wait_for_changes(timeout=0) is True


def test_wait_for_changes_returns_false_without_new_mail(dovecot, folder, reader):
    dovecot.append(make_mail(1), folder)
    fetch_batches(reader, Checkpoint(None, 0))

    assert reader.wait_for_changes(timeout=0.2) is False


def test_without_idle_wait_for_changes_uses_noop():
    with (
        DovecotServer(extra_config=NO_IDLE_CONFIG) as server,
        ImapReader(server.settings()) as reader,
    ):
        assert reader.supports_idle is False
        quiet = reader.wait_for_changes(timeout=600)
        server.append(make_mail(1))
        changed = reader.wait_for_changes(timeout=600)

    assert quiet is False
    assert changed is True


def test_wrong_password_raises_mailbox_auth_error(dovecot):
    reader = ImapReader(dovecot.settings(password="wrong"))

    with pytest.raises(MailboxAuthError) as raised:
        reader.connect()

    assert isinstance(raised.value, ChannelError)
    assert "login failed" in str(raised.value)
    assert "the server rejected the sign-in ([AUTHENTICATIONFAILED]" in str(raised.value)
    assert str(raised.value).endswith("Check the username and password.")
    assert "b'" not in str(raised.value)
    assert "wrong" not in str(raised.value)


def test_missing_folder_raises_mailbox_error(dovecot):
    reader = ImapReader(dovecot.settings(folder="NoSuchFolder"))

    with pytest.raises(MailboxError, match="select failed"):
        reader.connect()


def test_closed_port_raises_mailbox_error(own_dovecot):
    settings = own_dovecot.settings()
    own_dovecot.stop()

    with pytest.raises(MailboxError, match="connect failed"):
        ImapReader(settings, timeout=5).connect()


def test_smtp_port_named_as_wrong_port(dovecot):
    with SmtpTestServer() as smtp:
        settings = dovecot.settings(host=smtp.host, port=smtp.port)
        with pytest.raises(MailboxError) as raised:
            ImapReader(settings, timeout=5).connect()

    message = str(raised.value)
    assert "greeted as a mail submission (SMTP) server ('220 " in message
    assert message.endswith("check the IMAP port (usually 993, or 143 without TLS)")
    assert "b'" not in message


def test_server_stopped_mid_session_raises_mailbox_error(own_dovecot):
    own_dovecot.append(make_mail(1))

    with ImapReader(own_dovecot.settings()) as reader:
        own_dovecot.stop()
        with pytest.raises(MailboxError):
            fetch_batches(reader, Checkpoint(None, 0))


def test_methods_before_connect_raise_mailbox_error(dovecot):
    reader = ImapReader(dovecot.settings())

    with pytest.raises(MailboxError, match="not connected"):
        fetch_batches(reader, Checkpoint(None, 0))
    with pytest.raises(MailboxError, match="not connected"):
        reader.wait_for_changes(timeout=1)


def test_batch_size_below_one_is_rejected(dovecot):
    with pytest.raises(ValueError, match="batch_size"):
        ImapReader(dovecot.settings(batch_size=0))
