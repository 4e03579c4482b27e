"""A proactive update from the manager's editor to the customer's phone.

A manager writes, previews and enables a template in Chromium, and an agent moves the
conversation to pending in the inbox. The scheduler's sweep then queues the update, and the
outbox sends it through the Twilio-compatible test server, where the customer's message arrives.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inbox.models import Conversation, ProactiveSend, Role, utcnow
from inbox.proactive.sending import sweep
from tests.browser.test_inbox_ui import _conversation, _sign_in, _whatsapp_from
from tests.support.conversations import add_agent
from tests.support.proactive import settings
from tests.support.whatsapp import config, dispatch, twilio  # noqa: F401 (config and twilio are fixtures)

pytestmark = pytest.mark.browser

WHATSAPP_BODY = "Hello {{ customer_name }}, your request {{ reference }} is waiting for your reply."


def test_manager_enables_update_and_customer_receives_it(
    page, live_server, state, config, agent, whatsapp_channel, twilio
):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace Hopper", "Where is my parcel?")
    with state.session_factory() as session:
        conversation_id = session.query(Conversation.id).one()[0]

    # The manager writes the template, previews it against Grace's conversation and enables it.
    _sign_in(page, live_server.url, manager.email)
    page.goto(live_server.url + "/updates")
    page.get_by_label("Name", exact=True).fill("Waiting for you")
    page.get_by_label("When").select_option(label="Status changed")
    page.get_by_label("New status").select_option(label="Pending")
    page.get_by_label("Subject").fill("Your request {{ reference }}")
    page.get_by_label("Body", exact=True).fill("Hello {{ customer_name }},\n\nwe need a reply from you.")
    page.get_by_label("Body, sent inside the 24-hour window").fill(WHATSAPP_BODY)
    page.keyboard.press("Control+s")
    expect(page.locator("#save-status")).to_have_text("Saved.")
    page.get_by_label("Conversation id or reference").fill(f"#{conversation_id}")
    page.get_by_label("Conversation id or reference").press("Enter")
    expected = f"Hello Grace Hopper, your request #{conversation_id} is waiting for your reply."
    expect(page.locator("#preview-whatsapp")).to_have_text(expected)
    switch = page.get_by_role("switch", name="Enabled: Waiting for you")
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "true")

    # An agent asks the customer for details and sets the conversation to pending.
    page.goto(live_server.url + "/")
    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Grace Hopper").click()
    page.get_by_role("group", name="Conversation status").get_by_role("button", name="Pending").click()
    expect(page.locator("#thread .thread__details .status-pill")).to_have_text("Pending")

    # One sweep of the scheduler queues the update; the outbox sends it to the customer.
    first = sweep(state.session_factory, settings(), utcnow())
    assert first.results == {"queued": 1}
    dispatch(state)
    [received] = twilio.wait_for(1)
    assert received["Body"] == expected
    assert received["To"] == "whatsapp:+15551230001"

    # The agent sees it in the thread, live, marked as an automatic update.
    thread = page.locator("#thread")
    expect(thread).to_contain_text(expected)
    update = thread.locator(".message").filter(has_text=expected)
    expect(update.locator(".message__author")).to_have_text("Automatic update")

    # A second sweep sends nothing more, and the log records one send.
    second = sweep(state.session_factory, settings(), utcnow())
    assert second.results == {}
    with state.session_factory() as session:
        [row] = session.query(ProactiveSend).all()
    assert row.result == "sent"
    assert row.conversation_id == conversation_id
    assert len(twilio.messages) == 1
    assert page.console_errors == []
