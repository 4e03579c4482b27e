"""Reading conversations: the inbox list with filters and keyset pagination, one thread, read marks."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, Select, and_, or_, select, true
from sqlalchemy.orm import Session, selectinload

from inbox.errors import InvalidInput, NotFound
from inbox.events import record_event
from inbox.models import Contact, Conversation, ConversationStatus, Message, Priority, conversation_labels
from inbox.search import ConversationMatches, SearchQuery, join_newest_match, measure_density, parse_query
from inbox.serialize import conversation_to_dict

MAX_PAGE_SIZE = 200
STATUSES = tuple(status.value for status in ConversationStatus)
PRIORITIES = tuple(priority.value for priority in Priority)


@dataclass(frozen=True)
class ConversationFilter:
    """Which conversations a list shows. None leaves a field unfiltered, except ``status``:
    without one the list leaves out closed (merged) conversations.

    ``assignee`` is an agent id or "unassigned"; the API turns "me" into the caller's id.
    ``search`` keeps the conversations that a full-text search finds (``inbox.search``).
    """

    status: str | None = None
    assignee: int | Literal["unassigned"] | None = None
    team_id: int | None = None
    channel_id: int | None = None
    label_id: int | None = None
    priority: str | None = None
    contact_id: int | None = None
    search: SearchQuery | None = None

    def condition(self) -> ColumnElement[bool]:
        """Return the WHERE clause of this filter. With a label it needs ``conversation_labels``
        joined on the conversation (see ``select_conversations``)."""
        clauses: list[ColumnElement[bool]] = []
        # A label's rows carry copies of status and priority, so its index finds a page alone.
        columns = conversation_labels.c if self.label_id is not None else Conversation
        if self.status is None:
            clauses.append(columns.status != ConversationStatus.CLOSED.value)
        else:
            clauses.append(columns.status == self.status)
        if self.assignee == "unassigned":
            clauses.append(Conversation.assignee_id.is_(None))
        elif self.assignee is not None:
            clauses.append(Conversation.assignee_id == self.assignee)
        if self.team_id is not None:
            clauses.append(Conversation.team_id == self.team_id)
        if self.channel_id is not None:
            clauses.append(Conversation.channel_id == self.channel_id)
        if self.priority is not None:
            clauses.append(columns.priority == self.priority)
        if self.contact_id is not None:
            clauses.append(Conversation.contact_id == self.contact_id)
        if self.label_id is not None:
            clauses.append(conversation_labels.c.label_id == self.label_id)
        if self.search is not None:
            clauses.append(ConversationMatches(self.search))
        return and_(true(), *clauses)

    def activity(self) -> tuple[ColumnElement[datetime], ColumnElement[int]]:
        """Return the (last_message_at, conversation id) columns that the list sorts and pages
        by: the label's copies when a label filters, so the label's index gives the order."""
        if self.label_id is not None:
            return conversation_labels.c.last_message_at, conversation_labels.c.conversation_id
        return Conversation.last_message_at, Conversation.id

    def select_conversations(self) -> Select[tuple[Conversation]]:
        """Return the SELECT of the conversations this filter keeps, with ``conversation_labels``
        joined when it filters by a label."""
        query = select(Conversation)
        if self.label_id is not None:
            query = query.join(conversation_labels, conversation_labels.c.conversation_id == Conversation.id)
        return query.where(self.condition())


def parse_filter(args: Mapping[str, str], agent_id: int) -> ConversationFilter:
    """Return the filter that query parameters ask for. Raises ``InvalidInput`` naming the parameter.

    ``assignee`` is "me", "unassigned" or an agent id; ``team``, ``channel``, ``label`` and
    ``contact`` are ids; ``status`` and ``priority`` are values; ``q`` is search text, and
    an empty one searches nothing.
    """
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"Unknown status {status!r}; use {', '.join(STATUSES)}.", field="status")
    priority = args.get("priority") or None
    if priority is not None and priority not in PRIORITIES:
        raise InvalidInput(f"Unknown priority {priority!r}; use {', '.join(PRIORITIES)}.", field="priority")

    assignee: int | Literal["unassigned"] | None = None
    assignee_arg = args.get("assignee") or None
    if assignee_arg == "me":
        assignee = agent_id
    elif assignee_arg == "unassigned":
        assignee = "unassigned"
    elif assignee_arg is not None:
        assignee = _id_arg(assignee_arg, "assignee", 'an agent id, "me" or "unassigned"')

    return ConversationFilter(
        status=status,
        assignee=assignee,
        team_id=_optional_id(args, "team"),
        channel_id=_optional_id(args, "channel"),
        label_id=_optional_id(args, "label"),
        priority=priority,
        contact_id=_optional_id(args, "contact"),
        search=parse_query(args["q"]) if args.get("q", "").strip() else None,
    )


def _optional_id(args: Mapping[str, str], name: str) -> int | None:
    value = args.get(name) or None
    return None if value is None else _id_arg(value, name, "an id")


def _id_arg(value: str, name: str, expected: str) -> int:
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < 2**63:
        raise InvalidInput(f"{name} must be {expected}, not {value!r}.", field=name)
    return int(value)


@dataclass(frozen=True)
class Page:
    """One page of conversations. ``search`` is the filter's search as it ran, and
    ``search_hits`` the newest matching message id per conversation when the list statement
    found them (a dense search on SQLite), both for ``inbox.search.search_highlights``."""

    items: list[Conversation]
    next_cursor: str | None
    search: SearchQuery | None = None
    search_hits: dict[int, int] | None = None


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


def list_conversations(
    session: Session, limit: int = 50, cursor: str | None = None, where: ConversationFilter | None = None
) -> Page:
    """Return one page of the conversations that ``where`` selects, newest activity first.

    Raises ``InvalidInput`` for a limit outside 1..200 or a malformed cursor.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.", field="limit")
    where = where or ConversationFilter()
    if where.search is not None:
        where = replace(where, search=measure_density(session, where.search))
    last_message_at, conversation_id = where.activity()
    query = (
        where.select_conversations()
        .options(
            selectinload(Conversation.channel),
            selectinload(Conversation.contact).selectinload(Contact.identities),
            selectinload(Conversation.assignee),
            selectinload(Conversation.team),
            selectinload(Conversation.labels),
        )
        .order_by(last_message_at.desc(), conversation_id.desc())
        .limit(limit + 1)
    )
    if cursor:
        last_at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(last_message_at < last_at, and_(last_message_at == last_at, conversation_id < last_id))
        )

    hits: dict[int, int] | None = None
    if where.search is not None and where.search.dense and session.get_bind().dialect.name == "sqlite":
        # The dense test on SQLite finds each conversation's newest matching message, which the
        # snippets show, so the statement returns it and the snippets need no list of matches.
        found = session.execute(join_newest_match(query, where.search)).all()
        rows = [conversation for conversation, _ in found]
        hits = {conversation.id: hit for conversation, hit in found[:limit] if hit is not None}
    else:
        rows = list(session.scalars(query))
    has_more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(items[-1]) if has_more else None, where.search, hits)


