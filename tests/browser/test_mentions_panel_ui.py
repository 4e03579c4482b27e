"""The top bar's list of mentions in Chromium opens inside the window of a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inbox.agents import create_agent
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

# The mentions button sits in the middle of a phone's top bar, so a panel aligned to its right
# edge reached past the window's left edge.
PHONE_VIEWPORTS = [{"width": 420, "height": 860}, {"width": 375, "height": 812}, {"width": 600, "height": 900}]

BOX_OF = "(element) => { const r = element.getBoundingClientRect(); return [r.left, r.right]; }"


@pytest.mark.parametrize("viewport", PHONE_VIEWPORTS, ids=lambda viewport: f"{viewport['width']}px")
def test_mentions_panel_stays_inside_phone_window(browser, live_server, state, viewport):
    with state.session_factory() as session:
        create_agent(session, "ada@example.com", "Ada Lovelace", AGENT_PASSWORD)
        session.commit()
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(live_server.url + "/login")
        page.get_by_label("Email").fill("ada@example.com")
        page.get_by_label("Password").fill(AGENT_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#live-indicator")).to_contain_text("Live")

        page.locator("#mentions-button").click()
        panel = page.get_by_role("region", name="Mentions of you")
        expect(panel).to_be_visible()
        left, right = panel.evaluate(BOX_OF)
        assert left >= 0, f"the mentions panel starts {-left:.0f} px left of the window"
        assert right <= viewport["width"], f"the mentions panel ends at {right:.0f}, past the window's {viewport['width']} px"
        assert errors == []
    finally:
        context.close()
