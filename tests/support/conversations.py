"""Building conversations for workflow tests: customer WhatsApp messages through real ingestion."""

from __future__ import annotations

import itertools

from channels.types import Address, AddressKind, ChannelKind, InboundMessage
from channels.whatsapp.webhooks import RAW_FORMAT
from gateway import Switchboard
from inbox.agents import create_agent
from inbox.ingest import IngestResult, ingest_message
from inbox.models import Agent, Role
from tests.conftest import AGENT_PASSWORD

_SIDS = itertools.count(1)


def customer_message(number: str, text: str, name: str | None = None) -> InboundMessage:
    """Return a WhatsApp message from ``number`` with a fresh MessageSid."""
    sid = f"SM{next(_SIDS):032x}"
    return InboundMessage(
        channel_kind=ChannelKind.WHATSAPP,
        provider_message_id=sid,
        sender=Address(AddressKind.PHONE, number, name),
        raw=f"MessageSid={sid}&From=whatsapp:{number}&Body={text}".encode(),
        raw_format=RAW_FORMAT,
        text=text,
    )


def receive(state: Switchboard, channel_id: int, number: str, text: str = "Hello") -> IngestResult:
    """Ingest one customer message and return the result."""
    with state.session_factory() as session:
        result = ingest_message(session, channel_id, customer_message(number, text))
    assert result.message_id is not None
    return result


def add_agent(state: Switchboard, email: str, name: str, role: str = Role.AGENT.value, capacity: int | None = None) -> Agent:
    with state.session_factory() as session:
        agent = create_agent(session, email, name, AGENT_PASSWORD, role)
        agent.max_open_conversations = capacity
        session.commit()
        return agent
