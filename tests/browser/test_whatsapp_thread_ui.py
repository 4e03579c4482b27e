"""WhatsApp content in the inbox UI: a reply sent in parts, a reaction on the message it
reacts to, a quoted reply, a location with its map link, renaming the contact, and a reply
whose worker stopped in the middle of its send."""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from gateway.workers import OutboxDispatcher, can_look_up_sends
from inbox.models import Message, MessagePart, utcnow
from inbox.outbox import claim_next, recover_abandoned_sends
from inbox.replies import create_reply
from tests.browser.test_inbox_ui import _conversation, _sign_in, twilio  # noqa: F401 - a fixture
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER

pytestmark = pytest.mark.browser

CUSTOMER = "+4915123456789"
LONG_REPLY = " ".join(f"Step {n}: open the box 📦 and check the seal." for n in range(80))


@pytest.fixture
def config(config, twilio):
    return replace(config, twilio_api_base_url=twilio.base_url, whatsapp_send_rate=0)


def _post(live_server, channel, **fields: str) -> str:
    sid = "SM" + secrets.token_hex(16)
    form = {
        "MessageSid": sid, "AccountSid": TWILIO_ACCOUNT_SID, "From": f"whatsapp:{CUSTOMER}",
        "To": f"whatsapp:{WHATSAPP_NUMBER}", "WaId": CUSTOMER[1:], "ProfileName": "Zoë",
        "Body": "", "NumMedia": "0", **fields,
    }
    url = f"{live_server.url}/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
    response = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 200, response.text
    live_server.wait_until_ingested()
    return sid


def test_parts_reactions_quotes_and_locations_render(page, live_server, state, agent, whatsapp_channel, twilio):
    question_sid = _post(live_server, whatsapp_channel, Body="Where is my parcel?")
    with state.session_factory() as session:
        question = session.scalar(select(Message).where(Message.provider_message_id == question_sid))
        create_reply(session, question.conversation_id, agent.id, LONG_REPLY)
        session.commit()
    OutboxDispatcher(state, threading.Event()).dispatch_due()
    with state.session_factory() as session:
        first_part = session.scalar(select(MessagePart.provider_message_id).order_by(MessagePart.position))
        part_count = len(session.scalars(select(MessagePart)).all())
    _post(live_server, whatsapp_channel, MessageType="reaction", Body="👍", OriginalRepliedMessageSid=first_part)
    _post(live_server, whatsapp_channel, Body="I meant this one", OriginalRepliedMessageSid=question_sid)
    _post(live_server, whatsapp_channel, MessageType="location", Latitude="52.52", Longitude="13.405",
          Label="Home")

    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Zoë").click()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("I meant this one")

    reply = thread.locator(".message-row--outbound")
    expect(reply.locator(".message__parts")).to_have_text(re.compile(rf"^in {part_count} parts: 1 sent · 2 sent"))
    expect(reply.locator(".reaction")).to_have_text("👍")
    expect(thread.locator(".message-row")).to_have_count(4)  # the reaction is folded, not a row

    quote = thread.locator(".message__quote")
    expect(quote).to_have_text(re.compile("Where is my parcel\\?$"))
    quote.click()
    expect(thread.locator(".message--highlight")).to_contain_text("Where is my parcel?")

    location = thread.locator(".message-row").last
    expect(location.locator(".content-badge")).to_have_text("Location")
    expect(location.get_by_role("link")).to_have_attribute(
        "href", "https://www.openstreetmap.org/?mlat=52.52&mlon=13.405#map=17/52.52/13.405")
    assert page.console_errors == []


def test_agent_renames_contact_from_thread(page, live_server, state, agent, whatsapp_channel):
    _post(live_server, whatsapp_channel, Body="Hello")
    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Zoë").click()

    page.once("dialog", lambda dialog: dialog.accept("Zoë Müller (VIP)"))
    page.get_by_role("button", name="Rename").click()

    expect(page.locator("#thread-title")).to_have_text("Zoë Müller (VIP)")
    _post(live_server, whatsapp_channel, Body="Still me", ProfileName="zoe")
    expect(page.locator("#thread")).to_contain_text("Still me")
    expect(page.locator("#thread-title")).to_have_text("Zoë Müller (VIP)")
    assert page.console_errors == []


def test_abandoned_send_shows_check_then_sent(page, live_server, state, agent, whatsapp_channel, twilio, tmp_path):
    question_sid = _post(live_server, whatsapp_channel, Body="Where is my parcel?")
    with state.session_factory() as session:
        question = session.scalar(select(Message).where(Message.provider_message_id == question_sid))
        create_reply(session, question.conversation_id, agent.id, "It left the depot this morning.")
        session.commit()
    dead = OutboxDispatcher(state, threading.Event())
    with state.session_factory() as session:
        claim = claim_next(session, lease=dead.lease)  # the worker dies before it calls Twilio
    assert claim is not None
    after_lease = utcnow() + dead.attempt_lease("whatsapp", {}, looks_up_first=False) + timedelta(seconds=1)

    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Zoë").click()
    status = page.locator("#thread .message-row--outbound .message__status")
    expect(status).to_contain_text("Queued")

    # The first step of the next dispatch round, alone: the send is to be checked at Twilio.
    with state.session_factory() as session:
        recover_abandoned_sends(session, after_lease, can_look_up=can_look_up_sends)
    retry = status.locator(".message__retry")
    expect(retry).to_have_text(re.compile(r"^Retrying \(attempt 2\) — Switchboard stopped while sending this reply"))
    page.screenshot(path=str(tmp_path / "abandoned-send-checking.png"), full_page=True)

    OutboxDispatcher(state, threading.Event(), clock=lambda: after_lease).dispatch_due()
    expect(status).to_have_text("Sent")
    expect(retry).to_have_count(0)
    assert [request["Body"] for request in twilio.requests] == ["It left the depot this morning."]
    assert twilio.list_reads == 1
    assert page.console_errors == []
