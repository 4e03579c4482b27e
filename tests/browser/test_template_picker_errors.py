"""The WhatsApp template picker in Chromium when Twilio cannot be reached: a plain reason, no
send button to press, and a thread that stays readable beside the open panel."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from playwright.sync_api import expect

from gateway.simulate import send_simulated_whatsapp
from tests.browser.test_inbox_ui import workers  # noqa: F401 (a fixture)
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

# A loopback port in the test range with nothing listening, standing in for a Twilio outage.
CLOSED_PORT_URL = "http://127.0.0.1:5199"
# A laptop screen, on which the open panel left the thread about 80 px.
LAPTOP = {"width": 1280, "height": 850}
MIN_THREAD_HEIGHT = 240


@pytest.fixture
def config(config):
    return replace(config, twilio_api_base_url=CLOSED_PORT_URL)


def test_picker_explains_unreachable_twilio(browser, live_server, workers, state, config, agent,
                                            whatsapp_channel, tmp_path):
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Where is my order?", profile_name="Grace")
    live_server.wait_until_ingested()
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/login")
        page.get_by_label("Email").fill(agent.email)
        page.get_by_label("Password").fill(AGENT_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("option", name=re.compile("Grace")).click()
        expect(page.locator("#thread")).to_contain_text("Where is my order?")

        page.get_by_role("button", name="Template").click()
        picker = page.get_by_role("form", name="WhatsApp template")
        alert = picker.get_by_role("alert")
        expect(alert).to_contain_text("Twilio at 127.0.0.1 could not be reached: the connection was refused.")
        text = alert.inner_text()
        assert "HTTPConnectionPool" not in text
        assert "Errno" not in text
        assert not text.startswith("Templates could not be loaded: The WhatsApp templates"), text
        expect(picker.get_by_role("button", name="Send template")).to_be_disabled()

        thread_height = page.locator(".thread__scroller").evaluate("(element) => element.clientHeight")
        page.screenshot(path=str(tmp_path / "picker-unreachable.png"))
        assert thread_height >= MIN_THREAD_HEIGHT, f"the thread shows {thread_height} px beside the open picker"
    finally:
        context.close()


def test_picker_send_disabled_before_list_loads(page, live_server, workers, state, config, agent, whatsapp_channel):
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Where is my order?", profile_name="Grace")
    live_server.wait_until_ingested()
    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("option", name=re.compile("Grace")).click()
    expect(page.locator("#thread")).to_contain_text("Where is my order?")

    send = page.locator("#template-panel button[type=submit]")
    expect(send).to_have_count(1)
    expect(send).to_be_disabled()
