"""Building contacts for the contact tests: customer mail and WhatsApp through real ingestion."""

from __future__ import annotations

import itertools

from channels.types import Address, AddressKind, ChannelKind, InboundMessage
from gateway import Switchboard
from inbox.channel_config import add_channel
from inbox.ingest import IngestResult, ingest_message
from inbox.models import Channel, Conversation

_MAIL_IDS = itertools.count(1)


def add_email_channel(state: Switchboard) -> Channel:
    """Add an email channel whose servers are never contacted: mail is ingested directly."""
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop mail", "support@shop.example",
            {
                "imap_host": "127.0.0.1", "imap_port": 1143, "imap_username": "support",
                "imap_password": "secret", "imap_ssl": False,
                "smtp_host": "127.0.0.1", "smtp_port": 1025, "smtp_security": "none",
            },
        )
        session.commit()
        return channel


def mail_from(address: str, text: str, name: str | None = None, subject: str = "Order 1234") -> InboundMessage:
    """Return a customer's email with a fresh Message-ID."""
    message_id = f"mail{next(_MAIL_IDS)}@example.org"
    return InboundMessage(
        channel_kind=ChannelKind.EMAIL,
        provider_message_id=message_id,
        sender=Address(AddressKind.EMAIL, address, name),
        raw=f"Message-ID: <{message_id}>\r\nFrom: {address}\r\nSubject: {subject}\r\n\r\n{text}\r\n".encode(),
        raw_format="rfc822",
        subject=subject,
        text=text,
    )


def receive_mail(
    state: Switchboard, channel_id: int, address: str, text: str, name: str | None = None, subject: str = "Order 1234"
) -> IngestResult:
    """Ingest one customer email and return the result."""
    with state.session_factory() as session:
        result = ingest_message(session, channel_id, mail_from(address, text, name, subject))
    assert result.message_id is not None
    return result


def contact_of(state: Switchboard, conversation_id: int) -> int:
    with state.session_factory() as session:
        return session.get(Conversation, conversation_id).contact_id
