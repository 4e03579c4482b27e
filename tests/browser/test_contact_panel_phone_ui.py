"""The contact panel on a phone in Chromium covers the thread. Its own Close button or Esc
closes it again and leaves the conversation open."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.test_inbox_ui import _sign_in, _whatsapp_from

pytestmark = pytest.mark.browser

PHONE = {"width": 420, "height": 860}


def test_phone_contact_panel_closes_by_button_and_esc(browser, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        _sign_in(page, live_server.url, agent.email)
        page.get_by_role("option", name=re.compile("Grace")).click()
        expect(page.locator("#thread")).to_contain_text("Where is my order?")
        toggle = page.get_by_role("button", name="Contact details")
        panel = page.locator("#contact-panel")

        # The open panel covers the thread header and with it the toggle that opened it.
        toggle.click()
        expect(panel).to_be_visible()
        expect(panel).to_contain_text("+15551230001")
        close = panel.get_by_role("button", name="Close contact details")
        expect(close).to_be_visible()
        close.click()
        expect(panel).to_be_hidden()
        expect(toggle).to_be_focused()
        expect(toggle).to_have_attribute("aria-expanded", "false")

        # Esc inside the panel closes it as well, and the conversation stays open.
        toggle.click()
        expect(panel).to_be_visible()
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        expect(toggle).to_be_focused()
        expect(page.locator("#thread")).to_contain_text("Where is my order?")
        assert errors == []
    finally:
        context.close()


def test_desktop_contact_panel_has_no_close_button(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option", name=re.compile("Grace")).click()
    page.get_by_role("button", name="Contact details").click()
    panel = page.locator("#contact-panel")
    expect(panel).to_be_visible()
    # Beside the thread the toggle stays in view, so the panel needs no button of its own.
    expect(panel.get_by_role("button", name="Close contact details")).to_be_hidden()


def test_header_redraw_keeps_focus_on_toggle(page, live_server, state, config, agent, api_token, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option", name=re.compile("Grace")).click()
    expect(page.locator("#thread")).to_contain_text("Where is my order?")
    toggle = page.get_by_role("button", name="Contact details")
    toggle.focus()

    # A colleague's change redraws the thread header. The redraw replaced the focused button,
    # so a keyboard user lost their place, and closing the panel could not return focus to it.
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {api_token}"
    conversation = api.get(f"{live_server.url}/api/v1/conversations", timeout=10).json()["items"][0]
    api.patch(f"{live_server.url}/api/v1/conversations/{conversation['id']}", timeout=10,
              json={"priority": "high"}).raise_for_status()
    expect(page.locator("#control-priority")).to_have_value("high")
    expect(page.get_by_role("button", name="Contact details")).to_be_focused()
    assert page.console_errors == []
