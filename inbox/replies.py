"""Agent replies: the message and its outbox row are committed together."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.types import DeliveryState
from inbox.errors import InvalidInput, NotFound
from inbox.events import record_event
from inbox.models import Agent, Conversation, Direction, Message, OutboxItem, utcnow
from inbox.serialize import conversation_to_dict, make_snippet, message_to_dict

# Twilio rejects WhatsApp bodies longer than this.
WHATSAPP_MAX_LENGTH = 1600
EMAIL_MAX_LENGTH = 100_000
# Enough of the References chain to thread in every client without an unbounded header.
MAX_REFERENCES = 20

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*:", re.IGNORECASE)


def new_message_id(domain: str) -> str:
    """Return a fresh RFC 5322 Message-ID (without angle brackets) on ``domain``."""
    return f"sb.{secrets.token_hex(12)}@{domain}"


def reply_subject(subject: str | None) -> str:
    subject = (subject or "").strip()
    if not subject:
        return "Re: your request"
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def create_reply(session: Session, conversation_id: int, agent_id: int, text: str) -> Message:
    """Add an agent's reply and its outbox row to the session's transaction.

    The caller commits; the dispatcher sends the reply after that. Returns the new message.
    Raises ``NotFound`` for an unknown conversation and ``InvalidInput`` for an empty or
    over-long text.
    """
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found", field="conversation_id")
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", field="agent_id")

    text = (text or "").strip()
    channel = conversation.channel
    limit = WHATSAPP_MAX_LENGTH if channel.kind == "whatsapp" else EMAIL_MAX_LENGTH
    if not text:
        raise InvalidInput("The reply is empty.", field="text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("The reply contains characters that are not valid Unicode.", field="text") from None
    if len(text) > limit:
        raise InvalidInput(
            f"The reply has {len(text)} characters; {channel.kind} replies allow at most {limit}.",
            field="text",
        )

    now = utcnow()
    message = Message(
        conversation=conversation,
        channel=channel,
        direction=Direction.OUTBOUND.value,
        agent=agent,
        text=text,
        created_at=now,
        delivery_status=DeliveryState.QUEUED.value,
    )
    session.add(message)
    if channel.kind == "email":
        with session.no_autoflush:
            _add_email_headers(session, conversation, message)
    session.add(OutboxItem(message=message, channel=channel, next_attempt_at=now))

    conversation.last_message_at = now
    conversation.snippet = make_snippet(text)
    session.flush()

    conversation_data = conversation_to_dict(conversation)
    record_event(
        session,
        "message.created",
        {"message": message_to_dict(message), "conversation": conversation_data},
        conversation.id,
    )
    record_event(session, "conversation.updated", {"conversation": conversation_data}, conversation.id)
    return message


def _add_email_headers(session: Session, conversation: Conversation, message: Message) -> None:
    """Give an email reply its own Message-ID and thread it under the customer's last mail."""
    domain = conversation.channel.address.rpartition("@")[2] or "switchboard.invalid"
    message.rfc_message_id = new_message_id(domain)
    # The provider id is our Message-ID too, so our own mail fetched back is a duplicate.
    message.provider_message_id = message.rfc_message_id
    message.subject = reply_subject(conversation.subject)

    # Answer the customer's newest mail; our own earlier reply only when there is none.
    parent = session.scalar(
        select(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.rfc_message_id.is_not(None),
        )
        .order_by((Message.direction == Direction.INBOUND.value).desc(), Message.id.desc())
        .limit(1)
    )
    if parent is not None:
        message.in_reply_to = parent.rfc_message_id
        chain = [ref for ref in (parent.references or []) if ref != parent.rfc_message_id]
        message.references = [*chain, parent.rfc_message_id][-MAX_REFERENCES:]
