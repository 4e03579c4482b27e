"""The conversation workflow on a real database: statuses and snooze, labels, permissions,
bulk changes that apply to all or none, and the activity log with its events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from gateway.workers import Workers
from inbox.activity import list_activities
from inbox.errors import Conflict, Forbidden, InvalidInput, NotFound
from inbox.models import Agent, Conversation, ConversationActivity, Event, Label, Role, utcnow
from inbox.teams import create_label, create_team
from inbox.workflow import (
    BulkRejected,
    Changes,
    change_conversation,
    change_conversations,
    parse_changes,
    wake_snoozed_conversations,
)
from tests.support.conversations import add_agent, receive

GRACE = "+15551230001"
HEIDI = "+15551230002"
IVAN = "+15551230003"


@pytest.fixture
def manager(state) -> Agent:
    return add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)


def _change(state, agent: Agent, conversation_id: int, **body) -> dict:
    with state.session_factory() as session:
        actor = session.get(Agent, agent.id)
        conversation = change_conversation(session, actor, conversation_id, parse_changes(body, utcnow()))
        session.commit()
        return {"status": conversation.status, "snoozed_until": conversation.snoozed_until,
                "priority": conversation.priority, "assignee_id": conversation.assignee_id}


def _conversation(state, conversation_id: int) -> Conversation:
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        session.expunge(conversation)
        return conversation


def _actions(state, conversation_id: int) -> list[tuple[str, dict]]:
    with state.session_factory() as session:
        return [(row.action, row.details) for row in list_activities(session, conversation_id)]


# ---- Statuses and snooze ----------------------------------------------------------------


def test_status_moves_between_agent_statuses(state, agent, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id

    assert _change(state, agent, conversation_id, status="pending")["status"] == "pending"
    assert _change(state, agent, conversation_id, status="resolved")["status"] == "resolved"
    assert _change(state, agent, conversation_id, status="open")["status"] == "open"

    assert [details for _, details in _actions(state, conversation_id)] == [
        {"from": "open", "to": "pending"},
        {"from": "pending", "to": "resolved"},
        {"from": "resolved", "to": "open"},
    ]


def test_same_status_again_records_nothing(state, agent, whatsapp_channel, published):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    published.clear()

    _change(state, agent, conversation_id, status="open")

    assert _actions(state, conversation_id) == []
    assert published == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "snoozed"}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": "2000-01-01T00:00:00Z"}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": "2999-01-01T00:00:00Z"}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": "tomorrow"}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": "2030-01-01T09:00:00"}, "snoozed_until"),
        ({"status": "open", "snoozed_until": "2030-01-01T09:00:00Z"}, "snoozed_until"),
        ({"status": "closed"}, "status"),
        ({"status": "done"}, "status"),
        ({"priority": "critical"}, "priority"),
        ({"assignee_id": "someone"}, "assignee_id"),
        ({"assignee_id": True}, "assignee_id"),
        ({"team_id": "sales"}, "team_id"),
        ({"add_labels": "billing"}, "add_labels"),
        ({"add_labels": ["  "]}, "add_labels"),
        ({"add_labels": ["<script>"]}, "add_labels"),
        ({"add_labels": ["x" * 51]}, "add_labels"),
        ({"add_labels": ["Billing"], "remove_labels": ["billing"]}, "remove_labels"),
        ({"colour": "red"}, "colour"),
        ({}, None),
    ],
)
def test_invalid_changes_name_the_field(body, field):
    with pytest.raises(InvalidInput) as raised:
        parse_changes(body, utcnow())
    assert raised.value.field == field


def test_snooze_wakes_when_its_time_comes(state, agent, whatsapp_channel, published):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    until = utcnow() + timedelta(hours=2)
    changed = _change(state, agent, conversation_id, status="snoozed", snoozed_until=until.isoformat())
    assert changed["status"] == "snoozed"
    assert changed["snoozed_until"] == until
    published.clear()

    with state.session_factory() as session:
        assert wake_snoozed_conversations(session, until - timedelta(seconds=1)) == []
    assert _conversation(state, conversation_id).status == "snoozed"
    assert published == []

    with state.session_factory() as session:
        assert wake_snoozed_conversations(session, until) == [conversation_id]
    woken = _conversation(state, conversation_id)
    assert woken.status == "open"
    assert woken.snoozed_until is None
    assert _actions(state, conversation_id)[-1] == (
        "status", {"from": "snoozed", "to": "open", "reason": "snooze_ended"}
    )
    (event,) = published
    assert event["type"] == "conversation.updated"
    assert event["conversation"]["status"] == "open"
    assert event["activities"][0]["agent"] is None

    with state.session_factory() as session:
        assert wake_snoozed_conversations(session, until + timedelta(hours=1)) == []


def test_snooze_wake_job_opens_due_conversations(state, agent, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    _change(state, agent, conversation_id, status="snoozed",
            snoozed_until=(utcnow() + timedelta(hours=1)).isoformat())
    # The hour passes: the snooze time is moved back instead of the clock forward.
    with state.session_factory() as session:
        session.get(Conversation, conversation_id).snoozed_until = utcnow() - timedelta(seconds=1)
        session.commit()

    workers = Workers(state)
    workers.wake_snoozed()

    assert _conversation(state, conversation_id).status == "open"


def test_snooze_wake_job_is_scheduled(state):
    workers = Workers(state)
    workers.start()
    try:
        job = workers.scheduler.get_job("wake_snoozed")
        assert job is not None
        assert job.func == workers.wake_snoozed
    finally:
        workers.stop(timeout=2)


@pytest.mark.parametrize("status", ["snoozed", "pending", "resolved"])
def test_customer_message_wakes_conversation(state, agent, whatsapp_channel, published, status):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    body = {"status": status}
    if status == "snoozed":
        body["snoozed_until"] = (utcnow() + timedelta(days=3)).isoformat()
    _change(state, agent, conversation_id, **body)
    published.clear()

    result = receive(state, whatsapp_channel.id, GRACE, "Any news?")

    assert result.conversation_id == conversation_id
    woken = _conversation(state, conversation_id)
    assert woken.status == "open"
    assert woken.snoozed_until is None
    assert _actions(state, conversation_id)[-1] == (
        "status", {"from": status, "to": "open", "reason": "customer_message"}
    )
    assert [event["conversation"]["status"] for event in published] == ["open", "open"]


def test_snooze_can_move_to_a_new_time(state, agent, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    first = utcnow() + timedelta(hours=1)
    later = utcnow() + timedelta(days=1)
    _change(state, agent, conversation_id, status="snoozed", snoozed_until=first.isoformat())

    assert _change(state, agent, conversation_id, status="snoozed", snoozed_until=later.isoformat())["snoozed_until"] == later
    assert len(_actions(state, conversation_id)) == 2


# ---- Priority, labels, assignee ---------------------------------------------------------


def test_priority_defaults_to_normal_and_changes(state, agent, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    assert _conversation(state, conversation_id).priority == "normal"

    assert _change(state, agent, conversation_id, priority="urgent")["priority"] == "urgent"
    assert _actions(state, conversation_id) == [("priority", {"from": "normal", "to": "urgent"})]


def test_manager_creates_label_on_first_use_once(state, manager, whatsapp_channel):
    first = receive(state, whatsapp_channel.id, GRACE).conversation_id
    second = receive(state, whatsapp_channel.id, HEIDI).conversation_id

    _change(state, manager, first, add_labels=["Billing"])
    _change(state, manager, second, add_labels=["BILLING", "Refund request"])

    with state.session_factory() as session:
        assert [label.name for label in session.scalars(select(Label).order_by(Label.id))] == ["Billing", "Refund request"]
        assert [label.name for label in session.get(Conversation, second).labels] == ["Billing", "Refund request"]
    assert _actions(state, first) == [("label_added", {"label": {"id": 1, "name": "Billing"}})]


def test_agent_uses_labels_but_cannot_create_them(state, agent, manager, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    with state.session_factory() as session:
        create_label(session, "VIP")
        session.commit()

    _change(state, agent, conversation_id, add_labels=["vip"])
    with pytest.raises(Forbidden, match="only managers and admins can create labels"):
        _change(state, agent, conversation_id, add_labels=["New label"])

    _change(state, agent, conversation_id, remove_labels=["VIP"])
    assert [action for action, _ in _actions(state, conversation_id)] == ["label_added", "label_removed"]


def test_label_names_are_unique_ignoring_case(state):
    with state.session_factory() as session:
        create_label(session, "Billing")
        session.commit()
        with pytest.raises(Conflict):
            create_label(session, "billing")


def test_team_names_are_unique_ignoring_case(state, agent):
    with state.session_factory() as session:
        create_team(session, "Support", [agent.id])
        session.commit()
        with pytest.raises(Conflict):
            create_team(session, "SUPPORT")
        with pytest.raises(NotFound):
            create_team(session, "Sales", [agent.id + 100])


def test_assign_and_hand_over(state, agent, whatsapp_channel):
    colleague = add_agent(state, "bob@example.com", "Bob Builder")
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id

    assert _change(state, agent, conversation_id, assignee_id=agent.id)["assignee_id"] == agent.id
    assert _change(state, agent, conversation_id, assignee_id=colleague.id)["assignee_id"] == colleague.id

    assert _actions(state, conversation_id) == [
        ("assignee", {"from": None, "to": {"id": agent.id, "name": "Ada Agent"}, "automatic": False}),
        ("assignee", {"from": {"id": agent.id, "name": "Ada Agent"},
                      "to": {"id": colleague.id, "name": "Bob Builder"}, "automatic": False}),
    ]


def test_agent_cannot_change_a_colleagues_conversation(state, agent, manager, whatsapp_channel):
    colleague = add_agent(state, "bob@example.com", "Bob Builder")
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    _change(state, colleague, conversation_id, assignee_id=colleague.id)

    with pytest.raises(Forbidden, match="assigned to Bob Builder"):
        _change(state, agent, conversation_id, status="resolved")

    assert _change(state, manager, conversation_id, status="resolved")["status"] == "resolved"


def test_unknown_assignee_is_not_found(state, agent, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    with pytest.raises(NotFound) as raised:
        _change(state, agent, conversation_id, assignee_id=999)
    assert raised.value.field == "assignee_id"


# ---- Bulk changes -----------------------------------------------------------------------


def test_bulk_change_applies_to_every_conversation(state, agent, whatsapp_channel, published):
    ids = [receive(state, whatsapp_channel.id, number).conversation_id for number in (GRACE, HEIDI, IVAN)]
    published.clear()

    with state.session_factory() as session:
        actor = session.get(Agent, agent.id)
        changes = Changes(status="pending", priority="high", assignee_id=agent.id)
        change_conversations(session, actor, ids, changes)
        session.commit()

    for conversation_id in ids:
        conversation = _conversation(state, conversation_id)
        assert (conversation.status, conversation.priority, conversation.assignee_id) == ("pending", "high", agent.id)
    assert [event["conversation"]["id"] for event in published] == ids
    assert all(len(event["activities"]) == 3 for event in published)


def test_bulk_change_is_all_or_nothing(state, agent, whatsapp_channel, published):
    colleague = add_agent(state, "bob@example.com", "Bob Builder")
    ids = [receive(state, whatsapp_channel.id, number).conversation_id for number in (GRACE, HEIDI, IVAN)]
    _change(state, colleague, ids[1], assignee_id=colleague.id)
    with state.session_factory() as session:
        activities_before = session.scalar(select(func.count()).select_from(ConversationActivity))
        events_before = session.scalar(select(func.count()).select_from(Event))
    published.clear()

    with state.session_factory() as session:
        actor = session.get(Agent, agent.id)
        with pytest.raises(BulkRejected) as raised:
            change_conversations(session, actor, [*ids, 404], Changes(status="resolved", priority="low"))
        session.commit()

    assert raised.value.code == "forbidden"
    assert [(item["conversation_id"], item["code"]) for item in raised.value.items()] == [
        (ids[1], "forbidden"), (404, "not_found"),
    ]
    for conversation_id in ids:
        conversation = _conversation(state, conversation_id)
        assert (conversation.status, conversation.priority) == ("open", "normal")
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ConversationActivity)) == activities_before
        assert session.scalar(select(func.count()).select_from(Event)) == events_before
    assert published == []


@pytest.fixture
def urgent_rejected(state):
    """Make the database reject setting any conversation's priority to urgent, as a failing
    constraint or a lost connection would in the middle of a bulk change."""
    with state.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text(
                "CREATE TRIGGER reject_urgent BEFORE UPDATE ON conversations WHEN NEW.priority = 'urgent' "
                "BEGIN SELECT RAISE(ABORT, 'urgent rejected by trigger'); END"
            ))
        else:
            connection.execute(text(
                "CREATE FUNCTION reject_urgent() RETURNS trigger AS $$ BEGIN "
                "IF NEW.priority = 'urgent' THEN RAISE EXCEPTION 'urgent rejected by trigger'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            ))
            connection.execute(text(
                "CREATE TRIGGER reject_urgent BEFORE UPDATE ON conversations "
                "FOR EACH ROW EXECUTE FUNCTION reject_urgent()"
            ))
    yield
    with state.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER reject_urgent"))
        else:
            connection.execute(text("DROP TRIGGER reject_urgent ON conversations"))
            connection.execute(text("DROP FUNCTION reject_urgent()"))


def test_bulk_change_database_error_changes_nothing(state, agent, whatsapp_channel, published, urgent_rejected):
    ids = [receive(state, whatsapp_channel.id, number).conversation_id for number in (GRACE, HEIDI)]
    published.clear()

    with state.session_factory() as session:
        actor = session.get(Agent, agent.id)
        with pytest.raises(DBAPIError, match="urgent rejected by trigger"):
            change_conversations(session, actor, ids, Changes(status="resolved", priority="urgent"))
            session.commit()
        session.rollback()

    for conversation_id in ids:
        conversation = _conversation(state, conversation_id)
        assert (conversation.status, conversation.priority) == ("open", "normal")
        assert _actions(state, conversation_id) == []
    assert published == []


@pytest.mark.parametrize("ids", [[], [0], ["1"], [True], list(range(1, 502))])
def test_bulk_change_checks_the_id_list(state, agent, ids):
    with state.session_factory() as session:
        with pytest.raises(InvalidInput) as raised:
            change_conversations(session, session.get(Agent, agent.id), ids, Changes(status="open"))
    assert raised.value.field == "conversation_ids"
