"""The site header of the administration pages in Chromium: one tidy row on a desktop, and on a
phone a top row with the product name, the signed-in agent and Log out over one row of links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_admin_tables_fit import _screenshot
from tests.browser.test_narrow_layout import (  # noqa: F401 (workspace is a fixture)
    ADMIN_PAGES,
    DESKTOP,
    HEADER_OFF_ROW,
    PHONE,
    _open,
    _page_width,
    _sign_in,
    workspace,
)
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

NAV_LINKS = ["Inbox", "Reports", "Proactive updates", "Teams", "Agents", "Audit log", "Channels", "Account"]

# The height of the header, and the top and bottom of each rendered child, keyed by its first class.
HEADER_PARTS = """
(header) => ({
  height: header.getBoundingClientRect().height,
  parts: Object.fromEntries([...header.children]
    .filter((element) => element.getBoundingClientRect().width > 0)
    .map((element) => {
      const box = element.getBoundingClientRect();
      return [element.className.split(' ')[0], {top: box.top, bottom: box.bottom}];
    })),
})
"""

# The number of lines the element's text takes.
TEXT_LINES = """
(element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  return new Set([...range.getClientRects()].map((rect) => Math.round(rect.top))).size;
}
"""


def _assert_shown(locator, description: str) -> None:
    """Assert the element is rendered with room for its text, not hidden for screen readers only."""
    expect(locator).to_be_visible()
    width = locator.evaluate("(element) => element.getBoundingClientRect().width")
    assert width > 20, f"{description} is only {width} px wide"


def _screenshot_top(page: Page, folder: Path, name: str) -> None:
    """Save the top of the window, where the header is, beside the full-page screenshot."""
    _screenshot(page, folder, name)
    folders = [folder] + ([Path(os.environ["SWITCHBOARD_SCREENSHOTS"])] if os.environ.get("SWITCHBOARD_SCREENSHOTS") else [])
    width = page.evaluate("window.innerWidth")
    for target in folders:
        page.screenshot(path=str(target / f"top-{name}.png"), clip={"x": 0, "y": 0, "width": width, "height": 300})


def _admin_headers(page, base_url: str):
    """Sign in, then open each page with the site header and yield its path and header."""
    _sign_in(page, base_url)
    for path, heading in ADMIN_PAGES:
        page.goto(base_url + path)
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        yield path, page.locator("header.topbar")


def _assert_on_logout_row(parts: dict, part: str, where: str) -> None:
    assert parts[part]["top"] < parts["logout"]["bottom"], f"{part} is not on Log out's row on {where}"
    assert parts[part]["bottom"] > parts["logout"]["top"], f"{part} is not on Log out's row on {where}"


def test_header_on_phone_is_compact(browser, live_server, workspace, tmp_path):
    page = _open(browser, PHONE)
    try:
        for path, header in _admin_headers(page, live_server.url):
            layout = header.evaluate(HEADER_PARTS)
            parts = layout["parts"]

            # The top row: the product name, the agent and Log out, with its label on one line.
            _assert_shown(header.locator(".brand span"), f"the product name on {path}")
            _assert_shown(header.locator(".agent__name"), f"the agent's name on {path}")
            expect(header.locator(".agent__name")).to_have_text("Rita Root")
            logout = page.get_by_role("button", name="Log out")
            assert logout.evaluate(TEXT_LINES) == 1, f"Log out's label wraps on {path}"
            for part in ["brand", "agent"]:
                _assert_on_logout_row(parts, part, path)

            # The links: one row under the top row, each reachable by scrolling that row.
            assert parts["admin-nav"]["top"] >= parts["logout"]["bottom"], f"the links are not under Log out on {path}"
            nav = header.get_by_role("navigation", name="Site")
            tops = nav.get_by_role("link").evaluate_all(
                "(links) => links.map((link) => Math.round(link.getBoundingClientRect().top))")
            assert len(set(tops)) == 1, f"the links on {path} take {len(set(tops))} rows"
            # The current page's link shows without scrolling the row.
            left, right = nav.locator('[aria-current="page"]').evaluate(
                "(link) => [link.getBoundingClientRect().left, link.getBoundingClientRect().right]")
            assert left >= 0, f"the current link on {path} starts left of the window"
            assert right <= PHONE["width"], f"the current link on {path} ends right of the window"
            assert layout["height"] <= 100, f"the header on {path} is {layout['height']} px high"
            assert header.evaluate("(element) => element.scrollWidth <= element.clientWidth")
            assert _page_width(page) <= PHONE["width"], f"{path} is wider than the window"
            _screenshot_top(page, tmp_path, "header-" + path.strip("/").replace("/", "-") + "-420")

        # Scrolling the row brings the last link fully into the window.
        account = page.get_by_role("navigation", name="Site").get_by_role("link", name="Account")
        account.scroll_into_view_if_needed()
        left, right = account.evaluate("(element) => [element.getBoundingClientRect().left,"
                                       " element.getBoundingClientRect().right]")
        assert left >= 0
        assert right <= PHONE["width"]
        assert _page_width(page) <= PHONE["width"]
        assert page.console_errors == []
    finally:
        page.context.close()


def test_header_on_desktop_keeps_one_row(browser, live_server, workspace, tmp_path):
    page = _open(browser, DESKTOP)
    try:
        for path, header in _admin_headers(page, live_server.url):
            assert header.evaluate(HEADER_OFF_ROW) == [], path
            expect(header.get_by_role("navigation", name="Site").get_by_role("link")).to_have_text(NAV_LINKS)
            _assert_shown(header.locator(".brand span"), f"the product name on {path}")
            _assert_shown(header.locator(".agent__name"), f"the agent's name on {path}")
            # The links sit beside the product name, not at the far right.
            brand_right = header.locator(".brand").evaluate("(element) => element.getBoundingClientRect().right")
            nav_left = header.locator(".admin-nav").evaluate("(element) => element.getBoundingClientRect().left")
            assert 0 < nav_left - brand_right <= 30, path
            height = header.evaluate("(element) => element.getBoundingClientRect().height")
            assert height <= 60, f"the header on {path} is {height} px high"
            _screenshot_top(page, tmp_path, "header-" + path.strip("/").replace("/", "-") + "-1440")
        assert page.console_errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("width", [PHONE["width"], 1201, DESKTOP["width"]])
def test_header_cuts_long_agent_name(browser, live_server, workspace, width):
    page = _open(browser, {"width": width, "height": 900})
    try:
        page.goto(live_server.url + "/login?next=/account")
        page.get_by_label("Email").fill("long@example.com")
        page.get_by_label("Password").fill(AGENT_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Your account", level=1)).to_be_visible()
        # The heading can show before the stylesheets arrive; measure the styled page.
        page.wait_for_load_state("load")
        header = page.locator("header.topbar")
        layout = header.evaluate(HEADER_PARTS)
        parts = layout["parts"]

        # The 200-character name ends in "…" on Log out's row, and the header keeps its rows.
        name = header.locator(".agent__name")
        _assert_shown(name, "the agent's name")
        expect(name).to_have_css("text-overflow", "ellipsis")
        assert name.evaluate("(element) => element.scrollWidth > element.clientWidth"), "the name is not cut"
        expect(header.locator(".agent")).to_have_attribute("title", "long@example.com")
        for part in ["brand", "agent"]:
            _assert_on_logout_row(parts, part, f"the account page at {width} px")
        assert page.get_by_role("button", name="Log out").evaluate(TEXT_LINES) == 1
        if width > 1200:
            assert header.evaluate(HEADER_OFF_ROW) == []
        else:
            assert layout["height"] <= 100, f"the header is {layout['height']} px high"
        assert header.evaluate("(element) => element.scrollWidth <= element.clientWidth")
        assert _page_width(page) <= width
        assert page.console_errors == []
    finally:
        page.context.close()
