"""Agent administration in Chromium: an admin adds an agent and resets the password, the agent
signs in and must choose a new one; every new page is labelled, readable and keyboard-usable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from inbox.agents import create_agent
from inbox.teams import create_team
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST, _new_page
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

TEMPORARY_PASSWORD = "temporary pass 77"
CHOSEN_PASSWORD = "my own password 77"

# Form controls without an accessible name: no <label>, aria-label or aria-labelledby.
FIND_UNLABELLED = """
() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, summary, a[href]')]
  .filter((element) => {
    const named = element.labels?.length || element.getAttribute('aria-label')
      || element.getAttribute('aria-labelledby') || element.textContent.trim();
    return !named;
  })
  .map((element) => element.outerHTML.slice(0, 80))
"""


def _screenshot(page, name: str) -> None:
    folder = Path(os.environ.get("SWITCHBOARD_SCREENSHOTS", "")) if os.environ.get("SWITCHBOARD_SCREENSHOTS") else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _check_page(page) -> None:
    # Colors are measured at rest: away from the pointer, with color transitions (120 ms on
    # buttons) run to their end, as a button under the pointer that just clicked was caught
    # halfway through its hover transition.
    page.mouse.move(0, 0)
    page.evaluate("document.getAnimations().filter((a) => a instanceof CSSTransition).forEach((a) => a.finish())")
    assert page.evaluate(FIND_UNLABELLED) == []
    assert page.evaluate(FIND_LOW_CONTRAST) == []
    assert page.console_errors == []


def _sign_in(page, base_url: str, email: str, password: str) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def admin(state):
    with state.session_factory() as session:
        created = create_agent(session, "root@example.com", "Rita Root", AGENT_PASSWORD, "admin")
        create_team(session, "Billing", [created.id])
        session.commit()
        return created


def test_admin_adds_agent_and_agent_must_change_password(page, browser, live_server, admin):
    _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()

    # Add an agent with a temporary password.
    page.get_by_label("Name", exact=True).fill("Nia Newcomer")
    page.get_by_label("Email", exact=True).fill("nia@example.com")
    page.get_by_label("Role", exact=True).select_option("agent")
    page.get_by_label("Temporary password (optional)").fill("first temporary 1")
    page.get_by_role("button", name="Add agent").click()
    expect(page.get_by_role("status")).to_contain_text("nia@example.com is created")
    row = page.locator("tr", has_text="nia@example.com")
    expect(row).to_contain_text("password change due")

    # Reset it from the keyboard: open the disclosure, type the password, submit with Enter.
    page.get_by_label("Reset the password of Nia Newcomer").focus()
    page.keyboard.press("Enter")
    password_field = page.get_by_label("Temporary password for Nia Newcomer")
    expect(password_field).to_be_visible()
    password_field.focus()
    page.keyboard.type(TEMPORARY_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("nia@example.com has a temporary password")
    _screenshot(page, "admin-agents")
    _check_page(page)

    # The agent signs in with it and lands on the password change, before anything else.
    newcomer = _new_page(browser)
    try:
        _sign_in(newcomer, live_server.url, "nia@example.com", TEMPORARY_PASSWORD)
        expect(newcomer).to_have_url(re.compile(r"/account/password$"))
        expect(newcomer.get_by_role("heading", name="Choose a new password")).to_be_visible()
        newcomer.goto(live_server.url + "/")
        expect(newcomer).to_have_url(re.compile(r"/account/password$"))
        _screenshot(newcomer, "forced-password-change")
        _check_page(newcomer)

        # Only the keyboard: the first field has focus, Tab moves on, Enter submits.
        expect(newcomer.get_by_label("Temporary password")).to_be_focused()
        newcomer.keyboard.type(TEMPORARY_PASSWORD)
        newcomer.keyboard.press("Tab")
        newcomer.keyboard.type(CHOSEN_PASSWORD)
        newcomer.keyboard.press("Tab")
        newcomer.keyboard.type(CHOSEN_PASSWORD)
        newcomer.keyboard.press("Enter")
        expect(newcomer.locator("#live-indicator")).to_contain_text("Live")
        expect(newcomer.get_by_role("status").filter(has_text="Your password is changed")).to_be_visible()
        assert newcomer.console_errors == []
    finally:
        newcomer.context.close()

    # The audit log shows the three changes, and never a password.
    page.get_by_role("link", name="Audit log").click()
    table = page.get_by_role("table", name="Audit events, newest first")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table).to_contain_text("agent.password_changed")
    expect(table).to_contain_text("agent.password_reset")
    expect(table).to_contain_text("agent.created")
    assert TEMPORARY_PASSWORD not in page.content()
    _screenshot(page, "admin-audit")
    _check_page(page)


def test_teams_and_account_pages(page, live_server, admin):
    _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
    expect(page.locator("#live-indicator")).to_contain_text("Live")

    page.goto(live_server.url + "/admin/teams")
    team = page.get_by_role("region", name="Billing")
    team.get_by_label("Assign new conversations round robin").uncheck()
    team.get_by_role("button", name="Save the team Billing").click()
    expect(page.get_by_role("status")).to_contain_text("The team Billing is saved")
    expect(page.get_by_role("region", name="Billing").get_by_label("Assign new conversations round robin")).not_to_be_checked()
    page.get_by_label("Capacity of Rita Root", exact=True).fill("5")
    page.get_by_role("button", name="Save the capacity of Rita Root").click()
    expect(page.get_by_label("Capacity of Rita Root", exact=True)).to_have_value("5")
    _screenshot(page, "admin-teams")
    _check_page(page)

    page.get_by_role("link", name="Account").click()
    page.get_by_label("Token name").fill("nightly export")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("New token")
    expect(token).to_have_value(re.compile(r"^sbt_"))
    expect(token).to_be_focused()
    expect(page.get_by_role("row", name=re.compile("nightly export"))).to_be_visible()
    expect(page.get_by_role("table", name="Your sign-ins")).to_contain_text("this browser")
    _screenshot(page, "account")
    _check_page(page)

    page.get_by_role("button", name="Revoke the token nightly export").click()
    expect(page.get_by_role("status")).to_contain_text("The token \"nightly export\" is revoked")
    expect(page.get_by_label("New token")).to_have_count(0)


def test_pages_read_well_in_dark_mode(browser, live_server, admin):
    page = _new_page(browser, color_scheme="dark")
    try:
        _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
        for path in ("/admin/agents", "/admin/teams", "/admin/audit", "/account"):
            page.goto(live_server.url + path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            assert page.evaluate(FIND_LOW_CONTRAST) == [], path
        _screenshot(page, "admin-agents-dark")
        assert page.console_errors == []
    finally:
        page.context.close()
