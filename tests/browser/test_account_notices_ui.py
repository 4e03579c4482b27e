"""In Chromium: the notice after a forced password change on the inbox, the Account page's
browser names and the audit log's readable values, on a desktop and a phone-sized window."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from inbox.agents import create_agent, set_temporary_password
from inbox.audit import Action, record_audit
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

PHONE = {"width": 420, "height": 900}
DESKTOP = {"width": 1280, "height": 800}
TEMPORARY_PASSWORD = "temporary pass 4"
NEW_PASSWORD = "a fresh password 42"
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
NOTICE = "Your password is changed. Your other sign-ins have ended."


def _open(browser, viewport: dict, user_agent: str | None = None, color_scheme: str = "light") -> Page:
    options = {"viewport": viewport, "color_scheme": color_scheme}
    if user_agent:
        options["user_agent"] = user_agent
    page = browser.new_context(**options).new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return page


def _sign_in(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _right_edge(locator) -> float:
    return locator.evaluate("(element) => element.getBoundingClientRect().right")


@pytest.mark.parametrize(("viewport", "color_scheme"), [(DESKTOP, "light"), (PHONE, "dark")], ids=["desktop", "phone-dark"])
def test_forced_change_notice_lands_on_inbox(browser, live_server, state, viewport, color_scheme):
    with state.session_factory() as session:
        agent = create_agent(session, "tess@example.com", "Tess Temp", AGENT_PASSWORD)
        session.flush()
        set_temporary_password(session, None, agent.id, TEMPORARY_PASSWORD)
        session.commit()
    page = _open(browser, viewport, color_scheme=color_scheme)
    try:
        _sign_in(page, live_server.url, "tess@example.com", TEMPORARY_PASSWORD)
        expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
        page.locator("input[name=current_password]").fill(TEMPORARY_PASSWORD)
        page.locator("input[name=new_password]").fill(NEW_PASSWORD)
        page.locator("input[name=confirm_password]").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()

        expect(page.locator("#live-indicator")).to_contain_text("Live")
        notice = page.get_by_role("status").filter(has_text=NOTICE)
        expect(notice).to_be_visible()
        assert page.url == live_server.url + "/"
        header_bottom = page.locator("header.topbar").evaluate("(element) => element.getBoundingClientRect().bottom")
        notice_box = notice.evaluate("(element) => element.getBoundingClientRect().toJSON()")
        workspace_top = page.locator(".workspace").evaluate("(element) => element.getBoundingClientRect().top")
        assert notice_box["top"] >= header_bottom, "the notice overlaps the top bar"
        assert notice_box["bottom"] <= workspace_top, "the notice overlaps the conversation panes"
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert _right_edge(page.get_by_role("button", name="Log out")) <= viewport["width"]
        expect(page.locator("#views")).to_be_visible()
        assert page.evaluate(FIND_LOW_CONTRAST) == []

        page.reload()
        expect(page.locator("#live-indicator")).to_contain_text("Live")
        expect(page.locator("#flash-messages")).to_have_count(0)
        page.goto(live_server.url + "/account")
        expect(page.get_by_role("heading", name="Your account")).to_be_visible()
        expect(page.get_by_text(NOTICE)).to_have_count(0)
        assert page.console_errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_account_names_browsers(browser, live_server, agent, viewport):
    other = _open(browser, DESKTOP, FIREFOX_WINDOWS)
    page = _open(browser, viewport)
    try:
        _sign_in(other, live_server.url, agent.email, AGENT_PASSWORD)
        expect(other.locator("#live-indicator")).to_contain_text("Live")
        _sign_in(page, live_server.url, agent.email, AGENT_PASSWORD)
        expect(page.locator("#live-indicator")).to_contain_text("Live")
        page.goto(live_server.url + "/account")

        sign_ins = page.locator("#sign-ins")
        firefox = sign_ins.locator("tr", has_text="Firefox 140 on Windows")
        expect(firefox.locator(".sign-in__browser")).to_have_attribute("title", FIREFOX_WINDOWS)
        expect(firefox.locator("code")).to_be_hidden()
        firefox.get_by_text("User-Agent").click()
        expect(firefox.locator("code")).to_have_text(FIREFOX_WINDOWS)
        expect(firefox.get_by_role("button", name="End the sign-in of Firefox 140 on Windows")).to_be_attached()
        expect(sign_ins.locator("tr", has_text="this browser").locator(".sign-in__browser")).to_contain_text("Chrome")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        other.context.close()
        page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_audit_values_read_as_text(browser, live_server, state, viewport):
    with state.session_factory() as session:
        admin = create_agent(session, "root@example.com", "Rita Root", AGENT_PASSWORD, "admin")
        session.flush()
        record_audit(session, admin, Action.TEAM_CHANGED, "team", 1, "Refunds", {
            "name": {"from": "Billing", "to": "Refunds"},
            "members_added": [2, 3],
            "round_robin": {"from": False, "to": True},
        })
        record_audit(session, None, Action.CHANNEL_CHANGED, "channel", 1, "Shop",
                     {"imap_password": {"changed": True}, "smtp_port": {"from": 587, "to": 465}})
        session.commit()
    page = _open(browser, viewport)
    try:
        _sign_in(page, live_server.url, "root@example.com", AGENT_PASSWORD)
        expect(page.locator("#live-indicator")).to_contain_text("Live")
        page.goto(live_server.url + "/admin/audit")

        team_row = page.locator("tr", has_text="team.changed")
        expect(team_row.locator(".audit-details")).to_contain_text("Billing → Refunds")
        expect(team_row.locator(".audit-details__item", has_text="members added").locator("dd")).to_have_text("2, 3")
        expect(team_row.locator(".audit-details__item", has_text="round robin").locator("dd")).to_have_text("No → Yes")
        channel_row = page.locator("tr", has_text="channel.changed")
        expect(channel_row.locator(".audit-details")).to_contain_text("changed (not shown)")
        expect(channel_row.locator(".audit-details")).to_contain_text("587 → 465")
        expect(page.locator(".audit-details").first).not_to_contain_text('"')
        # Each detail keeps whole words on a line rather than a word per line.
        width = team_row.locator(".audit-details").evaluate("(element) => element.getBoundingClientRect().width")
        assert width >= 150
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        page.context.close()
