"""The outbox never sends a reply twice: concurrent dispatchers, lost outcomes, early callbacks.

Runs against the real Twilio-compatible and SMTP test servers, on SQLite by default and on
PostgreSQL with SWITCHBOARD_TEST_DATABASE_URL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from twilio.request_validator import RequestValidator

import gateway.workers
from channels.email.parse import parse_email
from channels.types import DeliveryState, DeliveryStatus, SendResult
from channels.whatsapp import parse_inbound
from gateway import create_app, get_state
from gateway.simulate import build_message_form
from gateway.workers import OutboxDispatcher
from inbox.agents import create_agent
from inbox.channel_config import add_channel
from inbox.delivery import record_delivery_status
from inbox.events import events_after
from inbox.ingest import ingest_message
from inbox.models import EarlyDeliveryReport, Message, MessagePart, OutboxItem, utcnow
from inbox.outbox import (
    ABANDONED_SEND_NOTE,
    LEASE,
    PARTLY_SENT_ERROR,
    UNKNOWN_OUTCOME_ERROR,
    claim_next,
    mark_attempt_failed,
    mark_part_sent,
    mark_sent,
    recover_abandoned_sends,
)
from inbox.replies import create_reply
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER
from tests.support.smtp_server import SmtpTestServer
from tests.support.whatsapp import ingest_webhooks
from tests.support.twilio_server import TwilioTestServer

PUBLIC_URL = "https://support.example.com"
CUSTOMER_PHONE = "+15551230000"


@pytest.fixture
def twilio():
    with TwilioTestServer(account_sid=TWILIO_ACCOUNT_SID, auth_token=TWILIO_AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def twilio_app(config, twilio):
    app = create_app(replace(config, twilio_api_base_url=twilio.base_url, public_url=PUBLIC_URL))
    yield app
    get_state(app).engine.dispose()


@pytest.fixture
def twilio_state(twilio_app):
    return get_state(twilio_app)


@pytest.fixture
def channel(twilio_state):
    with twilio_state.session_factory() as session:
        created = add_channel(
            session, "whatsapp", "WhatsApp", WHATSAPP_NUMBER,
            {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN},
        )
        session.commit()
        return created


@pytest.fixture
def sender(twilio_state):
    with twilio_state.session_factory() as session:
        created = create_agent(session, "bo@example.com", "Bo", "a long password")
        session.commit()
        return created


def _conversation(state, channel) -> int:
    form = build_message_form(channel, CUSTOMER_PHONE, "Where is my parcel?", "Grace")
    raw = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    with state.session_factory() as session:
        return ingest_message(session, channel.id, parse_inbound(form, raw)).conversation_id


def _reply(state, conversation_id: int, agent, text: str) -> int:
    with state.session_factory() as session:
        message = create_reply(session, conversation_id, agent.id, text)
        session.commit()
        return message.id


def _message(state, message_id: int) -> Message:
    with state.session_factory() as session:
        message = session.get(Message, message_id)
        session.expunge(message)
        return message


def _item(state, message_id: int) -> OutboxItem:
    with state.session_factory() as session:
        item = session.scalar(select(OutboxItem).where(OutboxItem.message_id == message_id))
        session.expunge(item)
        return item


def _early_report_count(state) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(EarlyDeliveryReport))


def _message_events(state, message_id: int) -> list[dict]:
    with state.session_factory() as session:
        return [
            event.payload["message"] for event in events_after(session, 0)
            if event.type == "message.updated" and event.payload["message"]["id"] == message_id
        ]


def _database_locked() -> OperationalError:
    return OperationalError("UPDATE outbox_items", {}, sqlite3.OperationalError("database is locked"))


def _post_status(app, channel_id: int, sid: str, status: str, **extra: str):
    path = f"/webhooks/twilio/{channel_id}/status"
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": TWILIO_ACCOUNT_SID, **extra}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(PUBLIC_URL + path, form)
    response = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})
    ingest_webhooks(get_state(app))
    return response


def _wait_until(condition, timeout: float, description: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{description} did not finish within {timeout} s")
        time.sleep(0.05)


# Concurrent dispatchers


def test_slow_dispatchers_send_each_reply_once(twilio_state, twilio, channel, sender):
    # Eight sends of 0.4 s take longer than the 2 s lease, so a lease taken for a whole batch
    # would expire mid-batch and let the other dispatcher send the rest again.
    count = 8
    twilio.response_delay = 0.4
    conversation_id = _conversation(twilio_state, channel)
    message_ids = [_reply(twilio_state, conversation_id, sender, f"Reply {n}") for n in range(count)]
    stop = threading.Event()
    dispatchers = [OutboxDispatcher(twilio_state, stop, lease=timedelta(seconds=2)) for _ in range(2)]
    threads = [threading.Thread(target=dispatcher.run) for dispatcher in dispatchers]

    for thread in threads:
        thread.start()
    try:
        _wait_until(
            lambda: all(_item(twilio_state, m).status != "pending" for m in message_ids),
            timeout=30, description="sending every reply",
        )
    finally:
        stop.set()
        twilio_state.outbox_wakeup.set()
        for thread in threads:
            thread.join(10)

    bodies = sorted(request["Body"] for request in twilio.requests)
    assert bodies == sorted(f"Reply {n}" for n in range(count))
    sids = {message["sid"] for message in twilio.messages}
    for message_id in message_ids:
        assert _item(twilio_state, message_id).status == "sent"
        message = _message(twilio_state, message_id)
        assert message.provider_message_id in sids
        assert message.delivery_status == "queued"
        assert message.delivery_error is None


def test_claim_covers_one_item(twilio_state, channel, sender):
    conversation_id = _conversation(twilio_state, channel)
    first = _reply(twilio_state, conversation_id, sender, "First")
    second = _reply(twilio_state, conversation_id, sender, "Second")

    with twilio_state.session_factory() as session:
        claim = claim_next(session)

    assert claim is not None
    assert claim.message_id == first
    claimed, waiting = _item(twilio_state, first), _item(twilio_state, second)
    assert claimed.in_flight_since is not None
    assert claimed.claim_token == claim.claim_token
    assert claimed.locked_until > utcnow() + LEASE - timedelta(minutes=1)
    assert waiting.in_flight_since is None
    assert waiting.locked_until is None


def test_other_claim_cannot_record_outcome(twilio_state, channel, sender):
    message_id = _reply(twilio_state, _conversation(twilio_state, channel), sender, "Hello")
    with twilio_state.session_factory() as session:
        claim = claim_next(session)

    with twilio_state.session_factory() as session:
        recorded = mark_sent(
            session, claim.item_id, SendResult("SM" + "1" * 32, DeliveryState.QUEUED),
            claim_token="not-the-claim",
        )
    with twilio_state.session_factory() as session:
        retried = mark_attempt_failed(
            session, claim.item_id, "timed out", transient=True, claim_token="not-the-claim"
        )

    assert recorded is False
    assert retried is False
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("pending", 0)
    assert item.in_flight_since is not None
    assert _message(twilio_state, message_id).provider_message_id is None


# Outcomes that were never recorded


def test_unrecorded_twilio_send_is_found_not_resent(twilio_state, twilio, channel, sender, monkeypatch):
    message_id = _reply(twilio_state, _conversation(twilio_state, channel), sender, "Your refund is on its way.")
    tokens: list[str] = []

    def database_down(session, item_id, result, *, claim_token):
        tokens.append(claim_token)
        raise _database_locked()

    monkeypatch.setattr(gateway.workers, "mark_sent", database_down)
    dying = OutboxDispatcher(twilio_state, threading.Event())
    dying.RECORD_BACKOFF_SECONDS = 0

    assert dying.dispatch_due() == 1
    assert len(tokens) == dying.RECORD_ATTEMPTS
    monkeypatch.undo()

    # While the lease runs, no dispatcher changes the item.
    assert OutboxDispatcher(twilio_state, threading.Event()).dispatch_due() == 0
    assert _item(twilio_state, message_id).status == "pending"

    lease = dying.attempt_lease("whatsapp", {}, looks_up_first=False)
    after_lease = OutboxDispatcher(twilio_state, threading.Event(), clock=lambda: utcnow() + lease + timedelta(seconds=1))
    assert after_lease.dispatch_due() == 1

    [created] = twilio.messages
    assert len(twilio.requests) == 1
    assert twilio.list_reads == 1
    message = _message(twilio_state, message_id)
    assert message.provider_message_id == created["sid"]
    assert message.delivery_status == "queued"
    assert message.delivery_error is None
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("sent", 2)
    assert item.unconfirmed_since is None
    events = _message_events(twilio_state, message_id)
    checking = [event for event in events if event["retry"] and event["retry"]["last_error"] == ABANDONED_SEND_NOTE]
    assert [event["delivery_status"] for event in checking] == ["queued"]
    assert events[-1]["delivery_status"] == "queued"
    assert events[-1]["retry"] is None


def test_unrecorded_email_is_reported_not_resent(state, smtp, email_reply, monkeypatch):
    def database_down(session, item_id, result, *, claim_token):
        raise _database_locked()

    monkeypatch.setattr(gateway.workers, "mark_sent", database_down)
    dying = OutboxDispatcher(state, threading.Event())
    dying.RECORD_BACKOFF_SECONDS = 0
    assert dying.dispatch_due() == 1
    monkeypatch.undo()

    lease = dying.attempt_lease("email", {}, looks_up_first=False)
    before_expiry = OutboxDispatcher(state, threading.Event(), clock=lambda: utcnow() + lease - timedelta(seconds=5))
    assert before_expiry.dispatch_due() == 0
    assert _item(state, email_reply).status == "pending"
    after_lease = OutboxDispatcher(state, threading.Event(), clock=lambda: utcnow() + lease + timedelta(seconds=1))
    assert after_lease.dispatch_due() == 0
    assert after_lease.dispatch_due() == 0

    assert len(smtp.received) == 1
    message = _message(state, email_reply)
    assert message.delivery_status == "failed"
    assert message.delivery_error == UNKNOWN_OUTCOME_ERROR
    item = _item(state, email_reply)
    assert (item.status, item.attempts) == ("failed", 1)
    assert item.last_error == UNKNOWN_OUTCOME_ERROR
    last_event = _message_events(state, email_reply)[-1]
    assert last_event["delivery_status"] == "failed"
    assert last_event["error"] == UNKNOWN_OUTCOME_ERROR


def test_late_mark_sent_wins_over_unknown_outcome(state, smtp, email_reply):
    with state.session_factory() as session:
        claim = claim_next(session)
    OutboxDispatcher(state, threading.Event(), clock=lambda: utcnow() + LEASE + timedelta(seconds=1)).dispatch_due()
    assert _message(state, email_reply).delivery_error == UNKNOWN_OUTCOME_ERROR

    with state.session_factory() as session:
        recorded = mark_sent(
            session, claim.item_id, SendResult("late-1@shop.example", DeliveryState.SENT),
            claim_token=claim.claim_token,
        )

    assert recorded is True
    message = _message(state, email_reply)
    assert message.provider_message_id == "late-1@shop.example"
    assert message.delivery_status == "sent"
    assert message.delivery_error is None
    item = _item(state, email_reply)
    assert (item.status, item.attempts) == ("sent", 1)
    assert item.in_flight_since is None
    assert _message_events(state, email_reply)[-1]["delivery_status"] == "sent"
    assert smtp.received == []


def test_late_failure_keeps_unknown_outcome(state, smtp, email_reply):
    with state.session_factory() as session:
        claim = claim_next(session)
    OutboxDispatcher(state, threading.Event(), clock=lambda: utcnow() + LEASE + timedelta(seconds=1)).dispatch_due()

    with state.session_factory() as session:
        retried = mark_attempt_failed(
            session, claim.item_id, "read timed out", transient=True, claim_token=claim.claim_token
        )

    assert retried is False
    assert _item(state, email_reply).status == "failed"
    assert _message(state, email_reply).delivery_error == UNKNOWN_OUTCOME_ERROR


def test_late_part_after_unknown_outcome_stops(twilio_state, channel, sender):
    conversation_id = _conversation(twilio_state, channel)
    first = _reply(twilio_state, conversation_id, sender, "Part one. Part two. Part three.")
    second = _reply(twilio_state, conversation_id, sender, "And a voucher for the wait.")
    with twilio_state.session_factory() as session:
        part_one = claim_next(session)
    with twilio_state.session_factory() as session:
        mark_part_sent(session, part_one.item_id, 0, SendResult("wamid.part.1", DeliveryState.SENT),
                       last=False, claim_token=part_one.claim_token)
    with twilio_state.session_factory() as session:
        part_two = claim_next(session)
    # The worker sending part two is slow. Another worker settles it after the lease, as for a
    # provider without a lookup such as Meta's Cloud API, and sends the next reply.
    later = utcnow() + LEASE + timedelta(seconds=1)
    with twilio_state.session_factory() as session:
        recover_abandoned_sends(session, later, can_look_up=lambda kind, settings: False)
    with twilio_state.session_factory() as session:
        next_reply = claim_next(session, later)

    with twilio_state.session_factory() as session:
        recorded = mark_part_sent(session, part_two.item_id, 1, SendResult("wamid.part.2", DeliveryState.SENT),
                                  last=False, claim_token=part_two.claim_token)
    with twilio_state.session_factory() as session:
        third_part = claim_next(session, later)

    assert part_two.message_id == first
    assert next_reply.message_id == second
    # The late part is recorded, but the rest of the reply is not sent after the next reply.
    assert recorded is True
    assert third_part is None
    item = _item(twilio_state, first)
    assert item.status == "failed"
    message = _message(twilio_state, first)
    assert message.delivery_status == "failed"
    assert message.delivery_error == PARTLY_SENT_ERROR.format(sent_parts=2)
    with twilio_state.session_factory() as session:
        parts = session.scalars(select(MessagePart.provider_message_id).where(MessagePart.message_id == first)
                                .order_by(MessagePart.position)).all()
    assert parts == ["wamid.part.1", "wamid.part.2"]


def test_mark_sent_retried_after_database_error(twilio_state, twilio, channel, sender, monkeypatch):
    message_id = _reply(twilio_state, _conversation(twilio_state, channel), sender, "Hello")
    calls: list[str] = []

    def locked_once(session, item_id, result, *, claim_token):
        calls.append(claim_token)
        if len(calls) == 1:
            raise _database_locked()
        return mark_sent(session, item_id, result, claim_token=claim_token)

    monkeypatch.setattr(gateway.workers, "mark_sent", locked_once)
    dispatcher = OutboxDispatcher(twilio_state, threading.Event())
    dispatcher.RECORD_BACKOFF_SECONDS = 0

    assert dispatcher.dispatch_due() == 1

    assert len(calls) == 2
    assert len(twilio.requests) == 1
    message = _message(twilio_state, message_id)
    assert message.provider_message_id == twilio.messages[0]["sid"]
    assert message.delivery_status == "queued"
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("sent", 1)
    assert item.in_flight_since is None


# Status callbacks that arrive before the send is recorded


def test_early_status_callback_is_applied(twilio_app, twilio_state, twilio, channel, sender):
    message_id = _reply(twilio_state, _conversation(twilio_state, channel), sender, "Hello")
    twilio.hold_responses()
    dispatcher = OutboxDispatcher(twilio_state, threading.Event())
    thread = threading.Thread(target=dispatcher.dispatch_due)
    thread.start()
    try:
        [created] = twilio.wait_for_messages(1)
        sid = created["sid"]
        for status in ("sent", "delivered", "delivered"):
            assert _post_status(twilio_app, channel.id, sid, status).status_code == 204
        early_reports = _early_report_count(twilio_state)
        provider_id_before = _message(twilio_state, message_id).provider_message_id
    finally:
        twilio.release_responses()
        thread.join(30)

    assert early_reports == 2  # the repeated "delivered" is stored once
    assert provider_id_before is None
    message = _message(twilio_state, message_id)
    assert message.provider_message_id == sid
    assert message.delivery_status == "delivered"
    assert _early_report_count(twilio_state) == 0
    assert _message_events(twilio_state, message_id)[-1]["delivery_status"] == "delivered"

    # Later callbacks go straight to the message.
    assert _post_status(twilio_app, channel.id, sid, "read").status_code == 204
    assert _message(twilio_state, message_id).delivery_status == "read"
    assert _early_report_count(twilio_state) == 0


def test_early_failure_report_sets_error(twilio_state, channel, sender):
    message_id = _reply(twilio_state, _conversation(twilio_state, channel), sender, "Hello")
    sid = "SM" + "3" * 32
    with twilio_state.session_factory() as session:
        claim = claim_next(session)
    with twilio_state.session_factory() as session:
        changed = record_delivery_status(
            session, channel.id,
            DeliveryStatus(sid, DeliveryState.UNDELIVERED, "30008", "Unknown error"),
        )

    with twilio_state.session_factory() as session:
        mark_sent(session, claim.item_id, SendResult(sid, DeliveryState.QUEUED), claim_token=claim.claim_token)

    assert changed is False
    message = _message(twilio_state, message_id)
    assert message.delivery_status == "undelivered"
    assert message.delivery_error == "Unknown error (error 30008)"
    assert _early_report_count(twilio_state) == 0


def test_stale_early_report_does_not_regress(twilio_state, channel, sender):
    message_id = _reply(twilio_state, _conversation(twilio_state, channel), sender, "Hello")
    sid = "SM" + "4" * 32
    with twilio_state.session_factory() as session:
        claim = claim_next(session)
    for state in (DeliveryState.READ, DeliveryState.SENT):
        with twilio_state.session_factory() as session:
            record_delivery_status(session, channel.id, DeliveryStatus(sid, state))

    with twilio_state.session_factory() as session:
        mark_sent(session, claim.item_id, SendResult(sid, DeliveryState.QUEUED), claim_token=claim.claim_token)

    assert _message(twilio_state, message_id).delivery_status == "read"
    assert _early_report_count(twilio_state) == 0


def test_report_with_oversized_id_is_not_stored(twilio_state, channel):
    with twilio_state.session_factory() as session:
        changed = record_delivery_status(
            session, channel.id, DeliveryStatus("SM" + "5" * 2000, DeliveryState.SENT)
        )

    assert changed is False
    assert _early_report_count(twilio_state) == 0


def test_unmatched_early_report_expires(twilio_state, channel):
    with twilio_state.session_factory() as session:
        record_delivery_status(session, channel.id, DeliveryStatus("wamid.other.tool.1", DeliveryState.SENT))
    with twilio_state.session_factory() as session:
        report = session.scalar(select(EarlyDeliveryReport))
        report.received_at = utcnow() - timedelta(days=30)
        session.commit()

    with twilio_state.session_factory() as session:
        record_delivery_status(session, channel.id, DeliveryStatus("wamid.other.tool.2", DeliveryState.SENT))

    with twilio_state.session_factory() as session:
        assert session.scalars(select(EarlyDeliveryReport.provider_message_id)).all() == ["wamid.other.tool.2"]


# SMTP


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


def email_conversation(state, smtp) -> int:
    """Add an email channel that sends through ``smtp``, ingest a customer's mail and
    return its conversation id."""
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop Support", "support@shop.example",
            {
                "imap_host": "127.0.0.1", "imap_port": 1, "imap_username": "support@shop.example",
                "imap_password": "unused", "imap_ssl": False,
                "smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_security": "none",
            },
        )
        session.commit()
        channel_id = channel.id
    mail = EmailMessage()
    mail["From"] = "Alice <alice@customer.example>"
    mail["To"] = "support@shop.example"
    mail["Subject"] = "Broken kettle"
    mail["Message-ID"] = "<a1@customer.example>"
    mail.set_content("My kettle leaks.")
    with state.session_factory() as session:
        return ingest_message(session, channel_id, parse_email(mail.as_bytes())).conversation_id


@pytest.fixture
def email_reply(state, agent, smtp) -> int:
    return _reply(state, email_conversation(state, smtp), agent, "Sorry to hear that!")


@pytest.mark.parametrize("quit_reply", ["421 4.3.2 Service shutting down", "554 5.3.0 Internal error"])
def test_quit_error_after_data_sends_once(state, smtp, email_reply, quit_reply):
    smtp.reply_to_quit(quit_reply)
    dispatcher = OutboxDispatcher(state, threading.Event())

    assert dispatcher.dispatch_due() == 1
    later = OutboxDispatcher(state, threading.Event(), clock=lambda: utcnow() + timedelta(days=1))
    assert later.dispatch_due() == 0

    assert len(smtp.received) == 1
    item = _item(state, email_reply)
    assert (item.status, item.attempts) == ("sent", 1)
    message = _message(state, email_reply)
    assert message.delivery_status == "sent"
    assert message.delivery_error is None
