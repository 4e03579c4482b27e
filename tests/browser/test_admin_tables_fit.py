"""The Account and Audit log tables in Chromium on a phone and a desktop. They fit the window
without scrolling sideways and every value stays readable. A wrong audit filter is reported
beside the form in the words of its labels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from inbox.agents import create_agent, create_api_token
from inbox.audit import Action, record_audit
from inbox.models import Agent
from tests.browser.test_account_notices_ui import _open
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

PHONE = {"width": 420, "height": 900}
DESKTOP = {"width": 1440, "height": 900}
LONG_TOKEN_NAME = "nightly-export-of-resolved-conversations-to-the-warehouse"
LONG_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0 ReportingDashboard/2.4.1-build.20261205"
)
LONG_TEAM = "Refunds-and-chargebacks-for-marketplace-sellers-in-Europe"

# Elements whose content is wider than their box, so the user has to scroll them sideways.
SIDEWAYS_SCROLLERS = """
() => [...document.querySelectorAll('main *')]
  .filter((element) => {
    const style = getComputedStyle(element);
    return ['auto', 'scroll'].includes(style.overflowX) && element.scrollWidth > element.clientWidth + 1;
  })
  .map((element) => `${element.tagName.toLowerCase()}.${element.className} ${element.scrollWidth}>${element.clientWidth}`)
"""

# Table cells that reach past the right edge of the window, as "tag text".
CELLS_PAST_WINDOW = """
() => [...document.querySelectorAll('main table th, main table td')]
  .filter((cell) => cell.getBoundingClientRect().width > 0 && cell.getBoundingClientRect().right > window.innerWidth + 1)
  .map((cell) => `${cell.tagName.toLowerCase()} ${cell.innerText.slice(0, 40)}`)
"""


def _sign_in(page: Page, base_url: str) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("Email").fill("root@example.com")
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live")


def _screenshot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    if os.environ.get("SWITCHBOARD_SCREENSHOTS"):
        extra = Path(os.environ["SWITCHBOARD_SCREENSHOTS"])
        extra.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(extra / f"{name}.png"), full_page=True)


def _assert_fits(page: Page, viewport: dict) -> None:
    page.wait_for_load_state("load")
    width = page.evaluate("window.innerWidth")
    assert width == viewport["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate(SIDEWAYS_SCROLLERS) == []
    assert page.evaluate(CELLS_PAST_WINDOW) == []


@pytest.fixture
def admin(state):
    """An admin with two API tokens, one with a long name, and audit rows with long values."""
    with state.session_factory() as session:
        created = create_agent(session, "root@example.com", "Rita Root", AGENT_PASSWORD, "admin")
        session.flush()
        create_api_token(session, created, LONG_TOKEN_NAME)
        create_api_token(session, created, "scripts")
        record_audit(session, created, Action.TEAM_CHANGED, "team", 7, LONG_TEAM, {
            "name": {"from": "Billing", "to": LONG_TEAM},
            "members_added": [2, 3, 5, 8, 13],
            "round_robin": {"from": False, "to": True},
        })
        record_audit(session, None, Action.CHANNEL_CHANGED, "channel", 1, "support@shop.example.com",
                     {"imap_password": {"changed": True}, "smtp_host": {"from": "smtp.old-provider.example.net",
                                                                          "to": "smtp.new-provider.example.org"}})
        session.commit()
        return session.get(Agent, created.id)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_account_tables_fit_window(browser, live_server, admin, viewport, tmp_path):
    other = _open(browser, DESKTOP, LONG_USER_AGENT)
    page = _open(browser, viewport)
    try:
        _sign_in(other, live_server.url)
        _sign_in(page, live_server.url)
        page.goto(live_server.url + "/account")
        expect(page.get_by_role("heading", name="Your account", level=1)).to_be_visible()

        _assert_fits(page, viewport)
        tokens = page.locator("#tokens table")
        expect(tokens.get_by_role("rowheader", name=LONG_TOKEN_NAME)).to_be_visible()
        expect(tokens.get_by_role("button", name=f"Revoke the token {LONG_TOKEN_NAME}")).to_be_visible()
        sign_ins = page.locator("#sign-ins table")
        other_row = sign_ins.locator("tbody tr", has_text="Edge")
        expect(other_row.get_by_role("button", name="End the sign-in of")).to_be_visible()
        expect(other_row).to_contain_text("127.0.0.1")
        other_row.get_by_text("User-Agent").click()
        expect(other_row.locator("code")).to_have_text(LONG_USER_AGENT)
        _assert_fits(page, viewport)
        if viewport is PHONE:
            # Each stacked value carries its column's name.
            expect(other_row.locator("td", has_text="127.0.0.1")).to_have_attribute("data-label", "Address")
        _screenshot(page, tmp_path, f"account-{viewport['width']}")
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        other.context.close()
        page.context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_audit_table_fits_window(browser, live_server, admin, viewport, tmp_path):
    page = _open(browser, viewport)
    try:
        _sign_in(page, live_server.url)
        page.goto(live_server.url + "/admin/audit")
        expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()

        _assert_fits(page, viewport)
        team_row = page.locator("tbody tr", has_text="team.changed")
        expect(team_row).to_contain_text("root@example.com")
        expect(team_row).to_contain_text(LONG_TEAM)
        expect(team_row.locator(".audit-details")).to_contain_text(f"Billing → {LONG_TEAM}")
        channel_row = page.locator("tbody tr", has_text="channel.changed")
        expect(channel_row.locator(".audit-details")).to_contain_text("smtp.new-provider.example.org")
        expect(channel_row.locator(".audit-details")).to_contain_text("changed (not shown)")
        # The details keep whole words on a line rather than a word per line.
        width = team_row.locator(".audit-details").evaluate("(element) => element.getBoundingClientRect().width")
        assert width >= 150
        _screenshot(page, tmp_path, f"audit-{viewport['width']}")
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_audit_since_after_until_shows_error(browser, live_server, admin, viewport, tmp_path):
    page = _open(browser, viewport)
    try:
        _sign_in(page, live_server.url)
        page.goto(live_server.url + "/admin/audit")
        page.get_by_label("Since (UTC)").fill("2026-02-02")
        page.get_by_label("Until (UTC)").fill("2026-02-01")
        page.get_by_role("button", name="Filter").click()

        error = page.get_by_role("alert")
        expect(error).to_contain_text("Since (UTC)")
        expect(error).to_contain_text("Until (UTC)")
        expect(error).not_to_contain_text("since is")
        since = page.get_by_label("Since (UTC)")
        expect(since).to_have_attribute("aria-invalid", "true")
        expect(since).to_have_accessible_description(error.inner_text())
        expect(since).to_have_value("2026-02-02")
        # The error sits in the filter form, right above the fields it is about.
        form = page.get_by_role("form", name="Filter the audit log")
        expect(form.get_by_role("alert")).to_have_count(1)
        expect(page.get_by_text("No events match")).to_have_count(0)
        _assert_fits(page, viewport)
        _screenshot(page, tmp_path, f"audit-error-{viewport['width']}")
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        # Chromium logs the page's own 400 status; nothing else may fail.
        assert page.console_errors == ["Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"]
    finally:
        page.context.close()