def get_conversation_or_404(session: Session, conversation_id: int) -> Conversation:
    """Return the conversation without its messages, which ``list_messages`` pages. Raises ``NotFound``."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id} not found.", field="conversation_id")
    return conversation


@dataclass(frozen=True)
class MessagePage:
    """Messages of one conversation, oldest first. ``before`` is the id to pass for the
    next older page, or None when this page reaches the first message."""

    items: list[Message]
    before: int | None


def list_messages(session: Session, conversation_id: int, limit: int = 50, before: int | None = None) -> MessagePage:
    """Return the newest ``limit`` messages of a conversation, or those older than message ``before``.

    Keyset-paginated on the message id, which ``ix_messages_conversation`` covers, so a page
    costs the same however long the conversation is. Raises ``InvalidInput`` for a limit
    outside 1..200 and ``NotFound`` for an unknown conversation.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.", field="limit")
    if session.get(Conversation, conversation_id) is None:
        raise NotFound(f"Conversation {conversation_id} not found.", field="conversation_id")
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .options(
            selectinload(Message.attachments),
            selectinload(Message.agent),
            selectinload(Message.contact),
            selectinload(Message.outbox_item),
            selectinload(Message.parts),
            selectinload(Message.reply_to),
            selectinload(Message.email_fallback),
            selectinload(Message.satisfaction_answer),
        )
        .order_by(Message.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(Message.id < before)
    rows = list(session.scalars(query))
    items = rows[:limit]
    items.reverse()
    return MessagePage(items, items[0].id if len(rows) > limit else None)


def parse_before(value: str | None) -> int | None:
    """Return the message id of a ``before`` parameter. Raises ``InvalidInput``."""
    return None if not value else _id_arg(value, "before", "a message id from a previous page's before")


def lock_conversations(session: Session, conversation_ids: Iterable[int]) -> dict[int, Conversation]:
    """Lock the conversations' rows in id order and reload them; returns them by id.

    An event carries a snapshot of the whole conversation, so a transaction that publishes one
    must read it under the row lock. Read without it, a change another agent commits meanwhile
    (an assignment, say) would be undone on every screen by this transaction's older copy.
    Locking in id order keeps two such transactions from deadlocking.
    """
    ids = sorted(set(conversation_ids))
    if not ids:
        return {}
    rows = session.scalars(
        select(Conversation)
        .where(Conversation.id.in_(ids))
        .order_by(Conversation.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {conversation.id: conversation for conversation in rows}


def mark_conversation_read(session: Session, conversation_id: int) -> Conversation:
    """Reset the unread count; adds a ``conversation.updated`` event when it changes."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id} not found.", field="conversation_id")
    if not conversation.unread_count:
        return conversation
    conversation = lock_conversations(session, [conversation_id])[conversation_id]
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
