"""Internal notes: messages from agents to agents inside a conversation.

A note is stored beside the conversation's messages but is never a ``Message``: it has no
channel and no outbox row, so it cannot reach the customer. It does not change the
conversation's snippet, activity time or unread count either, because the customer's side
of the conversation is unchanged. Each note is published as ``note.created`` to every agent,
and each agent it mentions gets a ``mention.created`` event of their own.

Merging conversations (``inbox.merge``) moves the notes along with the messages.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from inbox.errors import InvalidInput, NotFound
from inbox.events import record_event
from inbox.mentions import add_mentions, mention_to_dict
from inbox.models import Agent, Conversation, Mention, Note, utcnow
from inbox.serialize import agent_ref, isoformat

MAX_NOTE_LENGTH = 10_000


def create_note(session: Session, conversation_id: int, agent_id: int, text: Any) -> Note:
    """Add an agent's note and the notifications of the agents it mentions to the session.

    The caller commits. Returns the note. Raises ``NotFound`` for an unknown conversation or
    agent and ``InvalidInput`` for text that is missing, empty or longer than
    ``MAX_NOTE_LENGTH`` characters.
    """
    if not isinstance(text, str):
        raise InvalidInput("text is required and must be a string.", field="text")
    text = text.strip()
    if not text:
        raise InvalidInput("The note is empty.", field="text")
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidInput(
            f"The note has {len(text)} characters, but notes allow at most {MAX_NOTE_LENGTH}.", field="text"
        )
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found", field="conversation_id")
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", field="agent_id")

    note = Note(conversation=conversation, agent=agent, text=text, created_at=utcnow())
    session.add(note)
    mentions = add_mentions(session, note)
    session.flush()

    record_event(session, "note.created", {"note": note_to_dict(note)}, conversation.id)
    for mention in mentions:
        # recipient_id keeps the event to the mentioned agent (see gateway.realtime).
        record_event(
            session, "mention.created",
            {"mention": mention_to_dict(mention), "recipient_id": mention.agent_id},
            conversation.id,
        )
    return note


def list_notes(session: Session, conversation_id: int) -> list[Note]:
    """Return the conversation's notes, oldest first."""
    query = (
        select(Note)
        .where(Note.conversation_id == conversation_id)
        .options(selectinload(Note.agent), selectinload(Note.mentions).selectinload(Mention.agent))
        .order_by(Note.id)
    )
    return list(session.scalars(query))


def note_to_dict(note: Note) -> dict[str, Any]:
    return {
        "id": note.id,
        "conversation_id": note.conversation_id,
        "author": agent_ref(note.agent),
        "text": note.text,
        "mentions": [agent_ref(mention.agent) for mention in note.mentions],
        "created_at": isoformat(note.created_at),
    }
