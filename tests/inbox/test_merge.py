"""Merging two conversations of one customer: every message and event is kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from inbox.activity import list_activities
from inbox.channel_config import add_channel
from inbox.errors import Conflict, Forbidden, InvalidInput, NotFound
from inbox.merge import merge_conversations
from inbox.models import Agent, Conversation, Note, Event, Message, utcnow
from inbox.notes import create_note
from inbox.teams import create_label
from inbox.workflow import change_conversation, parse_changes
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.conversations import add_agent, receive

GRACE = "+15551230001"


def _resolve(state, agent: Agent, conversation_id: int) -> None:
    _change(state, agent, conversation_id, {"status": "resolved"})


def _change(state, agent: Agent, conversation_id: int, body: dict) -> None:
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, agent.id), conversation_id, parse_changes(body, utcnow()))
        session.commit()


def _merge(state, agent: Agent, source_id: int, target_id: int) -> None:
    with state.session_factory() as session:
        merge_conversations(session, session.get(Agent, agent.id), source_id, target_id)
        session.commit()


def _two_conversations(state, agent, channel_id: int) -> tuple[int, int]:
    """Return two conversations of Grace: the first resolved, the second open."""
    first = receive(state, channel_id, GRACE, "My order 1234 is late").conversation_id
    receive(state, channel_id, GRACE, "It was due Monday")
    _resolve(state, agent, first)
    # A resolved conversation reopens on a new message, so the second one is started directly.
    with state.session_factory() as session:
        conversation = session.get(Conversation, first)
        conversation.last_message_at = utcnow() - timedelta(days=30)
        session.commit()
    second = receive(state, channel_id, GRACE, "Order 1234 still missing").conversation_id
    assert second != first
    return first, second


def test_merge_moves_every_message_and_keeps_events(state, agent, whatsapp_channel, published):
    source, target = _two_conversations(state, agent, whatsapp_channel.id)
    with state.session_factory() as session:
        messages_before = set(session.scalars(select(Message.id)))
        source_messages = set(session.scalars(select(Message.id).where(Message.conversation_id == source)))
        events_before = {(row.id, row.conversation_id) for row in session.scalars(select(Event))}
    published.clear()

    _merge(state, agent, source, target)

    with state.session_factory() as session:
        target_messages = set(session.scalars(select(Message.id).where(Message.conversation_id == target)))
        assert set(session.scalars(select(Message.id))) == messages_before
        assert source_messages <= target_messages
        assert target_messages == messages_before
        assert session.scalar(select(func.count()).where(Message.conversation_id == source)) == 0
        # Every earlier event is still stored, under the conversation it was about.
        events_after = {(row.id, row.conversation_id) for row in session.scalars(select(Event))}
        assert events_before <= events_after

        closed = session.get(Conversation, source)
        assert (closed.status, closed.merged_into_id, closed.unread_count) == ("closed", target, 0)
        kept = session.get(Conversation, target)
        assert kept.status == "open"
        assert kept.unread_count == 3
        assert [row.details for row in list_activities(session, target)] == [
            {"conversation_id": source, "message_count": 2}
        ]
        assert list_activities(session, source)[-1].action == "merged_into"

    assert [(event["type"], event["conversation"]["id"]) for event in published] == [
        ("conversation.updated", source), ("conversation.updated", target),
    ]
    assert published[0]["conversation"]["merged_into_id"] == target
    assert published[1]["activities"][0]["action"] == "merged_from"


def test_merge_combines_labels_priority_and_assignee(state, agent, whatsapp_channel):
    source, target = _two_conversations(state, agent, whatsapp_channel.id)
    with state.session_factory() as session:
        create_label(session, "Delivery")
        session.commit()
    _change(state, agent, source, {"status": "open"})
    _change(state, agent, source, {"priority": "urgent", "add_labels": ["Delivery"], "assignee_id": agent.id})

    _merge(state, agent, source, target)

    with state.session_factory() as session:
        kept = session.get(Conversation, target)
        assert kept.priority == "urgent"
        assert [label.name for label in kept.labels] == ["Delivery"]
        assert kept.assignee_id == agent.id


def test_merge_moves_internal_notes(state, agent, whatsapp_channel):
    source, target = _two_conversations(state, agent, whatsapp_channel.id)
    with state.session_factory() as session:
        create_note(session, source, agent.id, "Carrier says the parcel is in Leipzig")
        create_note(session, target, agent.id, "Customer called again")
        session.commit()

    _merge(state, agent, source, target)

    with state.session_factory() as session:
        notes = session.scalars(select(Note.text).where(Note.conversation_id == target)
                                .order_by(Note.id)).all()
        left = session.scalar(select(func.count()).where(Note.conversation_id == source))
    assert notes == ["Carrier says the parcel is in Leipzig", "Customer called again"]
    assert left == 0


def test_message_to_merged_goes_to_target(state, agent, whatsapp_channel):
    resolved, newer = _two_conversations(state, agent, whatsapp_channel.id)
    # WhatsApp threading finds the newest conversation that is not resolved: the closed one.
    _merge(state, agent, newer, resolved)

    result = receive(state, whatsapp_channel.id, GRACE, "Any update?")

    assert result.conversation_id == resolved
    with state.session_factory() as session:
        assert session.get(Conversation, newer).status == "closed"
        assert session.get(Conversation, resolved).status == "open"
        assert session.scalar(select(func.count()).where(Message.conversation_id == newer)) == 0


def test_merge_refuses_other_contacts_and_channels(state, agent, whatsapp_channel):
    grace = receive(state, whatsapp_channel.id, GRACE).conversation_id
    heidi = receive(state, whatsapp_channel.id, "+15551230002").conversation_id
    with state.session_factory() as session:
        other = add_channel(session, "whatsapp", "Sales", "+14155238887",
                            {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN})
        session.commit()
        other_id = other.id
    grace_elsewhere = receive(state, other_id, GRACE).conversation_id

    with pytest.raises(Conflict, match="different contacts"):
        _merge(state, agent, grace, heidi)
    with pytest.raises(Conflict, match="different channels"):
        _merge(state, agent, grace, grace_elsewhere)
    with pytest.raises(InvalidInput):
        _merge(state, agent, grace, grace)
    with pytest.raises(NotFound):
        _merge(state, agent, grace, 999)


def test_merged_conversation_cannot_change_or_merge_again(state, agent, whatsapp_channel):
    source, target = _two_conversations(state, agent, whatsapp_channel.id)
    _merge(state, agent, source, target)

    with pytest.raises(Conflict, match="was merged into"):
        _change(state, agent, source, {"status": "open"})
    with pytest.raises(Conflict, match="was merged into"):
        _merge(state, agent, source, target)


def test_merge_needs_permission_on_both(state, agent, whatsapp_channel):
    colleague = add_agent(state, "bob@example.com", "Bob Builder")
    source, target = _two_conversations(state, agent, whatsapp_channel.id)
    _change(state, colleague, target, {"assignee_id": colleague.id})

    with pytest.raises(Forbidden):
        _merge(state, agent, source, target)
