"""Views filtered by a label: the conversation's copies on its label rows, and paging them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from inbox.conversations import ConversationFilter
from inbox.merge import merge_conversations
from inbox.models import Agent, Conversation, Label, conversation_labels, utcnow
from inbox.teams import create_label
from inbox.workflow import change_conversations, parse_changes
from tests.inbox.test_views import _ids
from tests.support.conversations import receive


def _change(state, agent_id: int, conversation_ids: list[int], body: dict) -> None:
    with state.session_factory() as session:
        change_conversations(session, session.get(Agent, agent_id), conversation_ids, parse_changes(body, utcnow()))
        session.commit()


def _stale_copies(state) -> list[tuple]:
    """Return the label rows whose copies differ from their conversation's columns."""
    with state.session_factory() as session:
        rows = session.execute(
            select(conversation_labels, Conversation.status, Conversation.priority, Conversation.last_message_at)
            .join(Conversation, Conversation.id == conversation_labels.c.conversation_id)
        ).all()
    assert rows, "the test needs labelled conversations"
    return [row for row in rows if (row.status, row.priority, row.last_message_at) != tuple(row[-3:])]


def _vip(state) -> int:
    with state.session_factory() as session:
        return session.scalar(select(Label.id).where(Label.name_key == "vip"))


def _expected(state, label: str, status: str | None = None, priority: str | None = None) -> list[int]:
    """Return the ids a labelled view shows, worked out from the conversations alone."""
    with state.session_factory() as session:
        conversations = session.scalars(select(Conversation)).all()
        selected = [
            c for c in conversations
            if any(item.name == label for item in c.labels)
            and (c.status == status if status else c.status != "closed")
            and (priority is None or c.priority == priority)
        ]
    selected.sort(key=lambda c: (c.last_message_at, c.id), reverse=True)
    return [c.id for c in selected]


@pytest.fixture
def labelled(state, agent, whatsapp_channel) -> list[int]:
    """Twelve conversations with the label "VIP", in three statuses and two priorities.
    Four of them share one last activity time, and three more conversations have another label."""
    ids = [receive(state, whatsapp_channel.id, f"+15557770{index:03d}").conversation_id for index in range(15)]
    with state.session_factory() as session:
        create_label(session, "VIP")
        create_label(session, "Other")
        session.commit()
    _change(state, agent.id, ids[:12], {"add_labels": ["VIP"]})
    _change(state, agent.id, ids[12:], {"add_labels": ["Other"]})
    _change(state, agent.id, ids[0:12:3], {"priority": "high"})
    _change(state, agent.id, ids[1:12:4], {"status": "pending"})
    _change(state, agent.id, ids[2:12:5], {"status": "resolved"})
    with state.session_factory() as session:
        # Equal activity times make the id decide the order, across page ends.
        same = utcnow() - timedelta(days=1)
        session.execute(update(Conversation).where(Conversation.id.in_(ids[4:8])).values(last_message_at=same))
        session.commit()
    return ids


def test_label_rows_copy_status_priority_and_activity(state, agent, whatsapp_channel, labelled):
    assert _stale_copies(state) == []

    _change(state, agent.id, [labelled[0]], {"status": "pending", "priority": "urgent"})
    receive(state, whatsapp_channel.id, "+15557770003", "a new message moves the activity")
    _change(state, agent.id, labelled[5:9], {"status": "resolved", "priority": "low"})
    _change(state, agent.id, [labelled[12]], {"add_labels": ["VIP"], "remove_labels": ["Other"]})
    with state.session_factory() as session:
        # Bulk SQL bypasses the ORM, but the database's triggers still copy the change.
        session.execute(update(Conversation).where(Conversation.id == labelled[9]).values(priority="urgent"))
        session.commit()

    assert _stale_copies(state) == []
    with state.session_factory() as session:
        row = session.execute(
            select(conversation_labels).where(conversation_labels.c.conversation_id == labelled[12])
        ).one()
        assert (row.status, row.priority) == ("open", "normal")


def test_merge_updates_label_copies(state, agent, whatsapp_channel):
    with state.session_factory() as session:
        label_id = create_label(session, "VIP").id
        session.commit()
    first = receive(state, whatsapp_channel.id, "+15557771000").conversation_id
    _change(state, agent.id, [first], {"status": "resolved"})
    # The contact writes again after the conversation was resolved: a second conversation.
    with state.session_factory() as session:
        session.execute(update(Conversation).where(Conversation.id == first).values(
            last_message_at=utcnow() - timedelta(days=30)))
        session.commit()
    second = receive(state, whatsapp_channel.id, "+15557771000").conversation_id
    assert second != first
    _change(state, agent.id, [first], {"status": "open", "add_labels": ["VIP"], "priority": "high"})
    with state.session_factory() as session:
        merge_conversations(session, session.get(Agent, agent.id), first, second)
        session.commit()

    assert _stale_copies(state) == []
    with state.session_factory() as session:
        copies = dict(session.execute(
            select(conversation_labels.c.conversation_id, conversation_labels.c.status)
        ).all())
    assert copies == {first: "closed", second: "open"}
    assert _ids(state, ConversationFilter(label_id=label_id), limit=1) == [second]


@pytest.mark.parametrize("status, priority", [(None, None), ("open", None), ("open", "high"), (None, "high"),
                                              ("resolved", None), ("pending", "normal")])
@pytest.mark.parametrize("limit", [1, 2, 5, 50])
def test_labelled_views_page_in_activity_order(state, labelled, status, priority, limit):
    expected = _expected(state, "VIP", status, priority)
    assert expected, "every combination selects a conversation"
    where = ConversationFilter(label_id=_vip(state), status=status, priority=priority)
    assert _ids(state, where, limit) == expected


def test_labelled_view_combines_with_other_filters(state, agent, labelled):
    _change(state, agent.id, labelled[:6], {"assignee_id": agent.id})
    mine = [i for i in _expected(state, "VIP", "open") if i in labelled[:6]]
    assert mine
    assert _ids(state, ConversationFilter(label_id=_vip(state), status="open", assignee=agent.id), limit=1) == mine


def test_label_copy_triggers_exist(state):
    with state.session_factory() as session:
        if session.get_bind().dialect.name == "sqlite":
            names = session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all()
        else:
            names = session.scalars(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).all()
    assert {"conversation_labels_copy", "conversations_label_copies"} <= set(names)


def test_sqlite_labelled_page_uses_label_index(state, labelled):
    with state.session_factory() as session:
        if session.get_bind().dialect.name != "sqlite":
            pytest.skip("PostgreSQL plans tiny tables with sequential scans")
        statement = ConversationFilter(label_id=_vip(state), status="open", priority="high").select_conversations().order_by(
            conversation_labels.c.last_message_at.desc(), conversation_labels.c.conversation_id.desc()
        ).limit(51)
        compiled = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = " | ".join(row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "ix_conversation_labels_label_status_priority_activity" in plan
    assert "TEMP B-TREE" not in plan
