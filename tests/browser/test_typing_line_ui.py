"""The "… is typing…" line in Chromium floats over the end of the thread without covering its
last line, here a line of activity, even for an agent with the longest name."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from inbox.models import Agent

from tests.browser.test_inbox_ui import _conversation, _new_page, _sign_in, _whatsapp_from
from tests.browser.test_inbox_ui import second_agent, workers  # noqa: F401 (fixtures)
from tests.support.whatsapp import config, twilio  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

LONG_NAME = "N" * 200  # the maximum length of an agent's name

# The typing line's box against the box of the thread's last visible item, in viewport pixels.
BOXES = """(scroller) => {
  const typing = scroller.parentElement.querySelector('.typing').getBoundingClientRect();
  const items = [...scroller.querySelectorAll('.thread__messages > *')]
    .filter((element) => element.getBoundingClientRect().height > 0);
  const last = items[items.length - 1];
  const box = last.getBoundingClientRect();
  return { typingTop: typing.top, lastBottom: box.bottom, last: `${last.tagName.toLowerCase()}.${last.className}` };
}"""


def _open_as_both(page, colleague, base_url: str, agent, second_agent, latest_text: str) -> None:
    """Sign in the two agents on their pages and open Grace's conversation on both."""
    _sign_in(page, base_url, agent.email)
    _sign_in(colleague, base_url, second_agent.email)
    for agent_page in (page, colleague):
        _conversation(agent_page, "Grace").click()
        expect(agent_page.locator("#thread")).to_contain_text(latest_text)


def test_typing_line_leaves_last_activity_visible(
    page, browser, live_server, workers, state, config, agent, second_agent, whatsapp_channel, tmp_path
):
    # Enough messages that the thread scrolls, so its end sits at the bottom of the window.
    for number in range(12):
        _whatsapp_from(state, config, live_server, "+15551230000", "Grace", f"Message {number} about my order")
    _whatsapp_from(state, config, live_server, "+15551230000", "Grace", "Where is my order 1234?")
    with state.session_factory() as session:
        session.execute(update(Agent).where(Agent.id == agent.id).values(name=LONG_NAME))
        session.commit()
    colleague = _new_page(browser)
    try:
        _open_as_both(page, colleague, live_server.url, agent, second_agent, "Where is my order 1234?")

        # A status change adds a line of activity at the end of the thread.
        page.locator(".controls").get_by_role("button", name="Pending").click()
        expect(colleague.locator("#thread .thread__messages")).to_contain_text("set the status to Pending")

        typing = colleague.locator("#thread .typing")
        page.get_by_role("textbox", name="Reply by WhatsApp").fill("Let me check")
        expect(typing).to_have_text(f"{LONG_NAME} is typing…")

        scroller = colleague.locator("#thread .thread__scroller")
        scroller.evaluate("(element) => { element.scrollTop = element.scrollHeight; }")
        boxes = scroller.evaluate(BOXES)
        colleague.screenshot(path=str(tmp_path / "typing.png"))
        assert boxes["lastBottom"] <= boxes["typingTop"], f"the typing line covers the thread's last line: {boxes}"
        assert colleague.console_errors == []
    finally:
        colleague.context.close()


# Well below the 5 seconds after which a typing line goes away by itself.
NOTE_ENDS_TYPING_MS = 2000


def test_note_ends_its_authors_typing_line(page, browser, live_server, state, config, agent, second_agent,
                                           whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230000", "Grace", "Where is my order?")
    colleague = _new_page(browser)
    try:
        _open_as_both(page, colleague, live_server.url, agent, second_agent, "Where is my order?")

        # A reply ends its author's typing line at once, and a note must too: the colleague
        # otherwise reads "is typing…" under a note that is already there.
        page.locator("#thread").click()
        page.keyboard.press("n")
        page.get_by_role("textbox", name="Internal note").press_sequentially("Checked the warehouse.")
        typing = colleague.locator("#thread .typing")
        expect(typing).to_have_text("Ada Agent is typing…")
        page.keyboard.press("Control+Enter")
        expect(colleague.locator("#thread .note")).to_contain_text("Checked the warehouse.")
        expect(typing).to_be_hidden(timeout=NOTE_ENDS_TYPING_MS)
        assert page.console_errors == []
        assert colleague.console_errors == []
    finally:
        colleague.context.close()
