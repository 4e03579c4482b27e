"""Each proactive trigger against real rows, with the clock moved by hand."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from sqlalchemy import update

from inbox.models import Agent, Conversation, Message, OutboxItem, Role
from inbox.proactive.triggers import BusinessHours, find_due, parse_business_hours, still_applies
from inbox.replies import create_reply
from inbox.workflow import Changes, change_conversation
from tests.support.conversations import add_agent, receive
from tests.support.proactive import T0, date_activities, date_message, set_times

CUSTOMER = "+4930123456"
UTC_HOURS = BusinessHours()


@pytest.fixture
def manager(state) -> Agent:
    return add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)


@pytest.fixture
def conversation_id(state, whatsapp_channel) -> int:
    result = receive(state, whatsapp_channel.id, CUSTOMER, "Where is my order?")
    set_times(state, result.conversation_id, created_at=T0, last_inbound_at=T0, last_message_at=T0)
    date_activities(state, result.conversation_id, T0)
    return result.conversation_id


def due(state, trigger, params, now, *, since=None, recorded=frozenset(), estimate=None, business_hours=UTC_HOURS):
    with state.session_factory() as session:
        return find_due(
            session, trigger, params, since=since or now - timedelta(days=1), now=now,
            business_hours=business_hours, recorded=recorded, first_response_estimate=estimate,
        )


def change(state, actor: Agent, conversation_id: int, when, **changes) -> None:
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, actor.id), conversation_id, Changes(**changes))
        session.commit()
    date_activities(state, conversation_id, when)


def reply(state, agent: Agent, conversation_id: int, when, *, outbox_status="sent", delivery_status=None) -> None:
    """Store an agent's reply at ``when`` with its outbox item in ``outbox_status``, by default
    as the dispatcher leaves it once the provider accepted the message."""
    with state.session_factory() as session:
        message = create_reply(session, conversation_id, agent.id, "On it.")
        session.commit()
        session.execute(update(OutboxItem).where(OutboxItem.message_id == message.id).values(status=outbox_status))
        session.execute(update(Message).where(Message.id == message.id).values(delivery_status=delivery_status))
        session.commit()
    date_message(state, message.id, when)


def test_status_change_found_once(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(minutes=5), status="pending")
    now = T0 + timedelta(minutes=6)

    [occurrence] = due(state, "status_changed", {"to_status": "pending"}, now)
    again = due(state, "status_changed", {"to_status": "pending"}, now,
                recorded={(conversation_id, occurrence.key)})

    assert occurrence.conversation_id == conversation_id
    assert occurrence.key.startswith("activity:")
    assert occurrence.due_at == T0 + timedelta(minutes=5)
    assert again == []


def test_status_change_needs_current_status(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(minutes=5), status="pending")
    change(state, manager, conversation_id, T0 + timedelta(minutes=6), status="open")

    assert due(state, "status_changed", {"to_status": "pending"}, T0 + timedelta(minutes=7)) == []


def test_status_change_from_status_filter(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(minutes=5), status="pending")
    now = T0 + timedelta(minutes=6)

    assert due(state, "status_changed", {"to_status": "pending", "from_status": "snoozed"}, now) == []
    assert len(due(state, "status_changed", {"to_status": "pending", "from_status": "open"}, now)) == 1


def test_status_change_before_since_ignored(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(minutes=5), status="pending")

    found = due(state, "status_changed", {"to_status": "pending"}, T0 + timedelta(hours=2),
                since=T0 + timedelta(hours=1))

    assert found == []


def test_resolved_names_resolving_agent(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(hours=1), status="resolved")

    [occurrence] = due(state, "resolved", {}, T0 + timedelta(hours=1, minutes=1))

    assert occurrence.agent_id == manager.id
    assert occurrence.key.startswith("activity:")


def test_assigned_to_agent(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(minutes=3), assignee_id=manager.id)
    now = T0 + timedelta(minutes=4)

    [occurrence] = due(state, "assigned", {}, now)
    change(state, manager, conversation_id, T0 + timedelta(minutes=5), assignee_id=None)

    assert occurrence.agent_id == manager.id
    assert due(state, "assigned", {}, T0 + timedelta(minutes=6)) == []


def test_no_agent_reply_after_hours(state, conversation_id):
    params = {"hours": 4}

    before = due(state, "no_agent_reply", params, T0 + timedelta(hours=3, minutes=59))
    [occurrence] = due(state, "no_agent_reply", params, T0 + timedelta(hours=4))

    assert before == []
    assert occurrence.due_at == T0 + timedelta(hours=4)
    assert occurrence.key == f"inbound:{T0.isoformat()}"


def test_no_agent_reply_ended_by_reply(state, manager, conversation_id):
    reply(state, manager, conversation_id, T0 + timedelta(hours=1))

    assert due(state, "no_agent_reply", {"hours": 4}, T0 + timedelta(hours=5)) == []


# Replies that the customer did not get: failed, held, withdrawn, reported undelivered, and
# one still waiting in the outbox.
NOT_RECEIVED = [
    pytest.param({"outbox_status": "failed", "delivery_status": "failed"}, id="failed"),
    pytest.param({"outbox_status": "held"}, id="held"),
    pytest.param({"outbox_status": "cancelled"}, id="cancelled"),
    pytest.param({"delivery_status": "undelivered"}, id="undelivered"),
    pytest.param({"outbox_status": "pending"}, id="pending"),
]


@pytest.mark.parametrize("outcome", NOT_RECEIVED)
def test_no_agent_reply_despite_unsent_reply(state, manager, conversation_id, outcome):
    reply(state, manager, conversation_id, T0 + timedelta(hours=1), **outcome)

    [occurrence] = due(state, "no_agent_reply", {"hours": 4}, T0 + timedelta(hours=5))

    assert occurrence.conversation_id == conversation_id
    assert occurrence.key == f"inbound:{T0.isoformat()}"


@pytest.mark.parametrize("outcome", NOT_RECEIVED)
def test_no_agent_reply_still_applies_after_unsent_reply(state, manager, conversation_id, outcome):
    reply(state, manager, conversation_id, T0 + timedelta(hours=1), **outcome)

    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        waiting = still_applies(session, "no_agent_reply", {"hours": 4}, conversation, f"inbound:{T0.isoformat()}")

    assert waiting is True


def test_no_agent_reply_ended_by_delivered_reply(state, manager, conversation_id):
    reply(state, manager, conversation_id, T0 + timedelta(hours=1), delivery_status="delivered")

    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        waiting = still_applies(session, "no_agent_reply", {"hours": 4}, conversation, f"inbound:{T0.isoformat()}")

    assert due(state, "no_agent_reply", {"hours": 4}, T0 + timedelta(hours=5)) == []
    assert waiting is False


def test_no_agent_reply_in_business_hours(state, conversation_id):
    # Friday 16:00 in Berlin: one business hour that day, three on Monday, so 12:00 Berlin (11:00 UTC).
    berlin = parse_business_hours("mon-fri 09:00-17:00", ZoneInfo("Europe/Berlin"))
    friday = T0.replace(day=4, hour=15)
    set_times(state, conversation_id, last_inbound_at=friday)
    params = {"hours": 4, "business_hours": True}

    saturday = due(state, "no_agent_reply", params, friday + timedelta(days=1), business_hours=berlin)
    [occurrence] = due(state, "no_agent_reply", params, friday + timedelta(days=3), business_hours=berlin)

    assert saturday == []
    assert occurrence.due_at == T0.replace(day=7, hour=11)


def test_queue_wait_while_unassigned(state, manager, conversation_id):
    params = {"hours": 2}

    [occurrence] = due(state, "queue_wait", params, T0 + timedelta(hours=2))
    change(state, manager, conversation_id, T0 + timedelta(hours=3), assignee_id=manager.id)

    assert occurrence.key == "queued:0"
    assert due(state, "queue_wait", params, T0 + timedelta(hours=4)) == []


def test_queue_wait_restarts_after_unassign(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(hours=1), assignee_id=manager.id)
    change(state, manager, conversation_id, T0 + timedelta(hours=3), assignee_id=None)

    early = due(state, "queue_wait", {"hours": 2}, T0 + timedelta(hours=4))
    [occurrence] = due(state, "queue_wait", {"hours": 2}, T0 + timedelta(hours=5))

    assert early == []
    assert occurrence.key.startswith("queued:")
    assert occurrence.key != "queued:0"
    assert occurrence.due_at == T0 + timedelta(hours=5)


def test_first_response_target_passed(state, conversation_id):
    params = {"hours": 8}

    before = due(state, "first_response_at_risk", params, T0 + timedelta(hours=7))
    [occurrence] = due(state, "first_response_at_risk", params, T0 + timedelta(hours=8))

    assert before == []
    assert occurrence.key == "first-response"


def test_first_response_at_risk_by_estimate(state, conversation_id):
    params = {"hours": 8}
    early = T0 + timedelta(hours=3)
    now = T0 + timedelta(hours=4, minutes=1)

    too_early = due(state, "first_response_at_risk", params, early, estimate=lambda *_: timedelta(hours=9))
    late = due(state, "first_response_at_risk", params, now, estimate=lambda *_: timedelta(hours=4))
    between_checks = due(state, "first_response_at_risk", params, now + timedelta(minutes=30),
                         estimate=lambda *_: timedelta(hours=4))
    in_time = due(state, "first_response_at_risk", params, now, estimate=lambda *_: timedelta(hours=2))
    unknown = due(state, "first_response_at_risk", params, now, estimate=lambda *_: None)

    # The estimate is asked just after half and three quarters of the target, not between.
    assert too_early == []
    assert between_checks == []
    assert [o.due_at for o in late] == [now]
    assert in_time == []
    assert unknown == []


def test_first_response_met_by_reply(state, manager, conversation_id):
    reply(state, manager, conversation_id, T0 + timedelta(hours=1))

    assert due(state, "first_response_at_risk", {"hours": 8}, T0 + timedelta(hours=9)) == []


@pytest.mark.parametrize("outcome", NOT_RECEIVED)
def test_first_response_not_met_by_unsent_reply(state, manager, conversation_id, outcome):
    reply(state, manager, conversation_id, T0 + timedelta(hours=1), **outcome)

    [occurrence] = due(state, "first_response_at_risk", {"hours": 8}, T0 + timedelta(hours=9))

    assert occurrence.conversation_id == conversation_id
    assert occurrence.key == "first-response"


def test_periodic_one_per_period(state, conversation_id):
    params = {"every_hours": 24}

    first_day = due(state, "periodic", params, T0 + timedelta(hours=23))
    [day_one] = due(state, "periodic", params, T0 + timedelta(hours=24))
    # A scheduler that was down for two more days finds only the latest period.
    [day_three] = due(state, "periodic", params, T0 + timedelta(hours=73), since=T0)

    assert first_day == []
    assert day_one.key == "period:1"
    assert day_three.key == "period:3"
    assert day_three.due_at == T0 + timedelta(hours=72)


def test_periodic_stops_when_resolved(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(hours=1), status="resolved")

    assert due(state, "periodic", {"every_hours": 24}, T0 + timedelta(hours=25)) == []


def test_still_applies_after_deferral(state, manager, conversation_id):
    change(state, manager, conversation_id, T0 + timedelta(minutes=5), status="pending")
    [occurrence] = due(state, "status_changed", {"to_status": "pending"}, T0 + timedelta(minutes=6))
    change(state, manager, conversation_id, T0 + timedelta(minutes=7), status="open")

    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        pending = still_applies(session, "status_changed", {"to_status": "pending"}, conversation, occurrence.key)
        waiting = still_applies(session, "no_agent_reply", {"hours": 4}, conversation, f"inbound:{T0.isoformat()}")

    assert pending is False
    assert waiting is True


def test_unknown_trigger_rejected(state):
    with pytest.raises(ValueError, match="unknown trigger"):
        due(state, "birthday", {}, T0)
    with pytest.raises(ValueError, match="hours"):
        due(state, "no_agent_reply", {"hours": "four"}, T0)


def test_business_hours_arithmetic():
    berlin = parse_business_hours("mon-fri 09:00-17:00", ZoneInfo("Europe/Berlin"))
    friday_four = T0.replace(day=4, hour=15)  # 16:00 in Berlin

    assert berlin.add(friday_four, timedelta(hours=4)) == T0.replace(day=7, hour=11)
    assert berlin.elapsed(friday_four, T0.replace(day=7, hour=11)) == timedelta(hours=4)
    assert berlin.subtract(T0.replace(day=7, hour=11), timedelta(hours=4)) == friday_four
    assert berlin.subtract(friday_four + timedelta(days=21), timedelta(hours=120)) == friday_four
    # Three weeks and a bit: the whole weeks are counted, not walked.
    assert berlin.elapsed(friday_four, friday_four + timedelta(days=21)) == timedelta(hours=120)
    with pytest.raises(ValueError, match="unknown day"):
        parse_business_hours("mon-fry 09:00-17:00", ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="after the start"):
        parse_business_hours("mon-fri 17:00-09:00", ZoneInfo("UTC"))
