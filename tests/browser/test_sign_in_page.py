"""The sign-in page in Chromium for a visitor who is not signed in: it loads, rejects a wrong
password and signs in, all without an error in the browser's console."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser


def test_sign_in_page_loads_cleanly(page, live_server, agent):
    page.goto(live_server.url + "/login")

    expect(page.get_by_role("heading", name="Sign in to the inbox")).to_be_visible()
    expect(page.get_by_label("Email")).to_be_focused()
    assert page.console_errors == []


def test_redirect_to_sign_in_loads_cleanly(page, live_server, agent):
    page.goto(live_server.url + "/")

    expect(page.get_by_role("heading", name="Sign in to the inbox")).to_be_visible()
    assert page.url == f"{live_server.url}/login?next=/"
    assert page.console_errors == []


def test_wrong_password_shows_error_cleanly(page, live_server, agent):
    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_have_text("The email or password is wrong.")
    expect(page.get_by_label("Email")).to_have_value(agent.email)
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    assert page.console_errors == []

    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    assert page.console_errors == []
