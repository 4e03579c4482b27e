"""Live updates of the open thread and the contact panel, without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from inbox.models import Agent, utcnow
from inbox.proactive.sending import sweep
from inbox.workflow import Changes, change_conversation
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST, _new_page, _sign_in
from tests.support.conversations import receive
from tests.support.proactive import add_template, settings

pytestmark = pytest.mark.browser

PHONE = "+15551230077"


def test_customer_reply_reopens_thread_live(page, live_server, state, agent, whatsapp_channel):
    first = receive(state, whatsapp_channel.id, PHONE, "My parcel is missing.")
    page.set_viewport_size({"width": 1440, "height": 900})
    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option").filter(has_text="My parcel is missing.").click()
    thread = page.locator("#thread")
    panel = page.get_by_role("complementary", name="Contact")
    entry = panel.get_by_role("button", name=re.compile(f"#{first.conversation_id}"))
    expect(entry).to_contain_text("Open")

    # The agent's own status change reaches the contact panel's list.
    page.get_by_role("group", name="Conversation status").get_by_role("button", name="Pending").click()
    expect(thread.locator(".thread__details .status-pill")).to_have_text("Pending")
    expect(entry).to_contain_text("Pending")

    # The customer writes: the thread gains the reopen line and the panel follows.
    receive(state, whatsapp_channel.id, PHONE, "Here is the photo of the label.")
    expect(thread).to_contain_text("Here is the photo of the label.")
    expect(thread.locator(".thread__details .status-pill")).to_have_text("Open")
    expect(thread.locator(".activity").filter(has_text="open again")).to_have_count(1)
    expect(entry).to_contain_text("Open")
    expect(entry).to_contain_text("Here is the photo of the label.")
    assert page.console_errors == []



@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_low_rating_stands_out_in_thread(browser, live_server, state, agent, whatsapp_channel, color_scheme, tmp_path):
    first = receive(state, whatsapp_channel.id, PHONE, "My parcel is missing.")
    add_template(state, "resolved", {}, whatsapp_body="How did we do? Answer 1 (bad) to 5 (great).")
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, agent.id), first.conversation_id, Changes(status="resolved"))
        session.commit()
    sweep(state.session_factory, settings(), utcnow())
    page = _new_page(browser, color_scheme)
    try:
        _sign_in(page, live_server.url, agent.email)
        page.get_by_role("option").filter(has_text="How did we do?").click()
        thread = page.locator("#thread")
        expect(thread).to_contain_text("How did we do?")

        # The customer answers 2 while the agent has the thread open; the conversation stays resolved.
        receive(state, whatsapp_channel.id, PHONE, "2")
        answer = thread.locator("article.message").last
        expect(answer.locator(".message__bubble")).to_have_text("2")
        expect(answer.locator(".satisfaction-badge")).to_have_text("Low rating: 2 of 5")
        expect(answer.locator(".satisfaction-badge")).to_have_class(re.compile("satisfaction-badge--low"))
        expect(answer).to_have_class(re.compile("message--low-satisfaction"))
        expect(answer).to_have_accessible_name(re.compile("Low rating: 2 of 5$"))
        expect(thread.locator(".thread__details .status-pill")).to_have_text("Resolved")
        # The question itself is no answer.
        expect(thread.locator(".satisfaction-badge")).to_have_count(1)
        page.screenshot(path=str(tmp_path / f"low-rating-{color_scheme}.png"))
        assert page.evaluate(FIND_LOW_CONTRAST) == []

        # Loaded anew, the thread shows the same.
        page.reload()
        page.get_by_role("option").filter(has_text="2").first.click()
        expect(thread.locator(".satisfaction-badge")).to_have_text("Low rating: 2 of 5")
        assert page.console_errors == []
    finally:
        page.context.close()
