"""Proactive updates end to end: sweep, outbox, the Twilio test server, skips and deferrals.

Customers write through signed webhooks; updates leave through the outbox dispatcher and
the twilio SDK to the Twilio-compatible test server on loopback.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import time, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from gateway import create_app, get_state
from gateway.workers import OutboxDispatcher, Workers
from inbox.agents import create_api_token
from inbox.models import (
    Agent,
    Channel,
    Contact,
    Conversation,
    ConversationActivity,
    Event,
    Message,
    ProactiveSend,
    Role,
    SatisfactionAnswer,
    UpdateTemplate,
    utcnow,
)
from inbox.proactive import sending
from inbox.proactive.templates import delete_update_template
from inbox.proactive.quiet_hours import QuietHours
from inbox.proactive.sending import sweep
from inbox.workflow import Changes, change_conversation
from tests.support.conversations import add_agent
from tests.support.proactive import add_template, settings
from tests.support.whatsapp import (  # noqa: F401 (client, config and twilio are fixtures)
    client,
    close_window,
    config,
    dispatch,
    post_inbound,
    post_status,
    twilio,
)

PENDING = {"to_status": "pending"}


def conversation_id(state) -> int:
    with state.session_factory() as session:
        return session.scalar(select(Conversation.id))


def set_status(state, actor_id: int, status: str) -> None:
    target = conversation_id(state)
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, actor_id), target, Changes(status=status))
        session.commit()


def sends(state) -> list[ProactiveSend]:
    with state.session_factory() as session:
        return list(session.scalars(select(ProactiveSend).order_by(ProactiveSend.id)))


def run(state, now=None, **changes):
    return sweep(state.session_factory, settings(**changes), now or utcnow())


def test_status_update_sent_once(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")

    first = run(state)
    dispatch(state)
    second = run(state)
    dispatch(state)

    assert first.results == {"queued": 1}
    assert second.results == {}
    assert second.synced == 1
    [request] = twilio.wait_for(1)
    assert request["Body"] == f"Hello Grace, your request #{conversation_id(state)} is waiting for your reply."
    assert len(twilio.messages) == 1
    [row] = sends(state)
    assert row.result == "sent"
    assert row.channel == "whatsapp"
    assert row.trigger == "status_changed"


def test_update_shows_in_thread_as_automatic(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")

    run(state)
    thread = client.get(f"/api/v1/conversations/{conversation_id(state)}").json

    update_message = thread["messages"][-1]
    assert update_message["direction"] == "outbound"
    assert update_message["automatic"] == "proactive"
    assert update_message["author"] == {"type": "agent", "id": None, "name": None}
    assert update_message["delivery_status"] == "queued"


def test_outside_window_sends_approved_template(client, state, agent, whatsapp_channel, twilio):
    content_sid = twilio.add_template("Hi {{1}}, request {{2}} waits for you.", name="waiting")
    add_template(
        state, "status_changed", PENDING, whatsapp_content_sid=content_sid,
        whatsapp_variables={"1": "customer_name", "2": "reference"},
    )
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    set_status(state, agent.id, "pending")

    report = run(state)
    dispatch(state)

    assert report.results == {"queued": 1}
    [request] = twilio.wait_for(1)
    assert request["ContentSid"] == content_sid
    assert json.loads(request["ContentVariables"]) == {"1": "Grace", "2": f"#{conversation_id(state)}"}
    assert "Body" not in request


def test_outside_window_without_template_skipped(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    set_status(state, agent.id, "pending")

    run(state)
    dispatch(state)

    [row] = sends(state)
    assert row.result == "skipped"
    assert row.reason.startswith("outside_window:")
    assert twilio.requests == []


def test_opted_out_contact_skipped(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    post_inbound(client, whatsapp_channel, "STOP")
    set_status(state, agent.id, "pending")

    report = run(state)
    dispatch(state)

    assert report.results == {"skipped": 1}
    [row] = sends(state)
    assert row.reason.startswith("opted_out:")
    assert "STOP" in row.reason
    assert row.message_id is None
    assert twilio.requests == []


def test_disabled_channel_skipped(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    with state.session_factory() as session:
        session.execute(update(Channel).values(is_active=False))
        session.commit()

    run(state)

    [row] = sends(state)
    assert row.result == "skipped"
    assert row.reason.startswith("channel_disabled:")


def test_daily_cap_skips_further_updates(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING, name="pending update")
    add_template(state, "status_changed", {"to_status": "open"}, name="open update")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    run(state, daily_cap=1)
    set_status(state, agent.id, "open")

    report = run(state, daily_cap=1)

    assert report.results == {"skipped": 1}
    rows = sends(state)
    assert [row.result for row in rows] == ["queued", "skipped"]
    assert rows[1].reason.startswith("daily_cap:")


def test_quiet_hours_defer_then_send(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    with state.session_factory() as session:
        session.execute(update(Contact).values(time_zone="America/New_York"))
        session.commit()
    set_status(state, agent.id, "pending")
    now = utcnow()
    local = now.astimezone(ZoneInfo("America/New_York"))
    # Quiet hours from an hour ago to an hour from now, in the contact's zone.
    quiet = QuietHours((local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time())

    deferred = run(state, now, quiet_hours=quiet)
    early = run(state, now + timedelta(minutes=59), quiet_hours=quiet)
    later = run(state, now + timedelta(hours=1), quiet_hours=quiet)
    OutboxDispatcher(state, threading.Event(), clock=lambda: now + timedelta(hours=1)).dispatch_due()

    assert deferred.results == {"deferred": 1}
    assert early.results == {}
    assert later.results == {"queued": 1}
    [row] = sends(state)
    assert row.result == "queued"
    assert row.scheduled_for is None
    assert len(twilio.wait_for(1)) == 1


def test_deferred_update_skipped_when_template_disabled(client, state, agent, whatsapp_channel, twilio):
    template_id = add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    now = utcnow()
    always_quiet = QuietHours(time(0, 0), time(23, 59))
    run(state, now, quiet_hours=always_quiet, workspace_zone=ZoneInfo("UTC"))
    with state.session_factory() as session:
        session.get(UpdateTemplate, template_id).enabled = False
        session.commit()

    report = run(state, now + timedelta(days=1))

    assert report.results == {"skipped": 1}
    [row] = sends(state)
    assert row.reason.startswith("template_disabled:")


def test_deferred_update_called_off_when_template_deleted(client, state, agent, whatsapp_channel, twilio):
    old_id = add_template(state, "status_changed", PENDING, name="Old", whatsapp_body="Old template text")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    now = utcnow()
    run(state, now, quiet_hours=QuietHours(time(0, 0), time(23, 59)), workspace_zone=ZoneInfo("UTC"))
    with state.session_factory() as session:
        called_off = delete_update_template(session, session.get(UpdateTemplate, old_id))
        session.commit()
    new_id = add_template(state, "status_changed", PENDING, name="New", whatsapp_body="New template text")

    run(state, now + timedelta(days=1))
    OutboxDispatcher(state, threading.Event(), clock=lambda: now + timedelta(days=1)).dispatch_due()

    assert called_off == 1
    assert new_id > old_id
    [row] = [row for row in sends(state) if row.template_id == old_id]
    assert row.result == "skipped"
    assert row.reason.startswith("template_deleted:")
    assert row.message_id is None
    assert row.scheduled_for is None
    # Whatever went out came from the new template's own rows.
    assert {row.template_id for row in sends(state) if row.message_id is not None} <= {new_id}


def test_crash_before_commit_then_restart_sends_once(config, client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")

    # The process dies after the guard row is written, before the transaction commits.
    with mock.patch.object(sending, "_queue_message", side_effect=RuntimeError("killed")):
        crashed = run(state)
    restarted = get_state(create_app(config))
    try:
        after_restart = run(restarted)
        dispatch(restarted)
        once_more = run(state)
        dispatch(state)
    finally:
        restarted.engine.dispose()

    assert crashed.results == {}
    assert after_restart.results == {"queued": 1}
    assert once_more.results == {}
    assert len(twilio.wait_for(1)) == 1
    assert len(sends(state)) == 1


def test_restart_after_commit_sends_once(config, client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    run(state)  # committed; the process stops before the dispatcher sends

    restarted = get_state(create_app(config))
    try:
        again = run(restarted)
        dispatch(restarted)
        dispatch(restarted)
    finally:
        restarted.engine.dispose()

    assert again.results == {}
    assert len(twilio.wait_for(1)) == 1


def test_concurrent_sweeps_send_once(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    now = utcnow()
    reports = []

    threads = [threading.Thread(target=lambda: reports.append(run(state, now))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    dispatch(state)

    assert sum(report.results.get("queued", 0) for report in reports) == 1
    assert len(twilio.wait_for(1)) == 1
    assert len(sends(state)) == 1


def test_satisfaction_answer_recorded(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "resolved", {}, whatsapp_body="How did we do? Answer 1 (bad) to 5 (great).")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "resolved")
    run(state)
    dispatch(state)

    post_inbound(client, whatsapp_channel, "5!")
    post_inbound(client, whatsapp_channel, "4")  # a second answer is an ordinary message

    target = conversation_id(state)
    with state.session_factory() as session:
        [answer] = session.scalars(select(SatisfactionAnswer)).all()
        conversation = session.get(Conversation, target)
        assert answer.score == 5
        assert answer.kind == "rating"
        assert answer.answer == "5!"
        assert answer.agent_id == agent.id
        assert answer.conversation_id == conversation.id
        answering = session.get(Message, answer.message_id)
        assert answering.text == "5!"
        # The rating left the conversation resolved; the message after it reopened it.
        assert conversation.status == "open"


def test_rating_keeps_conversation_resolved(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "resolved", {}, whatsapp_body="How did we do? Answer 1 (bad) to 5 (great).")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "resolved")
    run(state)

    post_inbound(client, whatsapp_channel, "5\nThanks, great service!")

    target = conversation_id(state)
    with state.session_factory() as session:
        [answer] = session.scalars(select(SatisfactionAnswer)).all()
        assert (answer.kind, answer.score) == ("rating", 5)
        assert session.get(Conversation, target).status == "resolved"


def _ask_rating(client, state, agent, whatsapp_channel) -> None:
    add_template(state, "resolved", {}, whatsapp_body="How did we do? Answer 1 (bad) to 5 (great).")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "resolved")
    run(state)


def test_low_rating_marked_in_thread(client, state, agent, whatsapp_channel, twilio):
    _ask_rating(client, state, agent, whatsapp_channel)

    post_inbound(client, whatsapp_channel, "2")

    target = conversation_id(state)
    thread = client.get(f"/api/v1/conversations/{target}").json
    page = client.get(f"/api/v1/conversations/{target}/messages").json
    with state.session_factory() as session:
        event = session.scalars(select(Event).where(Event.type == "message.created").order_by(Event.id.desc())).first()
    flag = {"kind": "rating", "score": 2, "low": True}
    # A bare rating leaves the conversation resolved, so the thread is where an agent sees it.
    assert thread["status"] == "resolved"
    assert thread["messages"][-1]["text"] == "2"
    assert thread["messages"][-1]["satisfaction"] == flag
    assert page["items"][-1]["satisfaction"] == flag
    assert event.payload["message"]["satisfaction"] == flag
    assert thread["messages"][0]["satisfaction"] is None
    # The question went out as an automatic update, which is no answer.
    assert thread["messages"][1]["direction"] == "outbound"
    assert thread["messages"][1]["satisfaction"] is None


@pytest.mark.parametrize(("text", "flag"), [
    ("5", {"kind": "rating", "score": 5, "low": False}),
    ("4", {"kind": "rating", "score": 4, "low": False}),
    ("3", {"kind": "rating", "score": 3, "low": True}),
    ("1", {"kind": "rating", "score": 1, "low": True}),
    ("yes", {"kind": "yes_no", "score": 1, "low": False}),
])
def test_satisfaction_answer_in_thread(client, state, agent, whatsapp_channel, twilio, text, flag):
    _ask_rating(client, state, agent, whatsapp_channel)

    post_inbound(client, whatsapp_channel, text)

    thread = client.get(f"/api/v1/conversations/{conversation_id(state)}").json
    assert thread["messages"][-1]["satisfaction"] == flag


def test_no_answer_reopens_conversation(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "resolved", {}, whatsapp_body="Did we solve it? Answer yes or no.")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "resolved")
    run(state)

    post_inbound(client, whatsapp_channel, "No")

    target = conversation_id(state)
    with state.session_factory() as session:
        [answer] = session.scalars(select(SatisfactionAnswer)).all()
        assert (answer.kind, answer.score) == ("yes_no", 0)
        # "No" means the problem is not solved, so an agent has to see it.
        assert session.get(Conversation, target).status == "open"
    thread = client.get(f"/api/v1/conversations/{target}").json
    assert thread["messages"][-1]["satisfaction"] == {"kind": "yes_no", "score": 0, "low": True}


def test_rating_with_complaint_reopens_conversation(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "resolved", {}, whatsapp_body="How did we do? Answer 1 (bad) to 5 (great).")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "resolved")
    run(state)
    dispatch(state)

    complaint = "1\nThe parcel still has not arrived, please call me back!"
    post_inbound(client, whatsapp_channel, complaint)

    target = conversation_id(state)
    with state.session_factory() as session:
        [answer] = session.scalars(select(SatisfactionAnswer)).all()
        conversation = session.get(Conversation, target)
        assert (answer.kind, answer.score, answer.answer) == ("rating", 1, "1")
        assert session.get(Message, answer.message_id).text == complaint
        assert conversation.status == "open"
        assert conversation.unread_count >= 1


def test_ordinary_reply_is_no_answer(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "resolved", {}, whatsapp_body="How did we do? Answer 1 to 5.")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "resolved")
    run(state)

    post_inbound(client, whatsapp_channel, "It still has not arrived")

    target = conversation_id(state)
    with state.session_factory() as session:
        assert session.scalars(select(SatisfactionAnswer)).all() == []
        assert session.get(Conversation, target).status == "open"


# ---- The audit API ------------------------------------------------------------------------


@pytest.fixture
def manager_client(app, state):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    with state.session_factory() as session:
        token = create_api_token(session, session.get(Agent, manager.id), "tests")
        session.commit()
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return test_client


def test_audit_api_filters_and_pages(client, manager_client, state, agent, whatsapp_channel, twilio):
    pending_id = add_template(state, "status_changed", PENDING, name="pending update")
    add_template(state, "assigned", {}, name="assigned update")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    target = conversation_id(state)
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, agent.id), target, Changes(assignee_id=agent.id))
        session.commit()
    run(state)

    everything = manager_client.get("/api/v1/proactive/sends").json
    by_template = manager_client.get(f"/api/v1/proactive/sends?template_id={pending_id}").json
    by_trigger = manager_client.get("/api/v1/proactive/sends?trigger=assigned&channel=whatsapp").json
    none_failed = manager_client.get("/api/v1/proactive/sends?result=failed").json
    first_page = manager_client.get("/api/v1/proactive/sends?limit=1").json
    second_page = manager_client.get(f"/api/v1/proactive/sends?limit=1&cursor={first_page['next_cursor']}").json
    by_conversation = manager_client.get(f"/api/v1/proactive/sends?conversation_id={conversation_id(state)}").json

    assert len(everything["items"]) == 2
    assert everything["next_cursor"] is None
    assert [item["template"]["id"] for item in by_template["items"]] == [pending_id]
    assert [item["trigger"] for item in by_trigger["items"]] == ["assigned"]
    assert none_failed["items"] == []
    assert len(first_page["items"]) == 1
    assert second_page["items"][0]["id"] < first_page["items"][0]["id"]
    assert second_page["next_cursor"] is None
    assert len(by_conversation["items"]) == 2
    assert first_page["items"][0]["result"] == "queued"
    assert first_page["items"][0]["message_id"] is not None


def test_audit_api_follows_message_delivery(client, manager_client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    run(state)
    dispatch(state)
    [request] = twilio.wait_for(1)
    sid = twilio.messages[0]["sid"]
    post_status(client, whatsapp_channel, sid, "sent")
    # Twilio reported the update sent, and no sweep has recorded that on the log row yet.
    assert [row.result for row in sends(state)] == ["queued"]

    [sent] = manager_client.get("/api/v1/proactive/sends").json["items"]
    sent_filter = manager_client.get("/api/v1/proactive/sends?result=sent").json["items"]
    queued_filter = manager_client.get("/api/v1/proactive/sends?result=queued").json["items"]
    thread = client.get(f"/api/v1/conversations/{conversation_id(state)}").json

    assert thread["messages"][-1]["delivery_status"] == "sent"
    assert sent["delivery_status"] == "sent"
    assert sent["result"] == "sent"
    assert [item["id"] for item in sent_filter] == [sent["id"]]
    assert queued_filter == []

    post_status(client, whatsapp_channel, sid, "undelivered", error_code="30003")
    [undelivered] = manager_client.get("/api/v1/proactive/sends").json["items"]
    failed_filter = manager_client.get("/api/v1/proactive/sends?result=failed").json["items"]
    thread = client.get(f"/api/v1/conversations/{conversation_id(state)}").json
    assert thread["messages"][-1]["delivery_status"] == "undelivered"
    assert undelivered["delivery_status"] == "undelivered"
    assert undelivered["delivery_error"] == thread["messages"][-1]["error"]
    assert undelivered["delivery_error"]
    assert undelivered["result"] == "failed"
    assert [item["id"] for item in failed_filter] == [undelivered["id"]]


def test_audit_api_row_without_message(client, manager_client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    with state.session_factory() as session:
        session.get(Contact, 1).opted_out_at = utcnow()
        session.commit()
    set_status(state, agent.id, "pending")
    run(state)

    [skipped] = manager_client.get("/api/v1/proactive/sends").json["items"]

    assert skipped["result"] == "skipped"
    assert skipped["message_id"] is None
    assert skipped["delivery_status"] is None
    assert skipped["delivery_error"] is None


def test_audit_api_needs_manager(client, app, state):
    anonymous = app.test_client().get("/api/v1/proactive/sends")
    as_agent = client.get("/api/v1/proactive/sends")
    page_as_agent = client.get("/updates/log")

    assert anonymous.status_code == 401
    assert as_agent.status_code == 403
    assert as_agent.json["error"]["code"] == "forbidden"
    assert page_as_agent.status_code == 403


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("trigger=birthday", "trigger"),
        ("result=lost", "result"),
        ("channel=fax", "channel"),
        ("template_id=abc", "template_id"),
        ("conversation_id=-1", "conversation_id"),
        ("cursor=xyz", "cursor"),
        ("limit=0", "limit"),
    ],
)
def test_audit_api_rejects_bad_filter(manager_client, query, field):
    response = manager_client.get(f"/api/v1/proactive/sends?{query}")

    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_workers_send_update_end_to_end(config, client, state, agent, whatsapp_channel, twilio):
    add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    # The default quiet hours would defer the update at night (UTC, this contact's zone).
    worker_state = get_state(create_app(replace(config, quiet_hours="off")))

    # What `switchboard run` and `switchboard worker` start: the scheduler sweeps at once and
    # wakes the outbox dispatcher.
    workers = Workers(worker_state)
    workers.start()
    try:
        [request] = twilio.wait_for(1, timeout=30)
    finally:
        workers.stop()
        worker_state.engine.dispose()

    assert request["Body"].startswith("Hello Grace, your request")
    assert workers.proactive is not None
    [row] = sends(state)
    assert row.result in ("queued", "sent")


def _edit_after_listing(monkeypatch, state, template_id: int, **values) -> None:
    """Change the template right after the sweep lists its occurrences, as a manager might."""
    listed = sending._due_occurrences

    def list_then_edit(*args, **kwargs):
        found = listed(*args, **kwargs)
        with state.session_factory() as session:
            session.execute(update(UpdateTemplate).where(UpdateTemplate.id == template_id).values(**values))
            session.commit()
        return found

    monkeypatch.setattr(sending, "_due_occurrences", list_then_edit)


def test_template_disabled_during_sweep_is_skipped(monkeypatch, client, state, agent, whatsapp_channel, twilio):
    template_id = add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    _edit_after_listing(monkeypatch, state, template_id, enabled=False)

    report = run(state)
    dispatch(state)

    assert report.results == {"skipped": 1}
    [row] = sends(state)
    assert row.reason.startswith("template_disabled:")
    assert row.message_id is None
    assert twilio.requests == []


@pytest.mark.parametrize("values", [
    {"trigger": "resolved", "trigger_params": {}},
    {"trigger_params": {"to_status": "open"}},
])
def test_template_trigger_changed_during_sweep_is_skipped(
    monkeypatch, client, state, agent, whatsapp_channel, twilio, values
):
    template_id = add_template(state, "status_changed", PENDING)
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "pending")
    _edit_after_listing(monkeypatch, state, template_id, whatsapp_body="Thanks, how did we do?", **values)

    report = run(state)
    dispatch(state)

    assert report.results == {"skipped": 1}
    [row] = sends(state)
    assert row.reason.startswith("template_changed:")
    assert twilio.requests == []


def test_template_enabled_late_sends_nothing_from_before(client, state, agent, whatsapp_channel, twilio):
    """A template created a week ago but enabled only now ignores a resolution of 20 hours ago."""
    now = utcnow()
    template_id = add_template(state, "resolved", {}, whatsapp_body="How did we do? 1-5",
                               created_at=now - timedelta(days=7), enabled_at=now - timedelta(minutes=1))
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    set_status(state, agent.id, "resolved")
    with state.session_factory() as session:
        session.execute(update(ConversationActivity).values(created_at=now - timedelta(hours=20)))
        session.commit()

    assert run(state, now).results == {}
    assert sends(state) == []

    # Enabled before the resolution: it is sent.
    with state.session_factory() as session:
        session.get(UpdateTemplate, template_id).enabled_at = now - timedelta(hours=21)
        session.commit()
    assert run(state, now).results == {"queued": 1}


def _reply_as_agent(client, text: str) -> int:
    response = client.post(f"/api/v1/conversations/{conversation_id(get_state(client.application))}/messages",
                           json={"text": text})
    assert response.status_code == 201
    return response.json["id"]


def test_no_agent_reply_update_after_failed_reply(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "no_agent_reply", {"hours": 1})
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    message_id = _reply_as_agent(client, "It ships today.")
    dispatch(state)

    result = run(state, now=utcnow() + timedelta(hours=2))

    with state.session_factory() as session:
        assert session.get(Message, message_id).delivery_status == "failed"
    assert result.results == {"queued": 1}
    [row] = sends(state)
    assert row.trigger == "no_agent_reply"
    assert twilio.messages == []


def test_no_agent_reply_update_not_after_sent_reply(client, state, agent, whatsapp_channel, twilio):
    add_template(state, "no_agent_reply", {"hours": 1})
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    _reply_as_agent(client, "It ships today.")
    dispatch(state)

    result = run(state, now=utcnow() + timedelta(hours=2))

    assert result.results == {}
    assert sends(state) == []
    assert [m["body"] for m in twilio.messages] == ["It ships today."]
