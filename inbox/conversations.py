"""Reading conversations: the inbox list with keyset pagination, one thread, read marks."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from inbox.errors import InvalidInput, NotFound
from inbox.events import record_event
from inbox.models import Contact, Conversation, Message
from inbox.serialize import conversation_to_dict

MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Page:
    items: list[Conversation]
    next_cursor: str | None


def encode_cursor(conversation: Conversation) -> str:
    key = f"{conversation.last_message_at.isoformat()}|{conversation.id}"
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Return the (last_message_at, id) position a cursor points after. Raises ``InvalidInput``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, _, conversation_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        position = datetime.fromisoformat(stamp), int(conversation_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("The cursor is invalid; use next_cursor from a previous page.", field="cursor") from None
    if position[0].tzinfo is None or not 0 < position[1] < 2**63:
        raise InvalidInput("The cursor is invalid; use next_cursor from a previous page.", field="cursor")
    return position


def list_conversations(session: Session, limit: int = 50, cursor: str | None = None) -> Page:
    """Return one page of conversations, newest activity first.

    Raises ``InvalidInput`` for a limit outside 1..200 or a malformed cursor.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.", field="limit")
    query = (
        select(Conversation)
        .options(
            selectinload(Conversation.channel),
            selectinload(Conversation.contact).selectinload(Contact.identities),
        )
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        last_at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Conversation.last_message_at < last_at,
                and_(Conversation.last_message_at == last_at, Conversation.id < last_id),
            )
        )
    rows = list(session.scalars(query))
    has_more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(items[-1]) if has_more else None)


def get_conversation_or_404(session: Session, conversation_id: int) -> Conversation:
    """Return the conversation with its messages loaded. Raises ``NotFound``."""
    conversation = session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id)
        .options(
            selectinload(Conversation.messages).selectinload(Message.attachments),
            selectinload(Conversation.messages).selectinload(Message.agent),
            selectinload(Conversation.messages).selectinload(Message.contact),
            selectinload(Conversation.messages).selectinload(Message.outbox_item),
        )
    )
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id} not found.", field="conversation_id")
    return conversation


def mark_conversation_read(session: Session, conversation_id: int) -> Conversation:
    """Reset the unread count; adds a ``conversation.updated`` event when it changes."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id} not found.", field="conversation_id")
    if conversation.unread_count:
        conversation.unread_count = 0
        session.flush()
        record_event(
            session,
            "conversation.updated",
            {"conversation": conversation_to_dict(conversation)},
            conversation.id,
        )
    return conversation
