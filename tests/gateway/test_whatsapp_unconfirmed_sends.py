"""WhatsApp replies whose send got no response from Twilio reach the customer once.

Twilio's Messages API takes no idempotency key. When a create times out or loses its
connection, the message may exist anyway, so the outbox looks it up at Twilio before it sends
again. The same lookup settles a send whose dispatcher died in the middle of it, once the
claim's lease (the Twilio timeouts plus a margin) has run out. These tests play the faults on
the Twilio-compatible test server, through the twilio SDK and the real outbox dispatcher, and
kill a real `switchboard worker` process in the middle of a send, on SQLite by default and on
PostgreSQL with SWITCHBOARD_TEST_DATABASE_URL.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from channels.errors import TransientSendError
from channels.types import Address, AddressKind, OutboundMessage
from channels.whatsapp import TwilioSettings, parse_inbound, send_whatsapp
from gateway import create_app, get_state
from gateway.simulate import build_message_form
from gateway.workers import LEASE_MARGIN, OutboxDispatcher
from inbox.agents import create_api_token
from inbox.events import events_after
from inbox.ingest import ingest_message
from inbox.models import Agent, Channel, Message, OutboxItem, utcnow
from inbox.outbox import ABANDONED_SEND_NOTE, MAX_ATTEMPTS, UNCONFIRMED_SEND_ERROR, UNKNOWN_OUTCOME_ERROR, claim_next
from inbox.replies import create_reply
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER
from tests.gateway.test_outbox_safety import channel, sender, twilio  # noqa: F401 (fixtures)
from tests.gateway.test_whatsapp_optout_fallback import (  # noqa: F401 (email_channel and smtp are fixtures)
    customer_email_first,
    email_channel,
    smtp,
)
from tests.support.live import LiveServer
from tests.support.processes import START_TIMEOUT, EventClient, ServiceProcess, service_environment
from tests.support.twilio_server import DROP_AFTER_CREATE, DROP_BEFORE_CREATE, HANG_AFTER_CREATE
from tests.support.whatsapp import app_with, ingest_webhooks

PUBLIC_URL = "https://support.example.com"
CUSTOMER_PHONE = "+15551230000"
# Short enough that a hanging create fails fast, long enough for a loaded test machine.
READ_TIMEOUT_SECONDS = 0.5
LONG_TEXT = " ".join(f"Step {n}: check the parcel and the label carefully." for n in range(90))


@pytest.fixture
def app(config, twilio):
    built = create_app(replace(
        config, twilio_api_base_url=twilio.base_url, public_url=PUBLIC_URL, whatsapp_send_rate=0,
        twilio_timeout=READ_TIMEOUT_SECONDS,
    ))
    yield built
    get_state(built).engine.dispose()


@pytest.fixture
def twilio_state(app):
    return get_state(app)


@pytest.fixture
def conversation_id(twilio_state, channel):
    form = build_message_form(channel, CUSTOMER_PHONE, "Where is my parcel?", "Grace")
    raw = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    with twilio_state.session_factory() as session:
        return ingest_message(session, channel.id, parse_inbound(form, raw)).conversation_id


def _reply(twilio_state, conversation_id: int, agent, text: str) -> int:
    with twilio_state.session_factory() as session:
        message = create_reply(session, conversation_id, agent.id, text)
        session.commit()
        return message.id


def _dispatch(twilio_state) -> int:
    return OutboxDispatcher(twilio_state, threading.Event()).dispatch_due()


def _make_due(twilio_state) -> None:
    with twilio_state.session_factory() as session:
        for item in session.scalars(select(OutboxItem)):
            item.next_attempt_at = utcnow() - timedelta(seconds=1)
        for channel in session.scalars(select(Channel)):
            channel.send_not_before = None
        session.commit()


def _message(twilio_state, message_id: int) -> Message:
    with twilio_state.session_factory() as session:
        message = session.get(Message, message_id)
        session.expunge(message)
        return message


def _item(twilio_state, message_id: int) -> OutboxItem:
    with twilio_state.session_factory() as session:
        item = session.scalar(select(OutboxItem).where(OutboxItem.message_id == message_id))
        session.expunge(item)
        return item


def _post_status(app, channel_id: int, sid: str, status: str):
    path = f"/webhooks/twilio/{channel_id}/status"
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": TWILIO_ACCOUNT_SID}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(PUBLIC_URL + path, form)
    response = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})
    ingest_webhooks(get_state(app))
    return response


def _last_message_event(twilio_state, message_id: int) -> dict:
    with twilio_state.session_factory() as session:
        events = [
            event.payload["message"] for event in events_after(session, 0)
            if event.type == "message.updated" and event.payload["message"]["id"] == message_id
        ]
    return events[-1]


# The sender's classification of failures


def _outbound() -> OutboundMessage:
    return OutboundMessage(to=Address(AddressKind.PHONE, CUSTOMER_PHONE), text="Your refund is on its way.")


@pytest.mark.parametrize("fault", [HANG_AFTER_CREATE, DROP_AFTER_CREATE, DROP_BEFORE_CREATE])
def test_unanswered_create_may_have_sent(twilio, fault):
    settings = TwilioSettings(
        TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER,
        api_base_url=twilio.base_url, timeout_seconds=READ_TIMEOUT_SECONDS,
    )
    twilio.fault_next(fault)

    with pytest.raises(TransientSendError) as caught:
        send_whatsapp(settings, _outbound())

    assert caught.value.may_have_sent is True


def test_server_error_may_have_sent(twilio):
    settings = TwilioSettings(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER, api_base_url=twilio.base_url)
    twilio.fail_next(500, 20500, "Internal Server Error")

    with pytest.raises(TransientSendError) as caught:
        send_whatsapp(settings, _outbound())

    assert caught.value.may_have_sent is True


def test_refused_connection_certainly_not_sent():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port is closed now, so the connection is refused.
    settings = TwilioSettings(
        TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER, api_base_url=f"http://127.0.0.1:{port}"
    )

    with pytest.raises(TransientSendError) as caught:
        send_whatsapp(settings, _outbound())

    assert caught.value.may_have_sent is False


def test_tls_to_plain_server_certainly_not_sent(twilio):
    settings = TwilioSettings(
        TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER,
        api_base_url=twilio.base_url.replace("http://", "https://"),
    )

    with pytest.raises(TransientSendError) as caught:
        send_whatsapp(settings, _outbound())

    assert "TLS handshake failed" in str(caught.value)
    assert caught.value.may_have_sent is False


# The outbox


@pytest.mark.parametrize("fault", [HANG_AFTER_CREATE, DROP_AFTER_CREATE])
def test_created_message_is_adopted_not_resent(app, twilio_state, twilio, channel, sender, conversation_id, fault):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    twilio.fault_next(fault)

    assert _dispatch(twilio_state) == 1
    item = _item(twilio_state, message_id)
    assert item.status == "pending"
    assert "could not be reached" in item.last_error
    assert len(twilio.messages) == 1

    _make_due(twilio_state)
    _dispatch(twilio_state)

    [created] = twilio.messages
    assert len(twilio.requests) == 1
    assert twilio.list_reads == 1
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("sent", 2)
    assert item.unconfirmed_since is None
    message = _message(twilio_state, message_id)
    assert message.provider_message_id == created["sid"]
    assert message.delivery_status == "queued"
    assert message.delivery_error is None

    # Twilio's status callbacks for the adopted message reach the reply.
    assert _post_status(app, channel.id, created["sid"], "delivered").status_code == 204
    assert _message(twilio_state, message_id).delivery_status == "delivered"


def test_dropped_request_is_sent_again(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    twilio.fault_next(DROP_BEFORE_CREATE)

    _dispatch(twilio_state)
    assert twilio.messages == []
    _make_due(twilio_state)
    _dispatch(twilio_state)

    [created] = twilio.messages
    assert len(twilio.requests) == 2
    assert twilio.list_reads == 1
    assert _item(twilio_state, message_id).status == "sent"
    assert _message(twilio_state, message_id).provider_message_id == created["sid"]


def test_failed_lookup_is_retried_without_sending(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    twilio.fault_next(HANG_AFTER_CREATE)
    _dispatch(twilio_state)
    twilio.fail_next_list(503, 20503, "Service Unavailable")

    _make_due(twilio_state)
    _dispatch(twilio_state)

    assert len(twilio.requests) == 1
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("pending", 2)
    assert "message list could not be read" in item.last_error
    assert item.next_attempt_at > utcnow()

    _make_due(twilio_state)
    _dispatch(twilio_state)

    [created] = twilio.messages
    assert len(twilio.requests) == 1
    assert _item(twilio_state, message_id).status == "sent"
    assert _message(twilio_state, message_id).provider_message_id == created["sid"]


def test_lookup_failing_to_the_end_warns_agent(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    twilio.fault_next(HANG_AFTER_CREATE)
    _dispatch(twilio_state)
    twilio.fail_next_list(500, 20500, "Internal Server Error", times=MAX_ATTEMPTS)

    for _ in range(MAX_ATTEMPTS - 1):
        _make_due(twilio_state)
        _dispatch(twilio_state)

    assert len(twilio.requests) == 1
    assert twilio.list_reads == MAX_ATTEMPTS - 1
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("failed", MAX_ATTEMPTS)
    message = _message(twilio_state, message_id)
    assert message.delivery_status == "failed"
    assert message.delivery_error.startswith("The provider did not answer an attempt to send this reply")
    assert "Check with the customer before sending it again." in message.delivery_error
    assert "message list could not be read" in message.delivery_error
    event = _last_message_event(twilio_state, message_id)
    assert event["delivery_status"] == "failed"
    assert event["error"] == message.delivery_error


def test_earlier_identical_messages_are_not_adopted(twilio_state, twilio, sender, conversation_id):
    body = "Thanks, we are on it."
    whatsapp_from, whatsapp_to = f"whatsapp:{WHATSAPP_NUMBER}", f"whatsapp:{CUSTOMER_PHONE}"
    other_tool = twilio.add_message(whatsapp_from, whatsapp_to, body, created_at=utcnow() - timedelta(minutes=5))
    first_reply = _reply(twilio_state, conversation_id, sender, body)
    _dispatch(twilio_state)
    first_sid = _message(twilio_state, first_reply).provider_message_id
    second_reply = _reply(twilio_state, conversation_id, sender, body)
    twilio.fault_next(DROP_BEFORE_CREATE)

    _dispatch(twilio_state)
    _make_due(twilio_state)
    _dispatch(twilio_state)

    second_sid = _message(twilio_state, second_reply).provider_message_id
    assert [created["sid"] for created in twilio.messages] == [other_tool, first_sid, second_sid]
    assert twilio.list_reads == 1
    assert _item(twilio_state, second_reply).status == "sent"


def test_unanswered_middle_part_is_adopted(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, LONG_TEXT)
    dispatcher = OutboxDispatcher(twilio_state, threading.Event())
    original = dispatcher.send

    def hang_on_second_part(pending):
        if pending.sent_parts == 1 and pending.attempt == 1:
            twilio.fault_next(HANG_AFTER_CREATE)
        return original(pending)

    dispatcher.send = hang_on_second_part
    dispatcher.dispatch_due()
    assert len(twilio.messages) == 2
    _make_due(twilio_state)
    dispatcher.dispatch_due()

    bodies = [created["body"] for created in twilio.messages]
    assert " ".join(bodies).split() == LONG_TEXT.split()
    assert len(twilio.requests) == len(bodies)
    with twilio_state.session_factory() as session:
        parts = session.get(Message, message_id).parts
        assert [part.provider_message_id for part in parts] == [created["sid"] for created in twilio.messages]
    assert _item(twilio_state, message_id).status == "sent"


# Sends whose dispatcher died


def _after_lease(twilio_state, item: OutboxItem) -> OutboxDispatcher:
    """Return a dispatcher whose clock is one second past the lease of ``item``'s claim."""
    expired = item.locked_until + timedelta(seconds=1)
    return OutboxDispatcher(twilio_state, threading.Event(), clock=lambda: expired)


