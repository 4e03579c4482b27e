"""The Reports page in Chromium: a manager reads the backlog, trend and satisfaction figures,
changes the range from the keyboard, downloads the CSV and opens a waiting conversation, on a
desktop and a phone."""

from __future__ import annotations

import csv
import dataclasses
import re

import pytest
from playwright.sync_api import Page, expect

from inbox.agents import create_agent
from inbox.models import Agent, Channel
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST
from tests.browser.test_narrow_layout import DESKTOP, OVERFLOWING_CHILDREN, PHONE, _open
from tests.conftest import AGENT_PASSWORD
from tests.inbox.test_reports import NOW, Rows, add_backlog, add_history, at
from tests.inbox.test_satisfaction_report import add_answer

pytestmark = pytest.mark.browser

# Words of the element's column headings that are split over two lines, as "word in heading".
SPLIT_HEADING_WORDS = """
(root) => [...root.querySelectorAll('thead th')].flatMap((cell) => {
  const split = [];
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.data.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const lines = new Set([...range.getClientRects()].filter((rect) => rect.width > 0).map((rect) => Math.round(rect.top)));
      if (lines.size > 1) split.push(`${match[0]} in ${cell.innerText.replace(/\\s+/g, ' ')}`);
    }
  }
  return split;
})
"""


@pytest.fixture
def config(config):
    return dataclasses.replace(config, time_zone="Europe/Berlin")


@pytest.fixture
def rows(state, whatsapp_channel, monkeypatch):
    """A manager, the clock of the page fixed at ``NOW``, and a writer of report rows."""
    monkeypatch.setattr("gateway.reports.utcnow", lambda: NOW)
    with state.session_factory() as session:
        manager = create_agent(session, "mia@example.com", "Mia Manager", AGENT_PASSWORD, "manager")
        writer = Rows(session, session.get(Channel, whatsapp_channel.id), session.get(Agent, manager.id))
        # Ends the read transaction, which on SQLite holds the write lock the page's sign-in needs.
        session.commit()
        yield writer


def _sign_in(page: Page, base_url: str) -> None:
    page.goto(base_url + "/login?next=/reports")
    page.get_by_label("Email").fill("mia@example.com")
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Backlog, trend and satisfaction", level=1)).to_be_visible()
    expect(page).to_have_title("Backlog, trend and satisfaction · Switchboard")


def _table(page: Page, selector: str) -> list[list[str]]:
    return page.locator(f"{selector} tbody tr").evaluate_all(
        "(rows) => rows.map((row) => [...row.children].map((cell) => cell.innerText.trim()))"
    )


def test_manager_reads_backlog(page, live_server, rows, tmp_path):
    made = add_backlog(rows)
    _sign_in(page, live_server.url)

    expect(page.locator("#report-zone")).to_have_text("Europe/Berlin")
    expect(page.locator("#stat-total")).to_have_text("5")
    expect(page.locator("#stat-unassigned")).to_have_text("4")
    expect(page.locator("#stat-over-day")).to_have_text("2")
    expect(page.locator("#stat-longest")).to_have_text("10 d")
    assert [row[:2] for row in _table(page, "#by-age")] == [
        ["Under 1 hour", "1"], ["1 to 4 hours", "1"], ["4 to 24 hours", "1"], ["1 to 3 days", "1"], ["Over 3 days", "1"],
    ]
    assert [row[:2] for row in _table(page, "#by-status")] == [["Open", "3"], ["Pending", "1"], ["Snoozed", "1"]]
    assert [row[:2] for row in _table(page, "#by-team")] == [["Billing", "2"], ["No team", "3"]]
    # Both names contain their channel's kind, so the page does not repeat it.
    assert [row[:2] for row in _table(page, "#by-channel")] == [["WhatsApp support", "4"], ["Mail", "1"]]
    expect(page.get_by_role("table", name="By priority")).to_be_visible()

    oldest = page.locator("#oldest tbody tr")
    expect(oldest).to_have_count(5)
    expect(oldest.first).to_contain_text("Forgotten")
    expect(oldest.first).to_contain_text("10 d")
    page.screenshot(path=str(tmp_path / "reports-backlog.png"), full_page=True)
    assert page.evaluate(FIND_LOW_CONTRAST) == []
    assert page.console_errors == []

    # The link opens the conversation in the inbox.
    oldest.first.get_by_role("link").click()
    page.wait_for_url(f"**/#conversation={made['forgotten'].id}")


