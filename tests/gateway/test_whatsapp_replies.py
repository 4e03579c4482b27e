"""WhatsApp replies leave through the outbox and the twilio SDK, with retries."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from channels.whatsapp import parse_inbound
from gateway import create_app, get_state
from gateway.simulate import build_message_form
from gateway.workers import OutboxDispatcher
from inbox.ingest import ingest_message
from inbox.models import Conversation, Message, OutboxItem, utcnow
from inbox.replies import create_reply
from inbox.serialize import message_to_dict
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER
from tests.support.twilio_server import TwilioTestServer


@pytest.fixture
def twilio():
    with TwilioTestServer(account_sid=TWILIO_ACCOUNT_SID, auth_token=TWILIO_AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def twilio_state(config, twilio):
    app = create_app(
        replace(config, twilio_api_base_url=twilio.base_url, public_url="https://support.example.com")
    )
    yield get_state(app)
    get_state(app).engine.dispose()


def _conversation_with_reply(state, channel, agent, text="Your parcel ships today.") -> int:
    form = build_message_form(channel, "+15551230000", "Where is my parcel?", "Grace")
    raw = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    with state.session_factory() as session:
        result = ingest_message(session, channel.id, parse_inbound(form, raw))
    with state.session_factory() as session:
        reply = create_reply(session, result.conversation_id, agent.id, text)
        session.commit()
        return reply.id


def _make_due(state) -> None:
    with state.session_factory() as session:
        for item in session.scalars(select(OutboxItem)):
            item.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.commit()


@pytest.fixture
def channel(twilio_state):
    from inbox.channel_config import add_channel

    with twilio_state.session_factory() as session:
        created = add_channel(
            session, "whatsapp", "WhatsApp", WHATSAPP_NUMBER,
            {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN},
        )
        session.commit()
        return created


@pytest.fixture
def sender(twilio_state):
    from inbox.agents import create_agent

    with twilio_state.session_factory() as session:
        created = create_agent(session, "bo@example.com", "Bo", "a long password")
        session.commit()
        return created


def test_reply_reaches_twilio_with_from_to_body(twilio_state, twilio, channel, sender):
    message_id = _conversation_with_reply(twilio_state, channel, sender)

    sent = OutboxDispatcher(twilio_state, threading.Event()).dispatch_due()

    assert sent == 1
    (request,) = twilio.wait_for(1)
    assert request["From"] == f"whatsapp:{WHATSAPP_NUMBER}"
    assert request["To"] == "whatsapp:+15551230000"
    assert request["Body"] == "Your parcel ships today."
    assert request["StatusCallback"] == f"https://support.example.com/webhooks/twilio/{channel.id}/status"
    with twilio_state.session_factory() as session:
        message = session.get(Message, message_id)
        assert message.provider_message_id == twilio.messages[0]["sid"]
        assert message.delivery_status == "queued"
        assert session.scalar(select(OutboxItem.status)) == "sent"


def test_server_error_is_retried_then_sent_once(twilio_state, twilio, channel, sender):
    message_id = _conversation_with_reply(twilio_state, channel, sender)
    twilio.fail_next(500, 20500, "Internal Server Error")
    dispatcher = OutboxDispatcher(twilio_state, threading.Event())

    dispatcher.dispatch_due()
    with twilio_state.session_factory() as session:
        item = session.scalar(select(OutboxItem))
        assert (item.status, item.attempts) == ("pending", 1)
        assert "20500" in item.last_error
        assert item.next_attempt_at > utcnow()
        retry = message_to_dict(session.get(Message, message_id))["retry"]
        assert retry["attempts"] == 1
        assert "20500" in retry["last_error"]
    assert dispatcher.dispatch_due() == 0  # not due yet: backoff

    _make_due(twilio_state)
    dispatcher.dispatch_due()
    dispatcher.dispatch_due()

    assert len(twilio.messages) == 1
    with twilio_state.session_factory() as session:
        message = session.get(Message, message_id)
        assert message.delivery_status == "queued"
        assert message_to_dict(message)["retry"] is None
        assert session.scalar(select(OutboxItem.status)) == "sent"


def test_invalid_number_fails_permanently_with_reason(twilio_state, twilio, channel, sender):
    message_id = _conversation_with_reply(twilio_state, channel, sender)
    twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")

    OutboxDispatcher(twilio_state, threading.Event()).dispatch_due()

    with twilio_state.session_factory() as session:
        message = session.get(Message, message_id)
        assert message.delivery_status == "failed"
        assert "21211" in message.delivery_error
        assert session.scalar(select(OutboxItem.status)) == "failed"
    assert twilio.messages == []


def test_reply_to_unknown_conversation_is_rejected(twilio_state, sender):
    from inbox.errors import NotFound

    with twilio_state.session_factory() as session, pytest.raises(NotFound):
        create_reply(session, 12345, sender.id, "hello")


def test_conversation_is_found_after_reply(twilio_state, channel, sender):
    _conversation_with_reply(twilio_state, channel, sender, "Thanks for waiting")
    with twilio_state.session_factory() as session:
        conversation = session.scalar(select(Conversation))
        assert conversation.snippet == "Thanks for waiting"
        assert [m.direction for m in conversation.messages] == ["inbound", "outbound"]
