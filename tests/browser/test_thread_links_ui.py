"""The thread follows the address bar, and names the author of automatic updates."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from channels.types import DeliveryState
from inbox.models import Conversation, Direction, Message, utcnow
from inbox.proactive.sending import AUTOMATIC_PROACTIVE
from tests.browser.test_inbox_ui import _sign_in
from tests.support.conversations import receive

pytestmark = pytest.mark.browser


def test_hash_change_opens_conversation(page, live_server, state, agent, whatsapp_channel):
    first = receive(state, whatsapp_channel.id, "+15551230081", "The first question.")
    second = receive(state, whatsapp_channel.id, "+15551230082", "The second question.")
    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option").filter(has_text="The first question.").click()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("The first question.")

    page.evaluate(f"window.location.hash = '#conversation={second.conversation_id}'")
    expect(thread).to_contain_text("The second question.")
    page.evaluate(f"window.location.hash = '#conversation={first.conversation_id}'")
    expect(thread).to_contain_text("The first question.")
    assert page.console_errors == []


def test_proactive_update_author_is_automatic(page, live_server, state, agent, whatsapp_channel):
    received = receive(state, whatsapp_channel.id, "+15551230083", "Any news on my repair?")
    # The message as the scheduler stores a proactive update: outbound, no agent, marked automatic.
    with state.session_factory() as session:
        conversation = session.get(Conversation, received.conversation_id)
        session.add(Message(
            conversation=conversation, channel=conversation.channel, direction=Direction.OUTBOUND.value,
            text="Your repair is in progress.", created_at=utcnow(), automatic=AUTOMATIC_PROACTIVE,
            delivery_status=DeliveryState.QUEUED.value, parts=[], attachments=[],
        ))
        session.commit()

    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option").filter(has_text="Any news on my repair?").click()
    update = page.locator("#thread .message").filter(has_text="Your repair is in progress.")
    expect(update.locator(".message__author")).to_have_text("Automatic update")
    # The author line names the update, so no badge repeats "Automatic update" beside it.
    expect(update.locator(".message__meta").get_by_text("Automatic update")).to_have_count(1)
    expect(update.locator(".automatic-badge")).to_have_count(0)
    assert page.console_errors == []
