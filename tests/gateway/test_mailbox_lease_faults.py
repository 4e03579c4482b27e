"""Mailbox readers under stop requests, and the keys of their leases.

A worker that is asked to stop must end promptly even in a long import, and the reader
that takes the folder over next must go on from the checkpoint without losing mail.
Each folder needs a lease of its own, or one of two folders would never be read.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from channels.email.imap import FetchedMail, ImapReader
from gateway import Switchboard
from gateway.channel_settings import imap_settings
from gateway.workers import MailboxReader, mailbox_lease_key
from inbox.mailboxes import load_checkpoint
from inbox.models import Channel, MailboxCheckpoint, Message
from tests.gateway.conftest import SUPPORT
from tests.support.dovecot import DovecotServer


def _mail(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"customer{number}@customer.example"
    message["To"] = SUPPORT
    message["Subject"] = f"Backlog {number}"
    message["Message-ID"] = f"<backlog-{number}@customer.example>"
    message.set_content(f"Body of backlog mail {number}.\n")
    return message.as_bytes()


def _append_many(server: DovecotServer, count: int) -> None:
    """Append over one connection, because a login per mail is slow."""
    client = server.client()
    try:
        for number in range(count):
            client.append("INBOX", _mail(number))
    finally:
        client.logout()


def _messages(state: Switchboard) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Message))


@pytest.mark.dovecot
def test_stop_ends_long_import_early(
    state: Switchboard, mailbox: DovecotServer, email_channel: Channel
):
    _append_many(mailbox, 9)
    stop = threading.Event()
    reader = MailboxReader(state, email_channel.id, stop)
    store_fetched = reader._store_fetched
    stored_batches: list[int] = []

    def storing_then_stopping(session, folder: str, batch: list[FetchedMail], *parsing_and_checkpoint) -> int:
        stored = store_fetched(session, folder, batch, *parsing_and_checkpoint)
        stored_batches.append(len(batch))
        # SIGTERM arrives while the first batch of the backlog is being stored.
        stop.set()
        return stored

    reader._store_fetched = storing_then_stopping
    settings = replace(imap_settings(email_channel), batch_size=3)
    with ImapReader(settings) as connection:
        imported = reader.import_new(connection, "INBOX")

    # The batch fetched while the first was stored is stored too, but the third is not fetched.
    assert stored_batches == [3, 3]
    assert imported == 6
    with state.session_factory() as session:
        assert load_checkpoint(session, email_channel.id, "INBOX")[1] == 6
        # Its last sync time stays unset, because the folder was not read to the end.
        assert session.scalar(select(MailboxCheckpoint.last_sync_at)) is None

    # The next reader (after a restart, or a standby) imports the rest, each mail once.
    with ImapReader(settings) as connection:
        assert MailboxReader(state, email_channel.id, threading.Event()).import_new(connection, "INBOX") == 3
    assert _messages(state) == 9


def test_folders_with_equal_crc32_get_own_leases():
    # "plumless" and "buckeroo" have the same CRC-32. Folder names are free text, so a
    # channel may read both, and sharing a key would leave one of them unread.
    first = mailbox_lease_key(1, "plumless")
    second = mailbox_lease_key(1, "buckeroo")

    assert first != second
