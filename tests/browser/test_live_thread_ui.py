"""Live updates of the open thread and the contact panel, without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_inbox_ui import _sign_in
from tests.support.conversations import receive

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

