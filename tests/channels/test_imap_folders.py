"""Folder names outside ASCII, and appending to a folder, against a real Dovecot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from channels.email.imap import Checkpoint, FolderError, ImapReader, MailboxError
from tests.support.dovecot import (
    SLASH_SEPARATOR_CONFIG,
    DovecotServer,
    folder_names_on_the_wire,
    read_folder,
)

pytestmark = pytest.mark.dovecot

COMPLAINTS = "Support/Ärger"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer(extra_config=SLASH_SEPARATOR_CONFIG) as server:
        server.create_folder(COMPLAINTS)
        server.create_folder("Sent")
        yield server


def _mail(number: int) -> bytes:
    return (
        f"From: customer{number}@example.com\r\n"
        f"To: support@shop.example\r\n"
        f"Subject: Complaint {number}\r\n"
        f"Message-ID: <complaint-{number}@example.com>\r\n"
        f"\r\n"
        f"Body of complaint {number}.\r\n"
    ).encode()


def test_non_ascii_folder_travels_as_modified_utf7(dovecot):
    assert b"Support/&AMQ-rger" in folder_names_on_the_wire(dovecot)


def test_non_ascii_folder_read_by_name(dovecot):
    uid = dovecot.append(_mail(1), folder=COMPLAINTS)

    with ImapReader(dovecot.settings(folder=COMPLAINTS), timeout=10) as reader:
        batches = list(reader.fetch_new(Checkpoint(None, 0)))

    assert [[mail.uid for mail in batch] for batch in batches] == [[uid]]
    assert b"Body of complaint 1." in batches[0][0].raw


def test_append_files_a_seen_copy(dovecot):
    raw = _mail(2)
    when = datetime(2026, 12, 4, 10, 30, tzinfo=timezone.utc)

    with ImapReader(dovecot.settings(folder="Sent"), timeout=10) as mailbox:
        mailbox.append(raw, when)

    ((flags, stored),) = read_folder(dovecot, "Sent")
    assert b"\\Seen" in flags
    assert stored == raw


def test_append_to_non_ascii_folder(dovecot):
    with ImapReader(dovecot.settings(folder=COMPLAINTS), timeout=10) as mailbox:
        mailbox.append(_mail(3), datetime.now(timezone.utc))

    assert _mail(3) in [raw for _, raw in read_folder(dovecot, COMPLAINTS)]


def test_missing_folder_raises_folder_error(dovecot):
    reader = ImapReader(dovecot.settings(folder="Support/Nowhere"), timeout=10)

    with pytest.raises(FolderError, match="select failed") as raised:
        reader.connect()

    assert "Support/Nowhere" in str(raised.value)
    assert isinstance(raised.value, MailboxError)


def test_wrong_password_is_no_folder_error(dovecot):
    reader = ImapReader(dovecot.settings(folder=COMPLAINTS, password="wrong"), timeout=10)

    with pytest.raises(MailboxError) as raised:
        reader.connect()

    assert not isinstance(raised.value, FolderError)
