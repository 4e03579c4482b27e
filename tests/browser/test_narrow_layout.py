"""Layout in Chromium on a phone-sized window and with the longest names: no page is wider than
the window, the main controls stay on screen, and long labels and agent names keep their rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import update

from gateway.simulate import send_simulated_whatsapp
from inbox.agents import create_agent, create_api_token
from inbox.models import Conversation, utcnow
from inbox.teams import create_team
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

PHONE = {"width": 420, "height": 900}
SMALL_PHONE = {"width": 375, "height": 812}
# Between the phone layout and a laptop, where the header's items came closest to wrapping.
SMALL_TABLET = {"width": 600, "height": 900}
TABLET = {"width": 768, "height": 1024}
DESKTOP = {"width": 1440, "height": 900}
LAPTOP = {"width": 1366, "height": 768}
LONG_LABEL = "x" * 50  # the maximum length of a label
LONG_NAME = "N" * 200  # the maximum length of an agent's name

ADMIN_PAGES = [
    ("/admin/agents", "Agents"),
    ("/admin/teams", "Teams"),
    ("/admin/audit", "Audit log"),
    ("/channels", "Channels"),
    ("/account", "Your account"),
    ("/updates", "Update templates"),
    ("/updates/log", "Proactive update log"),
    ("/reports", "Backlog, trend and satisfaction"),
]

# The horizontal extent of an element's box in CSS pixels, or null when it is not rendered.
BOX_OF = "(element) => { const r = element.getBoundingClientRect(); return r.width ? [r.left, r.right] : null; }"

# Descendants of the element that reach past its right edge, as "tag.class right".
OVERFLOWING_CHILDREN = """
(container) => {
  const edge = container.getBoundingClientRect().right + 1;
  return [...container.querySelectorAll('*')]
    .filter((element) => element.getBoundingClientRect().width > 0 && element.getBoundingClientRect().right > edge)
    .map((element) => `${element.tagName.toLowerCase()}.${element.className} ${Math.round(element.getBoundingClientRect().right)}`);
}
"""


@pytest.fixture
def workspace(state, config, live_server, whatsapp_channel):
    """Create an admin, an agent with a 200-character name in a team, and a conversation with
    a 50-character label and a reply and a note by that agent, and return the admin."""
    with state.session_factory() as session:
        admin = create_agent(session, "root@example.com", "Rita Root", AGENT_PASSWORD, "admin")
        long_named = create_agent(session, "long@example.com", LONG_NAME, AGENT_PASSWORD)
        session.flush()
        create_team(session, "Billing", [admin.id, long_named.id])
        token = create_api_token(session, admin, "tests")
        long_named_token = create_api_token(session, long_named, "tests")
        session.commit()

    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Where is my order?", profile_name="Grace")
    live_server.wait_until_ingested()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    conversation = api.get(f"{live_server.url}/api/v1/conversations", timeout=10).json()["items"][0]
    api.patch(f"{live_server.url}/api/v1/conversations/{conversation['id']}", timeout=10,
              json={"add_labels": [LONG_LABEL, "vip"], "priority": "high"}).raise_for_status()
    long_named_api = requests.Session()
    long_named_api.headers["Authorization"] = f"Bearer {long_named_token}"
    for kind, text in [("messages", "It left the warehouse today."), ("notes", "Checked the warehouse.")]:
        long_named_api.post(f"{live_server.url}/api/v1/conversations/{conversation['id']}/{kind}", timeout=10,
                            json={"text": text}).raise_for_status()
    return admin


def _open(browser, viewport: dict) -> Page:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.console_errors = []
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return page


def _sign_in(page: Page, base_url: str) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("Email").fill("root@example.com")
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live")


def _page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def _assert_on_screen(page: Page, locator, description: str) -> None:
    expect(locator).to_be_visible()
    left, right = locator.evaluate(BOX_OF)
    width = page.evaluate("window.innerWidth")
    assert left >= 0, f"{description} starts left of the window, at {left}"
    assert right <= width, f"{description} ends at {right}, past the window's {width} px"


def test_inbox_and_thread_fit_phone(browser, live_server, workspace):
    page = _open(browser, PHONE)
    try:
        _sign_in(page, live_server.url)
        expect(page.locator("#conversation-list").get_by_text("Grace")).to_be_visible()
        assert _page_width(page) <= PHONE["width"]
        _assert_on_screen(page, page.get_by_role("button", name="Keyboard shortcuts"), "the ? help button")
        _assert_on_screen(page, page.get_by_role("button", name="Log out"), "Log out")
        _assert_on_screen(page, page.get_by_role("link", name="Proactive updates"), "the Proactive updates link")
        _assert_on_screen(page, page.locator(".conversation__time").first, "the list's timestamp")

        page.locator("#conversation-list").get_by_text("Grace").click()
        expect(page.locator("#thread")).to_contain_text("Where is my order?")
        assert _page_width(page) <= PHONE["width"]
        _assert_on_screen(page, page.get_by_role("button", name="Keyboard shortcuts"), "the ? help button")
        _assert_on_screen(page, page.get_by_role("button", name="Log out"), "Log out")
        _assert_on_screen(page, page.locator("#control-priority"), "the Priority select")
        _assert_on_screen(page, page.get_by_role("button", name="Merge…"), "Merge")
        _assert_on_screen(page, page.get_by_role("button", name="Send"), "Send")
        _assert_on_screen(page, page.get_by_role("button", name="Canned responses"), "Canned responses")
        _assert_on_screen(page, page.locator(".message__bubble").first, "the message bubble")
        assert page.console_errors == []
    finally:
        page.context.close()


# The header's rendered children that are not on the row of the Log out button, or whose text
# does not fit their box, as "tag.class: reason".
HEADER_OFF_ROW = """
(header) => {
  const logout = header.querySelector('.logout button').getBoundingClientRect();
  return [...header.children]
    .filter((element) => element.getBoundingClientRect().width > 0)
    .flatMap((element) => {
      const box = element.getBoundingClientRect();
      const middle = (box.top + box.bottom) / 2;
      const name = `${element.tagName.toLowerCase()}.${element.className}`;
      const problems = [];
      if (middle < logout.top || middle > logout.bottom) problems.push(`${name}: not on the row of Log out`);
      if (element.scrollWidth > element.clientWidth + 1) problems.push(`${name}: text cut off`);
      return problems;
    });
}
"""


@pytest.mark.parametrize("viewport", [PHONE, SMALL_TABLET, TABLET, DESKTOP],
                         ids=["phone", "small-tablet", "tablet", "desktop"])
def test_inbox_header_keeps_one_row(browser, live_server, workspace, viewport):
    colleague = _open(browser, viewport)
    page = _open(browser, viewport)
    try:
        # A second agent online adds avatars to the header, its widest state.
        colleague.goto(live_server.url + "/login")
        colleague.get_by_label("Email").fill("long@example.com")
        colleague.get_by_label("Password").fill(AGENT_PASSWORD)
        colleague.get_by_role("button", name="Sign in").click()
        expect(colleague.locator("#live-indicator")).to_contain_text("Live")
        _sign_in(page, live_server.url)
        expect(page.locator("#presence")).to_have_attribute("title", f"Online now: {LONG_NAME}")

        header = page.locator("header.topbar")
        logout = page.get_by_role("button", name="Log out")
        _assert_on_screen(page, logout, "Log out")
        line_height = logout.evaluate("(element) => parseFloat(getComputedStyle(element).lineHeight) || 0")
        text_height = logout.evaluate(
            "(element) => { const range = document.createRange(); range.selectNodeContents(element);"
            " return range.getBoundingClientRect().height; }")
        assert text_height < 2 * max(line_height, 13), f"Log out's text is {text_height} px high, more than one line"
        assert header.evaluate(HEADER_OFF_ROW) == []
        assert header.evaluate("(element) => element.scrollWidth <= element.clientWidth")
        assert _page_width(page) <= viewport["width"]
        assert page.console_errors == []
    finally:
        page.context.close()
        colleague.context.close()


def test_admin_pages_fit_phone(browser, live_server, workspace):
    page = _open(browser, PHONE)
    try:
        _sign_in(page, live_server.url)
        for path, heading in ADMIN_PAGES:
            page.goto(live_server.url + path)
            title = page.get_by_role("heading", name=heading, level=1)
            expect(title).to_be_visible()
            assert _page_width(page) <= PHONE["width"], f"{path} is wider than the window"
            _assert_on_screen(page, page.get_by_role("button", name="Log out"), f"Log out on {path}")
            # The site links take one row that scrolls sideways; the last one comes into view.
            account = page.get_by_role("link", name="Account")
            account.scroll_into_view_if_needed()
            _assert_on_screen(page, account, f"the Account link on {path}")
            header_bottom = page.locator("header.topbar").evaluate("(element) => element.getBoundingClientRect().bottom")
            nav_bottom = page.locator(".admin-nav").evaluate("(element) => element.getBoundingClientRect().bottom")
            title_top = title.evaluate("(element) => element.getBoundingClientRect().top")
            assert nav_bottom <= header_bottom, f"the site links on {path} spill out of the header"
            assert header_bottom <= title_top, f"the header on {path} covers the heading"
        assert page.console_errors == []
    finally:
        page.context.close()


def test_account_token_form_fits_small_phone(browser, live_server, workspace):
    page = _open(browser, SMALL_PHONE)
    try:
        _sign_in(page, live_server.url)
        page.goto(live_server.url + "/account")
        tokens = page.locator("section#tokens")
        expect(tokens.get_by_role("button", name="Create token")).to_be_visible()
        assert _page_width(page) <= SMALL_PHONE["width"]
        assert tokens.evaluate(OVERFLOWING_CHILDREN) == []
        assert page.console_errors == []
    finally:
        page.context.close()


def test_snoozed_card_fits_contact_panel(browser, live_server, state, workspace):
    with state.session_factory() as session:
        token = create_api_token(session, workspace, "snooze")
        session.commit()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    conversation = api.get(f"{live_server.url}/api/v1/conversations", timeout=10).json()["items"][0]
    until = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    api.patch(f"{live_server.url}/api/v1/conversations/{conversation['id']}", timeout=10,
              json={"status": "snoozed", "snoozed_until": until}).raise_for_status()
    # A date with its year is the widest time the card shows.
    with state.session_factory() as session:
        session.execute(update(Conversation).values(last_message_at=utcnow() - timedelta(days=400)))
        session.commit()

    page = _open(browser, LAPTOP)
    try:
        _sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/#conversation={conversation['id']}")
        expect(page.locator("#thread")).to_contain_text("Where is my order?")
        panel = page.locator(".contact-panel")
        if not panel.is_visible():
            page.get_by_role("button", name="Contact details").click()
        card = panel.locator(".contact-panel__conversation").first
        expect(card).to_contain_text("Snoozed")
        assert panel.evaluate(OVERFLOWING_CHILDREN) == []
        assert panel.evaluate("(element) => element.scrollWidth <= element.clientWidth")
        assert page.console_errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_long_label_and_name_keep_rows(browser, live_server, workspace, viewport):
    page = _open(browser, viewport)
    try:
        _sign_in(page, live_server.url)
        row = page.locator(".conversation", has_text="Grace")
        assert row.evaluate(OVERFLOWING_CHILDREN) == []
        _assert_on_screen(page, row.locator(".conversation__time"), "the list's timestamp")
        expect(row.locator(".label-pill", has_text=LONG_LABEL)).to_have_attribute("title", LONG_LABEL)

        row.click()
        chip = page.locator(".label-chip", has_text=LONG_LABEL)
        expect(chip).to_be_visible()
        assert page.locator(".controls").evaluate(OVERFLOWING_CHILDREN) == []
        expect(page.locator(".note__author")).to_have_attribute("title", LONG_NAME)
        expect(page.locator(".message__author", has_text=LONG_NAME)).to_have_attribute("title", LONG_NAME)
        assert page.locator(".thread__messages").evaluate(OVERFLOWING_CHILDREN) == []
        expect(chip.locator(".label-chip__name")).to_have_attribute("title", LONG_LABEL)

        page.goto(live_server.url + "/updates")
        page.get_by_role("button", name="New template").first.click()
        conditions = page.get_by_role("group", name="Conditions")
        expect(conditions.get_by_label(LONG_LABEL)).to_be_visible()
        assert conditions.evaluate(OVERFLOWING_CHILDREN) == []

        page.goto(live_server.url + "/admin/agents")
        assert _page_width(page) <= viewport["width"]
        agents_card = page.locator("section", has=page.get_by_role("heading", name="Everyone who can sign in"))
        name_cell = agents_card.locator("tr", has_text="long@example.com").locator("th")
        expect(name_cell.locator("[title]")).to_have_attribute("title", LONG_NAME)
        if viewport is DESKTOP:
            # There is room for the whole table, so it must not need to scroll.
            assert agents_card.evaluate(OVERFLOWING_CHILDREN) == []

        page.goto(live_server.url + "/admin/teams")
        assert _page_width(page) <= viewport["width"]
        for members in page.get_by_role("group", name="Members").all():
            assert members.evaluate(OVERFLOWING_CHILDREN) == []
        assert page.console_errors == []
    finally:
        page.context.close()
