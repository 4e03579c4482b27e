"""WhatsApp replies through the outbox against the Twilio-compatible server: long texts in
parts, attachments by signed URL, status callbacks on every send, explained errors, per-sender
pacing and 429 backoff."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from channels.types import Attachment as AttachmentData
from channels.whatsapp import parse_inbound
from channels.whatsapp.parts import utf16_length
from gateway import create_app, get_state
from gateway.simulate import build_message_form
from gateway.webhooks import media_url
from gateway.workers import OutboxDispatcher
from inbox.agents import create_agent
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import Attachment, Channel, Message, OutboxItem, utcnow
from inbox.outbox import claim_next, seconds_until_next_send
from inbox.replies import create_reply
from inbox.serialize import message_to_dict
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER
from tests.support.live import LiveServer
from tests.support.twilio_server import TwilioTestServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
# A long text with emoji and a joined family, so that parts are counted in UTF-16.
LONG_TEXT = " ".join(f"Step {n}: check the parcel 📦 and the label 👨‍👩‍👧 carefully." for n in range(90))


@pytest.fixture
def twilio():
    with TwilioTestServer(account_sid=TWILIO_ACCOUNT_SID, auth_token=TWILIO_AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def service(config, twilio):
    """The app served on loopback, with its public URL pointing at itself for Twilio."""
    app = create_app(replace(config, twilio_api_base_url=twilio.base_url, whatsapp_send_rate=0))
    with LiveServer(app) as server:
        state = get_state(app)
        configured = replace(state.config, public_url=server.url)
        object.__setattr__(state, "config", configured)
        twilio.after_status_callback = server.wait_until_ingested
        yield state
    get_state(app).engine.dispose()


@pytest.fixture
def channel(service):
    return _add_channel(service, WHATSAPP_NUMBER)


@pytest.fixture
def sender(service):
    with service.session_factory() as session:
        created = create_agent(session, "bo@example.com", "Bo", "a long password")
        session.commit()
        return created


def _add_channel(state, number: str) -> Channel:
    with state.session_factory() as session:
        created = add_channel(
            session, "whatsapp", f"WhatsApp {number}", number,
            {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN},
        )
        session.commit()
        return created


def _conversation(state, channel, customer: str = "+15551230000") -> int:
    form = build_message_form(channel, customer, "Where is my parcel?", "Grace")
    raw = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    with state.session_factory() as session:
        return ingest_message(session, channel.id, parse_inbound(form, raw)).conversation_id


def _reply(state, conversation_id: int, agent, text: str, attachments=()) -> int:
    with state.session_factory() as session:
        message = create_reply(session, conversation_id, agent.id, text, list(attachments))
        session.commit()
        return message.id


def _dispatcher(state) -> OutboxDispatcher:
    return OutboxDispatcher(state, threading.Event())


def _message(state, message_id: int) -> dict:
    with state.session_factory() as session:
        return message_to_dict(session.get(Message, message_id))


def _make_due(state) -> None:
    with state.session_factory() as session:
        for item in session.scalars(select(OutboxItem)):
            item.next_attempt_at = utcnow() - timedelta(seconds=1)
        for channel in session.scalars(select(Channel)):
            channel.send_not_before = None
        session.commit()


def test_long_reply_goes_out_in_ordered_parts(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, LONG_TEXT)

    attempted = _dispatcher(service).dispatch_due()

    sent = twilio.wait_for(attempted)
    bodies = [request["Body"] for request in sent]
    assert len(bodies) == attempted >= 3
    assert all(utf16_length(body) <= 1600 for body in bodies)
    assert " ".join(bodies).split() == LONG_TEXT.split()
    assert all(not body.endswith("👨") and "\u200d" not in body[-1:] for body in bodies)
    callback = f"{service.config.public_url}/webhooks/twilio/{channel.id}/status"
    assert [request["StatusCallback"] for request in sent] == [callback] * len(sent)

    message = _message(service, message_id)
    sids = [created["sid"] for created in twilio.messages]
    assert [part["provider_message_id"] for part in message["parts"]] == sids
    assert [part["position"] for part in message["parts"]] == list(range(len(sids)))
    assert message["delivery_status"] == "queued"
    with service.session_factory() as session:
        assert session.scalar(select(OutboxItem.status)) == "sent"


def test_part_statuses_combine_into_reply_status(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, LONG_TEXT)
    _dispatcher(service).dispatch_due()
    sids = [created["sid"] for created in twilio.messages]

    for sid in sids:
        assert twilio.post_status(sid, "delivered") == 204
    assert _message(service, message_id)["delivery_status"] == "delivered"

    assert twilio.post_status(sids[0], "read") == 204
    assert _message(service, message_id)["delivery_status"] == "delivered"
    for sid in sids[1:]:
        twilio.post_status(sid, "read")
    assert twilio.post_status(sids[0], "sent") == 204  # late and stale

    message = _message(service, message_id)
    assert message["delivery_status"] == "read"
    assert {part["delivery_status"] for part in message["parts"]} == {"read"}


def test_failed_part_fails_reply_with_explanation(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, LONG_TEXT)
    _dispatcher(service).dispatch_due()
    sids = [created["sid"] for created in twilio.messages]

    twilio.post_status(sids[0], "delivered")
    twilio.post_status(sids[1], "undelivered", error_code=30003)
    twilio.post_status(sids[1], "delivered")

    message = _message(service, message_id)
    assert message["delivery_status"] == "undelivered"
    assert message["error"].startswith("Part 2: The customer's phone is unreachable")
    assert message["error"].endswith("(error 30003)")
    assert [part["delivery_status"] for part in message["parts"][:2]] == ["delivered", "undelivered"]


def test_rejected_middle_part_stops_the_rest(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, LONG_TEXT)
    dispatcher = _dispatcher(service)
    twilio_calls = []

    original = dispatcher.send

    def send_and_fail_second(pending):
        twilio_calls.append(pending.sent_parts)
        if pending.sent_parts == 1:
            twilio.fail_next(400, 63024, "Invalid message recipient")
        return original(pending)

    dispatcher.send = send_and_fail_second
    dispatcher.dispatch_due()

    assert twilio_calls == [0, 1]
    message = _message(service, message_id)
    assert message["delivery_status"] == "failed"
    assert "Twilio error 63024: The recipient is not a valid WhatsApp user." in message["error"]
    assert len(message["parts"]) == 1
    twilio.post_status(twilio.messages[0]["sid"], "delivered")
    assert _message(service, message_id)["delivery_status"] == "failed"


def test_transient_failure_resumes_at_next_part(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, LONG_TEXT)
    dispatcher = _dispatcher(service)
    original = dispatcher.send

    def fail_once_at_second(pending):
        if pending.sent_parts == 1 and pending.attempt == 1:
            twilio.fail_next(503, 20503, "Service Unavailable")
        return original(pending)

    dispatcher.send = fail_once_at_second
    dispatcher.dispatch_due()
    assert len(twilio.messages) == 1
    assert _message(service, message_id)["retry"]["attempts"] == 1

    _make_due(service)
    dispatcher.dispatch_due()

    bodies = [created["body"] for created in twilio.messages]
    assert " ".join(bodies).split() == LONG_TEXT.split()
    assert len(_message(service, message_id)["parts"]) == len(bodies)


def test_next_reply_waits_for_all_parts(service, twilio, channel, sender):
    conversation_id = _conversation(service, channel)
    _reply(service, conversation_id, sender, LONG_TEXT)
    _reply(service, conversation_id, sender, "One more thing.")

    _dispatcher(service).dispatch_due()

    bodies = [created["body"] for created in twilio.messages]
    assert bodies[-1] == "One more thing."
    assert " ".join(bodies[:-1]).split() == LONG_TEXT.split()


def test_attachment_goes_by_signed_media_url(service, twilio, channel, sender):
    attachment = AttachmentData("label.png", "image/png", PNG)
    message_id = _reply(service, _conversation(service, channel), sender, "Here is the label.", [attachment])

    assert _dispatcher(service).dispatch_due() == 1

    (request,) = twilio.wait_for(1)
    assert request["Body"] == "Here is the label."
    assert request["MediaUrl"].startswith(f"{service.config.public_url}/webhooks/twilio/{channel.id}/media/")
    (fetch,) = twilio.media_fetches
    assert (fetch.status, fetch.content_type, fetch.body) == (200, "image/png", PNG)
    assert fetch.headers["X-Content-Type-Options"] == "nosniff"
    assert fetch.headers["Content-Disposition"].startswith('attachment; filename="label.png"')
    assert "sandbox" in fetch.headers["Content-Security-Policy"]
    assert _message(service, message_id)["parts"] == []


def test_two_attachments_and_long_text_are_separate_parts(service, twilio, channel, sender):
    files = [AttachmentData("a.png", "image/png", PNG), AttachmentData("b.pdf", "application/pdf", b"%PDF-1.4")]
    message_id = _reply(service, _conversation(service, channel), sender, LONG_TEXT, files)

    _dispatcher(service).dispatch_due()

    sent = twilio.requests
    media = [request.get("MediaUrl") for request in sent]
    assert None not in media[-2:]
    assert media[:-2] == [None] * (len(sent) - 2)
    assert [fetch.content_type for fetch in twilio.media_fetches] == ["image/png", "application/pdf"]
    assert len(_message(service, message_id)["parts"]) == len(sent)


def test_media_link_rejects_tampering_expiry_and_inbound_files(service, channel, sender, monkeypatch):
    conversation_id = _conversation(service, channel)
    _reply(service, conversation_id, sender, "", [AttachmentData("a.png", "image/png", PNG)])
    with service.session_factory() as session:
        outbound_id = session.scalar(select(Attachment.id))
        inbound = session.scalar(select(Message).where(Message.direction == "inbound"))
        session.add(Attachment(message=inbound, filename="secret.pdf", content_type="application/pdf", size=3, data=b"abc"))
        session.commit()
        inbound_attachment = session.scalar(select(Attachment.id).where(Attachment.id != outbound_id))
    base, secret = service.config.public_url, service.config.secret_key

    good = media_url(base, secret, channel.id, outbound_id)
    customer_file = media_url(base, secret, channel.id, inbound_attachment)
    other_channel = media_url(base, secret, channel.id + 1, outbound_id).replace(
        f"/twilio/{channel.id + 1}/", f"/twilio/{channel.id}/")
    forged = media_url(base, "another secret", channel.id, outbound_id)
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda signer: int(time.time()) - 5 * 3600)
        expired = media_url(base, secret, channel.id, outbound_id)

    assert requests.get(good, timeout=10).status_code == 200
    assert requests.get(customer_file, timeout=10).status_code == 404
    assert requests.get(other_channel, timeout=10).status_code == 404
    assert requests.get(forged, timeout=10).status_code == 404
    assert requests.get(good + "x", timeout=10).status_code == 404
    assert requests.get(expired, timeout=10).status_code == 410


def test_attachment_without_public_url_fails_clearly(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, "", [AttachmentData("a.png", "image/png", PNG)])
    object.__setattr__(service, "config", replace(service.config, public_url=None))

    _dispatcher(service).dispatch_due()

    message = _message(service, message_id)
    assert message["delivery_status"] == "failed"
    assert "SWITCHBOARD_PUBLIC_URL" in message["error"]
    assert twilio.requests == []


def test_rate_limit_pauses_only_that_sender(service, twilio, channel, sender):
    other = _add_channel(service, "+14155550100")
    limited = _reply(service, _conversation(service, channel), sender, "first sender")
    free = _reply(service, _conversation(service, other, "+15557654321"), sender, "second sender")
    # Both channels send in the same round, so only the first one's request is refused.
    twilio.fail_next(429, 20429, "Too Many Requests", retry_after=30, to="whatsapp:+15551230000")

    before = utcnow()
    _dispatcher(service).dispatch_due()

    assert [created["body"] for created in twilio.messages] == ["second sender"]
    assert _message(service, free)["delivery_status"] == "queued"
    with service.session_factory() as session:
        paused = session.get(Channel, channel.id).send_not_before
        item = session.scalar(select(OutboxItem).where(OutboxItem.message_id == limited))
        assert timedelta(seconds=29) <= paused - before <= timedelta(seconds=32)
        assert item.next_attempt_at == paused
        assert "Twilio error 20429" in item.last_error
    with service.session_factory() as session:
        assert 29 <= seconds_until_next_send(session, before) <= 32
    assert _message(service, limited)["retry"]["attempts"] == 1

    _make_due(service)
    _dispatcher(service).dispatch_due()
    assert [created["body"] for created in twilio.messages] == ["second sender", "first sender"]


def test_rate_limit_without_retry_after_backs_off(service, twilio, channel, sender):
    _reply(service, _conversation(service, channel), sender, "hello")
    twilio.fail_next(429, 20429, "Too Many Requests")

    before = utcnow()
    _dispatcher(service).dispatch_due()

    with service.session_factory() as session:
        paused = session.get(Channel, channel.id).send_not_before
        assert timedelta(seconds=2) <= paused - before <= timedelta(seconds=6)


def test_pacing_spaces_sends_of_one_sender(service, twilio, channel, sender):
    other = _add_channel(service, "+14155550100")
    # Two customers, because a reply to the same customer would wait for the first one anyway.
    _reply(service, _conversation(service, channel), sender, "one")
    _reply(service, _conversation(service, channel, "+15551230001"), sender, "two")
    _reply(service, _conversation(service, other, "+15557654321"), sender, "elsewhere")
    intervals = {"whatsapp": timedelta(seconds=0.5)}
    now = utcnow()

    with service.session_factory() as session:
        first = claim_next(session, now, send_intervals=intervals)
    with service.session_factory() as session:
        second = claim_next(session, now, send_intervals=intervals)
    with service.session_factory() as session:
        blocked = claim_next(session, now, send_intervals=intervals)
    with service.session_factory() as session:
        later = claim_next(session, now + timedelta(seconds=0.5), send_intervals=intervals)

    assert (first.channel_id, second.channel_id) == (channel.id, other.id)
    assert blocked is None
    assert later.channel_id == channel.id
    assert later.outbound.text == "two"


def test_permanent_error_shows_explanation(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, "hello")
    twilio.fail_next(400, 21408, "Permission to send an SMS has not been enabled for the region")

    _dispatcher(service).dispatch_due()

    message = _message(service, message_id)
    assert message["delivery_status"] == "failed"
    assert message["error"].startswith("Twilio error 21408: The Twilio account may not send to the customer's country.")
    assert "(code 21408)" not in message["error"]


def test_whatsapp_rate_limit_code_is_retried(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, "hello")
    twilio.fail_next(400, 63018, "Rate limit exceeded")

    _dispatcher(service).dispatch_due()

    assert _message(service, message_id)["retry"]["attempts"] == 1


def test_status_callback_failure_is_explained(service, twilio, channel, sender):
    message_id = _reply(service, _conversation(service, channel), sender, "hello")
    _dispatcher(service).dispatch_due()

    assert twilio.post_status(twilio.messages[0]["sid"], "undelivered", error_code=30006) == 204

    message = _message(service, message_id)
    assert message["delivery_status"] == "undelivered"
    assert message["error"] == (
        "The number is a landline or its carrier cannot receive this message. Ask the customer for a "
        "mobile number that uses WhatsApp. (error 30006)"
    )


def test_window_error_mid_reply_resumes_after_sent_parts(service, twilio, channel, sender):
    conversation_id = _conversation(service, channel)
    message_id = _reply(service, conversation_id, sender, LONG_TEXT)
    dispatcher = _dispatcher(service)
    original = dispatcher.send

    def close_window_at_second(pending):
        if pending.sent_parts == 1 and pending.attempt == 1:
            twilio.fail_next(400, 63016, "Outside the allowed window")
        return original(pending)

    dispatcher.send = close_window_at_second
    dispatcher.dispatch_due()
    assert _message(service, message_id)["held"] is not None

    _conversation(service, channel)  # the customer writes again, which releases the reply
    dispatcher.dispatch_due()

    bodies = [created["body"] for created in twilio.messages]
    assert " ".join(bodies).split() == LONG_TEXT.split()
    assert len(_message(service, message_id)["parts"]) == len(bodies)