def _message_events(twilio_state, message_id: int) -> list[dict]:
    with twilio_state.session_factory() as session:
        return [
            event.payload["message"] for event in events_after(session, 0)
            if event.type == "message.updated" and event.payload["message"]["id"] == message_id
        ]


def test_lease_is_twilio_timeouts_plus_margin(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    twilio.hold_responses()
    thread = threading.Thread(target=_dispatch, args=(twilio_state,))
    thread.start()
    try:
        twilio.wait_for_messages(1)
        in_flight = _item(twilio_state, message_id)
    finally:
        twilio.release_responses()
        thread.join(10)
    twilio.fault_next(DROP_AFTER_CREATE)
    second = _reply(twilio_state, conversation_id, sender, "And a voucher for the wait.")
    _dispatch(twilio_state)
    _make_due(twilio_state)
    with twilio_state.session_factory() as session:
        lookup = claim_next(session, lease=OutboxDispatcher(twilio_state, threading.Event()).lease)
    looking_up = _item(twilio_state, second)

    # Each request waits up to the timeout to connect and again for the response.
    request = 2 * timedelta(seconds=READ_TIMEOUT_SECONDS)
    assert in_flight.locked_until - in_flight.in_flight_since == request + LEASE_MARGIN
    assert lookup.unconfirmed_since is not None
    assert looking_up.locked_until - looking_up.in_flight_since == 2 * request + LEASE_MARGIN


def test_killed_worker_send_is_found_at_twilio(config, twilio_state, twilio, sender, conversation_id, tmp_path):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    twilio.fault_next(HANG_AFTER_CREATE)
    worker_timeout = 20
    environment = service_environment(
        database_url=config.database_url, secret_key=config.secret_key, instance_dir=config.instance_dir,
        twilio_api_base_url=twilio.base_url, public_url=PUBLIC_URL, whatsapp_send_rate="0",
        twilio_timeout=str(worker_timeout), proactive_enabled="false", log_level="INFO",
    )
    worker = ServiceProcess("worker", ["worker"], environment, tmp_path).start()
    try:
        [created] = twilio.wait_for_messages(1, timeout=START_TIMEOUT)
        in_flight = _item(twilio_state, message_id)
        worker.fail_unless_running()
        worker.process.kill()
        worker.process.wait(10)
    finally:
        worker.stop()

    # The dead worker's claim holds for one Twilio request plus the margin, not longer.
    assert in_flight.in_flight_since is not None
    assert in_flight.locked_until - in_flight.in_flight_since == 2 * timedelta(seconds=worker_timeout) + LEASE_MARGIN
    assert _dispatch(twilio_state) == 0
    assert _message(twilio_state, message_id).delivery_status == "queued"

    assert _after_lease(twilio_state, in_flight).dispatch_due() == 1

    assert len(twilio.requests) == 1
    assert twilio.list_reads == 1
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("sent", 2)
    message = _message(twilio_state, message_id)
    assert message.provider_message_id == created["sid"]
    assert message.delivery_status == "queued"
    assert message.delivery_error is None


def test_abandoned_claim_before_the_send_is_sent(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    dead = OutboxDispatcher(twilio_state, threading.Event())
    with twilio_state.session_factory() as session:
        claim_next(session, lease=dead.lease)  # the dispatcher dies before it calls Twilio
    in_flight = _item(twilio_state, message_id)

    assert _after_lease(twilio_state, in_flight).dispatch_due() == 1

    [created] = twilio.messages
    assert len(twilio.requests) == 1
    assert twilio.list_reads == 1
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("sent", 2)
    assert _message(twilio_state, message_id).provider_message_id == created["sid"]


def test_abandoned_lookup_that_fails_is_retried(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    with twilio_state.session_factory() as session:
        claim_next(session, lease=OutboxDispatcher(twilio_state, threading.Event()).lease)
    in_flight = _item(twilio_state, message_id)
    twilio.fail_next_list(503, 20503, "Service Unavailable")

    _after_lease(twilio_state, in_flight).dispatch_due()

    assert twilio.requests == []
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("pending", 2)
    assert item.unconfirmed_since == in_flight.in_flight_since
    assert "message list could not be read" in item.last_error


def test_abandoned_send_without_attempts_left_fails(twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    with twilio_state.session_factory() as session:
        session.execute(OutboxItem.__table__.update().values(attempts=MAX_ATTEMPTS - 1))
        session.commit()
    with twilio_state.session_factory() as session:
        claim_next(session, lease=OutboxDispatcher(twilio_state, threading.Event()).lease)
    in_flight = _item(twilio_state, message_id)

    _after_lease(twilio_state, in_flight).dispatch_due()

    assert twilio.requests == []
    assert twilio.list_reads == 0
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("failed", MAX_ATTEMPTS)
    assert _message(twilio_state, message_id).delivery_error == UNKNOWN_OUTCOME_ERROR


def test_abandoned_send_shows_live_in_thread(app, twilio_state, twilio, sender, conversation_id):
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    with twilio_state.session_factory() as session:
        token = create_api_token(session, session.get(Agent, sender.id), "tests")
        session.commit()
    with twilio_state.session_factory() as session:
        claim_next(session, lease=OutboxDispatcher(twilio_state, threading.Event()).lease)
    in_flight = _item(twilio_state, message_id)

    with LiveServer(app) as server:
        client = EventClient(server.url, token, ("message.updated",)).connect()
        try:
            _after_lease(twilio_state, in_flight).dispatch_due()
            checking = client.wait_for(
                "message.updated", lambda payload: payload["message"]["id"] == message_id
                and (payload["message"]["retry"] or {}).get("last_error") == ABANDONED_SEND_NOTE,
            )
            sent = client.wait_for(
                "message.updated", lambda payload: payload["message"]["id"] == message_id
                and payload["message"]["retry"] is None,
            )
        finally:
            client.disconnect()

    # The thread shows "Retrying (attempt 2)" with the reason while Twilio is asked.
    assert checking["message"]["delivery_status"] == "queued"
    assert checking["message"]["retry"]["attempts"] == 1
    assert sent["message"]["delivery_status"] == "queued"
    assert sent["event_id"] > checking["event_id"]
    assert [event["retry"] is None for event in _message_events(twilio_state, message_id)] == [False, True]


def test_own_slow_send_is_not_recovered(twilio_state, twilio, sender, conversation_id):
    # Long enough that the held request below does not time out.
    object.__setattr__(twilio_state, "config", replace(twilio_state.config, twilio_timeout=10.0))
    message_id = _reply(twilio_state, conversation_id, sender, "Your refund is on its way.")
    # The request reaches Twilio but its message is not created yet, as when Twilio is slow.
    twilio.hold_creates()
    clock_shift = [timedelta(0)]
    dispatcher = OutboxDispatcher(twilio_state, threading.Event(), clock=lambda: utcnow() + clock_shift[0])
    thread = threading.Thread(target=dispatcher.dispatch_due)
    thread.start()
    try:
        twilio.wait_for(1)
        in_flight = _item(twilio_state, message_id)
        # The dispatcher's clock passes the lease while its own request is still running, as
        # after a step of the system clock. It checks for abandoned sends every poll interval.
        clock_shift[0] = in_flight.locked_until - utcnow() + timedelta(seconds=1)
        time.sleep(4 * twilio_state.config.outbox_poll_interval)
        during = _item(twilio_state, message_id)
    finally:
        twilio.release_creates()
        thread.join(10)

    assert not thread.is_alive()
    # The dispatcher did not take its own running send for abandoned, so it neither looked
    # the reply up nor sent it a second time.
    assert during.last_error is None
    assert twilio.list_reads == 0
    assert len(twilio.requests) == 1
    assert len(twilio.messages) == 1
    item = _item(twilio_state, message_id)
    assert (item.status, item.attempts) == ("sent", 1)
    assert _message(twilio_state, message_id).provider_message_id == twilio.messages[0]["sid"]


def test_unconfirmed_failure_not_resent_by_email(config, twilio, channel, sender, email_channel, smtp):
    with app_with(
        config, twilio_api_base_url=twilio.base_url, public_url=PUBLIC_URL, whatsapp_send_rate=0,
        twilio_timeout=READ_TIMEOUT_SECONDS, whatsapp_email_fallback="automatic",
    ) as (state, client, _):
        customer_email_first(state, email_channel)
        form = build_message_form(channel, CUSTOMER_PHONE, "Where is my parcel?", "Grace")
        raw = "&".join(f"{k}={v}" for k, v in form.items()).encode()
        with state.session_factory() as session:
            conversation_id = ingest_message(session, channel.id, parse_inbound(form, raw)).conversation_id
        message_id = _reply(state, conversation_id, sender, "Your refund is on its way.")
        with state.session_factory() as session:
            session.execute(OutboxItem.__table__.update().values(attempts=MAX_ATTEMPTS - 1))
            session.commit()
        # The last attempt creates the message at Twilio, and the connection drops before the response.
        twilio.fault_next(DROP_AFTER_CREATE)

        _dispatch(state)

        message = _message(state, message_id)
        item = _item(state, message_id)
        shown = next(m for m in client.get(f"/api/v1/conversations/{conversation_id}/messages").json["items"]
                     if m["id"] == message_id)
        with state.session_factory() as session:
            queued = session.scalar(select(func.count()).select_from(OutboxItem))

    assert len(twilio.messages) == 1
    assert item.status == "failed"
    assert message.delivery_error.startswith(UNCONFIRMED_SEND_ERROR)
    # The reply may have reached the customer on WhatsApp, so it is not sent again by email
    # unasked. An agent can still resend it after checking.
    assert smtp.received == []
    assert queued == 1
    assert shown["email_fallback"]["available"] is True
