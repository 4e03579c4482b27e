"""Email fixtures for the gateway tests: a real Dovecot mailbox, an SMTP server, the channel."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from channels.email.imap import ImapReader
from gateway import Switchboard
from gateway.channel_settings import imap_settings
from gateway.workers import MailboxReader
from inbox.channel_config import add_channel
from inbox.models import Channel
from tests.support.dovecot import DovecotServer
from tests.support.smtp_server import SmtpTestServer

SUPPORT = "support@shop.example"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    # Dovecot notices mail delivered just before IDLE starts at its next check (30 s by
    # default); a short interval keeps the live-reader tests quick.
    with DovecotServer(username=SUPPORT, extra_config="mailbox_idle_check_interval = 1 secs") as server:
        yield server


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> DovecotServer:
    dovecot.expunge_all()
    return dovecot


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def email_channel(state: Switchboard, mailbox: DovecotServer, smtp: SmtpTestServer) -> Channel:
    with state.session_factory() as session:
        channel = add_channel(
            session,
            "email",
            "Shop Support",
            SUPPORT,
            {
                "imap_host": mailbox.host,
                "imap_port": mailbox.port,
                "imap_username": mailbox.username,
                "imap_password": mailbox.password,
                "imap_ssl": False,
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "smtp_security": "none",
            },
        )
        session.commit()
        return channel


def import_mailbox(state: Switchboard, channel: Channel) -> int:
    """Run one import pass with a fresh IMAP connection, as a restarted reader would."""
    reader = MailboxReader(state, channel.id, threading.Event())
    with ImapReader(imap_settings(channel)) as connection:
        return reader.import_new(connection, "INBOX")
