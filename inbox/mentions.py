"""@mentions in internal notes: finding the agents a note names, and their notifications.

A mention is ``@`` followed by an agent's full name or the local part of their email
address, matched without regard to case: ``@Ada Lovelace`` and ``@ada`` (for
ada@shop.example) both name Ada. The ``@`` must start the text or follow a character that
is not a letter, a digit or ``_``, so an email address in a note is not a mention. The
handle must end at the end of the text or before a character that cannot continue it.
Where several handles match at one ``@``, the longest is used. A handle of more than one
agent, or of none, is left as plain text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from inbox.errors import InvalidInput, NotFound
from inbox.models import Agent, Conversation, Mention, Note, utcnow
from inbox.serialize import agent_ref, isoformat, make_snippet

# Characters that may continue a handle, so a mention cannot end before one of them.
_HANDLE_CHARACTER = re.compile(r"[\w.\-+]")
MAX_MENTIONS_LISTED = 100


@dataclass(frozen=True)
class Mentionable:
    """An agent and the handles that name them in a note."""

    agent_id: int
    handles: tuple[str, ...]


@dataclass(frozen=True)
class FoundMention:
    """A mention in a note's text: the agent and where ``@handle`` starts and ends."""

    agent_id: int
    start: int
    end: int


def _fold(text: str) -> str:
    # lower() rather than casefold(), to agree with how re.IGNORECASE compares characters.
    return unicodedata.normalize("NFC", text).lower()


def handles_of(name: str | None, email: str) -> tuple[str, ...]:
    """Return the handles of an agent: the name with single spaces, and the email's local part."""
    handles = []
    if name and name.strip():
        handles.append(" ".join(name.split()))
    local = email.rpartition("@")[0]
    if local:
        handles.append(local)
    return tuple(handles)


def find_mentions(text: str, agents: Iterable[Mentionable]) -> list[FoundMention]:
    """Return the mentions in ``text`` in order of appearance.

    A handle that more than one agent has is ambiguous and is not a mention. Whitespace inside a
    mentioned name may be any run of spaces.
    """
    owners: dict[str, set[int]] = {}
    for agent in agents:
        for handle in agent.handles:
            owners.setdefault(_fold(handle), set()).add(agent.agent_id)
    # The longest handle is tried first, so "@Ada Lovelace" is matched before a handle "Ada".
    patterns = [
        (re.compile(r"\s+".join(re.escape(word) for word in handle.split(" ")), re.IGNORECASE), handle)
        for handle in sorted(owners, key=len, reverse=True)
    ]

    found: list[FoundMention] = []
    position = 0
    while (at := text.find("@", position)) != -1:
        position = at + 1
        if at > 0 and (text[at - 1].isalnum() or text[at - 1] == "_"):
            continue
        for pattern, handle in patterns:
            match = pattern.match(text, at + 1)
            if match is None or not _ends_handle(text, match.end()):
                continue
            ids = owners[handle]
            if len(ids) == 1:
                found.append(FoundMention(next(iter(ids)), at, match.end()))
                position = match.end()
            break
    return found


def _ends_handle(text: str, end: int) -> bool:
    """Return whether a handle may end at ``end``: a dot or dash there ends it only before a non-handle character."""
    if end >= len(text):
        return True
    if not _HANDLE_CHARACTER.match(text[end]):
        return True
    if text[end] in ".-+":
        return end + 1 >= len(text) or not _HANDLE_CHARACTER.match(text[end + 1])
    return False


def mentionable_agents(session: Session) -> list[Mentionable]:
    """Return every active agent with their handles."""
    rows = session.execute(select(Agent.id, Agent.name, Agent.email).where(Agent.is_active.is_(True)))
    return [Mentionable(agent_id, handles_of(name, email)) for agent_id, name, email in rows]


def add_mentions(session: Session, note: Note) -> list[Mention]:
    """Add a notification for every agent that ``note`` mentions, except its author.

    Returns the new mentions, one per agent however often the note names them.
    """
    agent_ids: list[int] = []
    for mention in find_mentions(note.text, mentionable_agents(session)):
        if mention.agent_id != note.agent_id and mention.agent_id not in agent_ids:
            agent_ids.append(mention.agent_id)
    mentions = [Mention(note=note, agent_id=agent_id, created_at=note.created_at) for agent_id in agent_ids]
    session.add_all(mentions)
    return mentions


def count_unread_mentions(session: Session, agent_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(Mention).where(Mention.agent_id == agent_id, Mention.read_at.is_(None))
    ) or 0


def list_mentions(session: Session, agent_id: int, *, unread_only: bool = False, limit: int = 50) -> list[Mention]:
    """Return the agent's mentions, newest first, at most ``limit`` of them."""
    query = (
        select(Mention)
        .where(Mention.agent_id == agent_id)
        .options(
            selectinload(Mention.note).selectinload(Note.agent),
            selectinload(Mention.note).selectinload(Note.conversation).selectinload(Conversation.contact),
        )
    )
    if unread_only:
        query = query.where(Mention.read_at.is_(None))
    return list(session.scalars(query.order_by(Mention.id.desc()).limit(min(limit, MAX_MENTIONS_LISTED))))


def mark_mentions_read(
    session: Session, agent_id: int, *, mention_ids: Sequence[Any] | None = None, conversation_id: int | None = None
) -> int:
    """Mark the agent's unread mentions read: the listed ids, those in one conversation, or all.

    Returns how many changed. Raises ``InvalidInput`` for ids that are not whole numbers and
    ``NotFound`` for an id that is not one of this agent's mentions.
    """
    query = update(Mention).where(Mention.agent_id == agent_id, Mention.read_at.is_(None))
    if mention_ids is not None:
        ids = _parse_ids(mention_ids)
        owned = set(session.scalars(select(Mention.id).where(Mention.agent_id == agent_id, Mention.id.in_(ids))))
        missing = [mention_id for mention_id in ids if mention_id not in owned]
        if missing:
            raise NotFound(f"Mention {missing[0]} not found: it is not one of your mentions.", field="mention_ids")
        query = query.where(Mention.id.in_(ids))
    if conversation_id is not None:
        query = query.where(Mention.note_id.in_(select(Note.id).where(Note.conversation_id == conversation_id)))
    result = session.execute(query.values(read_at=utcnow()).execution_options(synchronize_session=False))
    return result.rowcount or 0


def _parse_ids(values: Any) -> list[int]:
    if not isinstance(values, list) or not values or len(values) > MAX_MENTIONS_LISTED:
        raise InvalidInput(
            f"mention_ids must be a list of 1 to {MAX_MENTIONS_LISTED} mention ids.", field="mention_ids"
        )
    ids = []
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
            raise InvalidInput(f"mention_ids must contain mention ids, not {value!r}.", field="mention_ids")
        ids.append(value)
    return ids


def mention_to_dict(mention: Mention) -> dict[str, Any]:
    note = mention.note
    return {
        "id": mention.id,
        "note_id": note.id,
        "conversation_id": note.conversation_id,
        "contact_name": note.conversation.contact.name,
        "author": agent_ref(note.agent),
        "snippet": make_snippet(note.text),
        "created_at": isoformat(mention.created_at),
        "read_at": isoformat(mention.read_at),
    }
