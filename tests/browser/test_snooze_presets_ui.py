"""The snooze picker's quick choices in Chromium name the day and time they snooze until."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.test_inbox_ui import _conversation, _sign_in, _whatsapp_from

pytestmark = pytest.mark.browser

BROWSER_ZONE = "Europe/Berlin"


def test_monday_preset_snoozes_until_monday_nine(browser, live_server, state, config, agent, api_token,
                                                 whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    context = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id=BROWSER_ZONE)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        _sign_in(page, live_server.url, agent.email)
        _conversation(page, "Grace").click()
        page.get_by_role("group", name="Conversation status").get_by_role("button", name="Snoozed").click()
        presets = page.get_by_role("group", name="Quick choices")

        # A label of "Next week" named neither the day nor the hour, so the label names both.
        expect(presets.get_by_role("button")).to_have_text(["1 hour", "Tomorrow 9:00", "Monday 9:00"])
        # Each quick choice shows its date and time on hover.
        expect(presets.get_by_role("button", name="Monday 9:00")).to_have_attribute("title", re.compile(r"Mon"))
        expect(presets.get_by_role("button", name="Tomorrow 9:00")).to_have_attribute("title", re.compile(r"\d"))

        presets.get_by_role("button", name="Monday 9:00").click()
        expect(page.locator("#thread .controls__note")).to_contain_text("Snoozed until")
        conversation = requests.get(f"{live_server.url}/api/v1/conversations", timeout=10,
                                    headers={"Authorization": f"Bearer {api_token}"}).json()["items"][0]
        until = datetime.fromisoformat(conversation["snoozed_until"].replace("Z", "+00:00")).astimezone(ZoneInfo(BROWSER_ZONE))
        assert until.weekday() == 0, f"snoozed until a {until:%A}"
        assert (until.hour, until.minute) == (9, 0)
        assert errors == []
    finally:
        context.close()
