"""Search and long threads in Chromium.

"/" focuses the search box, the results show the matched words, and Escape clears the search.
A 500-message conversation opens on its newest page and loads the older ones as the agent
scrolls up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from inbox.contacts import rename_contact
from inbox.models import Conversation
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST, _conversation, _new_page, _sign_in
from tests.support.conversations import receive

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).parent.parent.parent / "instance" / "screenshots"


def _named(state, channel_id: int, number: str, name: str, text: str) -> int:
    conversation_id = receive(state, channel_id, number, text).conversation_id
    with state.session_factory() as session:
        rename_contact(session, session.get(Conversation, conversation_id).contact_id, name)
        session.commit()
    return conversation_id


# Scroll the thread to the top, and when the page before has been added, which moved the view
# down to keep its place, scroll to the top again before the browser draws the next frame.
SCROLL_TO_TOP_TWICE_IN_ONE_FRAME = """
async (scroller) => {
  const count = () => scroller.querySelectorAll('.message').length;
  const before = count();
  await new Promise((resolve) => {
    // A MutationObserver runs its callback right after the change, before the next frame.
    const observer = new MutationObserver(() => {
      if (count() === before) return;
      observer.disconnect();
      scroller.scrollTop = 0;
      resolve();
    });
    observer.observe(scroller, { childList: true, subtree: true });
    scroller.scrollTop = 0;
  });
}
"""


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def test_slash_search_finds_body_word(page, live_server, state, agent, whatsapp_channel):
    _named(state, whatsapp_channel.id, "+15551230001", "Grace Hopper", "The espresso machine leaks water")
    _named(state, whatsapp_channel.id, "+15551230002", "Heidi Lamarr", "Where is my parcel?")
    _named(state, whatsapp_channel.id, "+15551230003", "Ida Rhodes", "Invoice <b>copy</b> please")
    _sign_in(page, live_server.url, agent.email)
    options = page.get_by_role("listbox", name="Conversations").get_by_role("option")
    expect(options).to_have_count(3)

    page.locator("body").press("/")
    search = page.get_by_role("searchbox", name="Search messages and contacts")
    expect(search).to_be_focused()
    search.type("espres")

    expect(options).to_have_count(1)
    expect(_conversation(page, "Grace Hopper")).to_be_visible()
    expect(options.first.locator("mark")).to_have_text("espresso")
    expect(options.first).to_have_accessible_name(re.compile("found: The espresso machine leaks water"))
    _screenshot(page, "search-results.png")

    # A conversation that starts to match later shows when Enter runs the search again.
    _named(state, whatsapp_channel.id, "+15551230004", "Jean Bartik", "Espresso cups arrived broken")
    search.press("Enter")
    expect(options).to_have_count(2)
    expect(_conversation(page, "Jean Bartik")).to_be_visible()

    # Customer text stays text: the markup of a result is not parsed.
    search.fill("invoice")
    expect(options).to_have_count(1)
    expect(options.first.locator(".conversation__hit")).to_contain_text("<b>copy</b>")
    expect(options.first.locator(".conversation__hit b")).to_have_count(0)

    search.fill("zzzz")
    expect(page.locator("#conversation-list")).to_contain_text("No conversations match “zzzz”.")

    search.press("Escape")
    expect(search).to_have_value("")
    expect(options).to_have_count(4)
    assert page.console_errors == []


def test_search_by_contact_name_and_phone(page, live_server, state, agent, whatsapp_channel):
    _named(state, whatsapp_channel.id, "+15551230001", "Grace Hopper", "Hello")
    _named(state, whatsapp_channel.id, "+15551230002", "Heidi Lamarr", "Hello")
    _sign_in(page, live_server.url, agent.email)
    options = page.get_by_role("listbox", name="Conversations").get_by_role("option")
    search = page.get_by_role("searchbox", name="Search messages and contacts")

    search.fill("lamarr")
    expect(options).to_have_count(1)
    expect(_conversation(page, "Heidi Lamarr")).to_be_visible()
    expect(options.first.locator("mark")).to_have_text("Lamarr")

    search.fill("+1 555 123 0001")
    expect(options).to_have_count(1)
    expect(_conversation(page, "Grace Hopper")).to_be_visible()
    assert page.console_errors == []


def test_long_thread_loads_older_pages(page, live_server, state, agent, whatsapp_channel):
    for index in range(500):
        receive(state, whatsapp_channel.id, "+15551230001", f"Message number {index}")
    _sign_in(page, live_server.url, agent.email)

    _conversation(page, "Message number 499").click()
    thread = page.locator("#thread")
    messages = thread.locator(".message")
    expect(thread).to_contain_text("Message number 499")
    expect(messages).to_have_count(50)
    expect(thread).not_to_contain_text("Message number 449")
    expect(thread.get_by_role("button", name="Load earlier messages")).to_be_attached()
    _screenshot(page, "thread-newest-page.png")

    # Scrolling up to the top loads the page before, and keeps the message in view in place.
    first_shown = thread.get_by_text("Message number 450", exact=True)
    thread.locator(".thread__scroller").evaluate("(scroller) => { scroller.scrollTop = 0; }")
    expect(messages).to_have_count(100)
    expect(first_shown).to_be_in_viewport()

    # Pages keep loading until the first message, and then the button goes away.
    for expected in range(150, 501, 50):
        thread.locator(".thread__scroller").evaluate("(scroller) => { scroller.scrollTop = 0; }")
        expect(messages).to_have_count(expected)
    expect(thread).to_contain_text("Message number 0")
    expect(thread.get_by_role("button", name="Load earlier messages")).to_have_count(0)
    assert page.console_errors == []


def test_quick_return_to_top_loads_older_page(page, live_server, state, agent, whatsapp_channel):
    for index in range(150):
        receive(state, whatsapp_channel.id, "+15551230001", f"Message number {index}")
    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Message number 149").click()
    messages = page.locator("#thread .message")
    expect(messages).to_have_count(50)

    page.locator("#thread .thread__scroller").evaluate(SCROLL_TO_TOP_TWICE_IN_ONE_FRAME)

    expect(messages).to_have_count(150)
    expect(page.locator("#thread")).to_contain_text("Message number 0")
    assert page.console_errors == []


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_search_results_meet_contrast(browser, live_server, state, agent, whatsapp_channel, color_scheme):
    _named(state, whatsapp_channel.id, "+15551230001", "Grace Hopper", "The espresso machine leaks water")
    _named(state, whatsapp_channel.id, "+15551230002", "Heidi Lamarr", "Espresso beans")
    page = _new_page(browser, color_scheme)
    try:
        _sign_in(page, live_server.url, agent.email)
        search = page.get_by_role("searchbox", name="Search messages and contacts")
        expect(page.locator(".search__hint")).to_be_visible()
        assert page.evaluate(FIND_LOW_CONTRAST) == []

        search.fill("espresso")
        options = page.get_by_role("listbox", name="Conversations").get_by_role("option")
        expect(options.locator("mark")).to_have_count(2)
        _conversation(page, "Heidi Lamarr").click()
        expect(page.locator("#thread")).to_contain_text("Espresso beans")
        _screenshot(page, f"search-{color_scheme}.png")
        assert page.evaluate(FIND_LOW_CONTRAST) == []

        search.fill("no such words")
        expect(page.locator("#conversation-list")).to_contain_text("No conversations match")
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        page.context.close()
