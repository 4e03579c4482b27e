"""The sign-in page in Chromium for a visitor who is not signed in: it loads, rejects a wrong
password, too many attempts and an expired form, and signs in, all without an error or a
warning in the browser's console."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def console(page):
    """Collect every console message of the page as "type: text"."""
    messages = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    return messages


def _problems(console: list[str]) -> list[str]:
    return [line for line in console if line.startswith(("error:", "warning:"))]


def _submit(page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


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


def test_too_many_attempts_show_error_cleanly(page, console, live_server, agent):
    page.goto(live_server.url + "/login?next=/reports")
    for _ in range(10):
        _submit(page, agent.email, "not the password")
        expect(page.get_by_role("alert")).to_have_text("The email or password is wrong.")

    _submit(page, agent.email, AGENT_PASSWORD)

    expect(page.get_by_role("alert")).to_have_text("Too many failed attempts. Wait a few minutes and try again.")
    expect(page.get_by_label("Email")).to_have_value(agent.email)
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    assert page.url == f"{live_server.url}/login?next=/reports"
    assert page.console_errors == []
    assert _problems(console) == []

    # Loading the page again shows no old message.
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to the inbox")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    assert _problems(console) == []


def test_expired_form_shows_error_cleanly(page, console, live_server, agent):
    page.goto(live_server.url + "/login")
    # The session cookie, and with it the form's CSRF token, is gone, as after a restart with a new secret key.
    page.context.clear_cookies()

    _submit(page, agent.email, AGENT_PASSWORD)

    expect(page.get_by_role("alert")).to_have_text("Your session expired. Please sign in again.")
    expect(page.get_by_label("Email")).to_have_value(agent.email)
    assert page.console_errors == []
    assert _problems(console) == []

    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    assert page.console_errors == []
    assert _problems(console) == []
