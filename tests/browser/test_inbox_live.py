"""An agent signs in, watches a WhatsApp message arrive live, and replies."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from playwright.sync_api import expect

from gateway import create_app, get_state
from gateway.simulate import send_simulated_whatsapp
from gateway.workers import Workers
from tests.conftest import AGENT_PASSWORD, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.live import LiveServer
from tests.support.twilio_server import TwilioTestServer

pytestmark = pytest.mark.browser


@pytest.fixture
def twilio():
    with TwilioTestServer(account_sid=TWILIO_ACCOUNT_SID, auth_token=TWILIO_AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def service(config, twilio, agent, whatsapp_channel):
    """The whole service as `switchboard run` starts it: web app plus workers."""
    app = create_app(replace(config, twilio_api_base_url=twilio.base_url))
    state = get_state(app)
    workers = Workers(state)
    workers.start()
    with LiveServer(app) as server:
        yield server, state
    workers.stop(timeout=2)
    state.engine.dispose()


def _sign_in(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live")


def test_agent_sees_whatsapp_message_live_and_replies(page, service, agent, whatsapp_channel, twilio, config):
    server, state = service
    _sign_in(page, server.url, agent.email)
    expect(page.get_by_text("No conversations yet")).to_be_visible()

    send_simulated_whatsapp(
        state.session_factory, config, server.url, "+15551230000", "Hi, where is my order 1234?",
        profile_name="Grace",
    )

    conversation = page.get_by_role("option", name=re.compile("Grace"))
    expect(conversation).to_be_visible()
    conversation.click()
    expect(page.locator("#thread")).to_contain_text("Hi, where is my order 1234?")

    reply_box = page.get_by_role("textbox", name="Reply")
    reply_box.fill("It left our warehouse this morning.")
    page.get_by_role("button", name="Send").click()

    expect(page.locator("#thread")).to_contain_text("It left our warehouse this morning.")
    (sent,) = twilio.wait_for(1)
    assert sent["Body"] == "It left our warehouse this morning."
    assert sent["To"] == "whatsapp:+15551230000"
    assert page.console_errors == []


def test_wrong_password_shows_error(page, live_server, agent):
    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("wrong")