def test_manager_changes_trend_range_by_keyboard(page, live_server, rows, tmp_path):
    add_history(rows)
    _sign_in(page, live_server.url)

    trend = page.locator("#trend tbody tr")
    expect(trend).to_have_count(14)
    expect(page.locator("#trend caption")).to_contain_text("Europe/Berlin")
    # Newest day first: the 10th, 9th and 8th December of the unit tests' history.
    assert [row[1:4] for row in _table(page, "#trend")[:3]] == [["1", "1", "3"], ["2", "1", "3"], ["1", "0", "2"]]
    expect(page.locator("#trend-summary")).to_contain_text("27 Nov 2026 to 10 Dec 2026")

    page.get_by_label("Last").focus()
    page.get_by_label("Last").select_option("7")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Show", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(trend).to_have_count(7)
    assert page.url.endswith("/reports?days=7")

    page.get_by_text("Custom range").click()
    page.get_by_label("From", exact=True).fill("2026-12-08")
    page.get_by_label("To", exact=True).fill("2026-12-09")
    page.get_by_label("To", exact=True).press("Enter")
    expect(trend).to_have_count(2)
    assert [row[:4] for row in _table(page, "#trend")] == [["Wed 9 Dec", "2", "1", "3"], ["Tue 8 Dec", "1", "0", "2"]]

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "switchboard-trend-2026-12-08-2026-12-09.csv"
    with open(download.value.path(), newline="") as file:
        table = list(csv.reader(file))
    assert table[1][:4] == ["2026-12-08", "1", "0", "2"]
    assert len(table) == 3
    page.screenshot(path=str(tmp_path / "reports-trend.png"), full_page=True)
    assert page.console_errors == []


def test_bad_range_shows_error(page, live_server, rows):
    _sign_in(page, live_server.url)
    page.goto(live_server.url + "/reports?from=2026-12-09&to=2026-12-01")
    error = page.get_by_role("alert")
    expect(error).to_have_text("From (2026-12-09) is after To (2026-12-01). Choose a From day on or before the To day.")
    from_field = page.get_by_label("From", exact=True)
    expect(from_field).to_have_attribute("aria-invalid", "true")
    expect(from_field).to_have_accessible_description(re.compile(r"^From \(2026-12-09\) is after To .* Both days are included"))
    # The error heads the Trend section, above the range forms it is about.
    expect(page.locator("section", has=page.get_by_role("heading", name="Trend")).get_by_role("alert")).to_have_count(1)
    expect(page.locator("#trend")).to_have_count(0)
    expect(page.locator("#stat-total")).to_have_text("0")
    assert page.console_errors == []


def test_report_fits_phone(browser, live_server, rows, tmp_path):
    add_backlog(rows)
    add_history(rows)
    page = _open(browser, PHONE)
    try:
        _sign_in(page, live_server.url)
        # The layout is measured once the page and everything it loads are in, which on a
        # busy machine can be well after the heading shows.
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        for selector in [".report-stats", ".report-grid", ".report-chart", "#trend-summary"]:
            assert page.locator(selector).evaluate(OVERFLOWING_CHILDREN) == [], selector
        download = page.get_by_role("link", name="Download CSV")
        box = download.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"]
        page.screenshot(path=str(tmp_path / "reports-phone.png"), full_page=True)
        page.locator("#oldest").screenshot(path=str(tmp_path / "reports-phone-oldest.png"))
        page.locator("section", has=page.get_by_role("heading", name="Trend")).screenshot(
            path=str(tmp_path / "reports-phone-trend.png"))
        assert page.console_errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_report_headings_break_between_words(browser, live_server, rows, viewport, tmp_path):
    add_backlog(rows)
    page = _open(browser, viewport)
    try:
        _sign_in(page, live_server.url)
        page.wait_for_load_state("load")
        for table in ["#by-age", "#by-status", "#by-priority", "#by-channel", "#by-team", "#oldest", "#trend"]:
            expect(page.locator(table)).to_be_visible()
        assert page.locator("main").evaluate(SPLIT_HEADING_WORDS) == []
        page.locator(".report-grid").screenshot(path=str(tmp_path / "reports-breakdowns.png"))
        assert page.console_errors == []
    finally:
        page.context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_satisfaction_section_reads_and_fits(browser, live_server, rows, viewport, tmp_path):
    for score in [5, 5, 4, 1]:
        add_answer(rows, at("2026-12-09 10:00"), "rating", score, rows.agent)
    add_answer(rows, at("2026-12-09 11:00"), "yes_no", 0, None)
    rows.session.commit()
    page = _open(browser, viewport)
    try:
        _sign_in(page, live_server.url)
        page.wait_for_load_state("load")
        section = page.locator("section", has=page.get_by_role("heading", name="Customer satisfaction"))

        expect(section.locator("#stat-ratings")).to_have_text("4")
        expect(section.locator("#stat-average-rating")).to_have_text("3.8 of 5")
        expect(section.locator("#stat-yes-share")).to_have_text("0%")
        assert _table(page, "#by-rating") == [
            ["5 (best)", "2", ""], ["4", "1", ""], ["3", "0", ""], ["2", "0", ""], ["1 (worst)", "1", ""],
        ]
        assert _table(page, "#satisfaction-by-agent") == [
            ["Mia Manager", "4", "3.8", "0", "–"], ["No agent", "0", "–", "1", "0%"],
        ]
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert section.evaluate(SPLIT_HEADING_WORDS) == []
        section.screenshot(path=str(tmp_path / f"reports-satisfaction-{viewport['width']}.png"))
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        page.context.close()
