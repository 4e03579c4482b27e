"""Merging two conversations of the same customer on the same channel.

The source's messages move to the target, which keeps its own status, takes the higher
priority of the two, the union of their labels, and the source's team and assignee when it
has none. The source is closed and points to the target (``merged_into_id``); its own
activity log and events stay with it, and a message threaded to it later goes to the target
(``inbox.workflow.follow_merges``). Both conversations get an activity row and a
``conversation.updated`` event, so the views of both update.

Only conversations on one channel merge, because a reply goes out on the conversation's
channel and email threading matches within a channel.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from inbox.activity import Action, add_activity, record_conversation_change
from inbox.errors import Conflict, InvalidInput, NotFound
from inbox.models import Agent, Conversation, Note, Message, Priority
from inbox.workflow import CLOSED, check_may_change

log = logging.getLogger(__name__)

_PRIORITY_RANK = {priority.value: rank for rank, priority in enumerate(Priority)}


def merge_conversations(session: Session, actor: Agent, source_id: int, target_id: int) -> Conversation:
    """Merge conversation ``source_id`` into ``target_id`` and return the target.

    Raises ``InvalidInput`` when both ids are the same, ``NotFound`` for a missing one,
    ``Conflict`` when either is closed or they differ in contact or channel, and
    ``Forbidden`` when the actor may not change either.
    """
    if source_id == target_id:
        raise InvalidInput("A conversation cannot be merged into itself.", field="target_id")
    locked = {
        conversation.id: conversation
        for conversation in session.scalars(
            select(Conversation)
            .where(Conversation.id.in_([source_id, target_id]))
            .options(selectinload(Conversation.labels), selectinload(Conversation.assignee))
            .order_by(Conversation.id)
            .with_for_update()
        )
    }
    source = locked.get(source_id)
    target = locked.get(target_id)
    if source is None:
        raise NotFound(f"Conversation {source_id} not found.", field="conversation_id")
    if target is None:
        raise NotFound(f"Conversation {target_id} not found.", field="target_id")
    check_may_change(actor, source)
    check_may_change(actor, target)
    if source.contact_id != target.contact_id:
        raise Conflict(
            f"Conversations {source_id} and {target_id} belong to different contacts; only one "
            "customer's conversations merge.",
            field="target_id",
        )
    if source.channel_id != target.channel_id:
        raise Conflict(
            f"Conversations {source_id} and {target_id} are on different channels; only conversations "
            "on one channel merge.",
            field="target_id",
        )

    moved = session.execute(
        update(Message).where(Message.conversation_id == source.id).values(conversation_id=target.id)
    ).rowcount
    # Internal notes follow the messages, so the kept conversation has the team's whole history.
    session.execute(
        update(Note)
        .where(Note.conversation_id == source.id)
        .values(conversation_id=target.id)
        .execution_options(synchronize_session=False)
    )
    _combine_into(target, source)
    # The moved rows were updated in SQL, so loaded collections of both are stale.
    session.expire(source, ["messages"])
    session.expire(target, ["messages"])

    target_activity = add_activity(
        session, target, actor, Action.MERGED_FROM, {"conversation_id": source.id, "message_count": moved}
    )
    source_activity = add_activity(
        session, source, actor, Action.MERGED_INTO, {"conversation_id": target.id, "message_count": moved}
    )
    source.status = CLOSED
    source.snoozed_until = None
    source.merged_into_id = target.id
    source.unread_count = 0
    record_conversation_change(session, source, [source_activity])
    record_conversation_change(session, target, [target_activity])
    log.info("agent %s merged conversation %s into %s (%s messages)", actor.id, source.id, target.id, moved)
    return target


def _combine_into(target: Conversation, source: Conversation) -> None:
    """Carry the source's unread messages, activity times, labels and routing over to the target."""
    target.unread_count = (target.unread_count or 0) + (source.unread_count or 0)
    if source.last_message_at > target.last_message_at:
        target.last_message_at = source.last_message_at
        target.snippet = source.snippet
    if source.last_inbound_at and (target.last_inbound_at is None or source.last_inbound_at > target.last_inbound_at):
        target.last_inbound_at = source.last_inbound_at
    if _PRIORITY_RANK.get(source.priority, 0) > _PRIORITY_RANK.get(target.priority, 0):
        target.priority = source.priority
    for label in source.labels:
        if label not in target.labels:
            target.labels.append(label)
    if target.team is None:
        target.team = source.team
    if target.assignee is None:
        target.assignee = source.assignee
