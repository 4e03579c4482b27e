"""The activity log of a conversation, and the event that tells other agents about a change.

Every workflow change (status, priority, labels, team, assignee, merge) adds one
``ConversationActivity`` row per changed field, and one ``conversation.updated`` event per
conversation carries the conversation's new state with those rows. Both are written in the
caller's transaction, so the event is published only when the change commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from inbox.events import record_event
from inbox.models import Agent, Conversation, ConversationActivity, utcnow
from inbox.serialize import agent_ref, conversation_to_dict, isoformat


class Action:
    """The kinds of activity. ``details`` of each are documented in docs/api.md."""

    STATUS = "status"
    PRIORITY = "priority"
    ASSIGNEE = "assignee"
    TEAM = "team"
    LABEL_ADDED = "label_added"
    LABEL_REMOVED = "label_removed"
    MERGED_INTO = "merged_into"
    MERGED_FROM = "merged_from"


def add_activity(
    session: Session, conversation: Conversation, agent: Agent | None, action: str, details: dict[str, Any]
) -> ConversationActivity:
    """Add one activity row for ``conversation``; ``agent`` is None for a change the system made."""
    row = ConversationActivity(
        conversation_id=conversation.id, agent=agent, action=action, details=details, created_at=utcnow()
    )
    session.add(row)
    return row


def activity_to_dict(row: ConversationActivity) -> dict[str, Any]:
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "agent": agent_ref(row.agent),
        "action": row.action,
        "details": row.details,
        "created_at": isoformat(row.created_at),
    }


def record_conversation_change(
    session: Session, conversation: Conversation, activities: list[ConversationActivity]
) -> None:
    """Flush, then queue a ``conversation.updated`` event with the new state and ``activities``."""
    session.flush()
    record_event(
        session,
        "conversation.updated",
        {
            "conversation": conversation_to_dict(conversation),
            "activities": [activity_to_dict(row) for row in activities],
        },
        conversation.id,
    )


def list_activities(session: Session, conversation_id: int) -> list[ConversationActivity]:
    """Return the activity log of a conversation, oldest first."""
    return list(
        session.scalars(
            select(ConversationActivity)
            .where(ConversationActivity.conversation_id == conversation_id)
            .options(selectinload(ConversationActivity.agent))
            .order_by(ConversationActivity.id)
        )
    )
