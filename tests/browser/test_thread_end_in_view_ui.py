"""The end of the thread in Chromium stays in view when the reply box below it grows. The case
tested is the WhatsApp template picker opening under a thread scrolled to its newest message."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from gateway.simulate import send_simulated_whatsapp
from tests.browser.test_inbox_ui import workers  # noqa: F401 (a fixture)
from tests.support.inbox_page import open_conversation
from tests.support.whatsapp import config, twilio  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

# How far the newest message's bottom edge reaches below the visible part of the thread.
NEWEST_BELOW_VIEW = """(scroller) => {
  const messages = scroller.querySelectorAll('.message-row');
  const newest = messages[messages.length - 1].getBoundingClientRect();
  return newest.bottom - scroller.getBoundingClientRect().bottom;
}"""


def test_template_picker_keeps_newest_message_in_view(page, live_server, workers, state, config, agent,
                                                      whatsapp_channel, twilio):
    twilio.add_template("Hi {{1}}, your order {{2}} has shipped.", name="order_shipped",
                        variables={"1": "Customer", "2": "A-1"})
    # Enough messages that the thread scrolls.
    for number in range(12):
        send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                                f"Message {number} about my order", profile_name="Grace")
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Where is my order 1234?", profile_name="Grace")
    live_server.wait_until_ingested()

    open_conversation(page, live_server.url, agent.email, "Grace", "Where is my order 1234?")
    expect(page.locator("#thread .message-row").last).to_contain_text("Where is my order 1234?")
    scroller = page.locator("#thread .thread__scroller")
    assert scroller.evaluate(NEWEST_BELOW_VIEW) <= 1

    page.get_by_role("button", name="Template").click()
    expect(page.get_by_role("form", name="WhatsApp template").get_by_label("Template")).to_be_focused()
    # The picker takes its height from the thread. The newest message was pushed below the
    # visible part, so the agent lost sight of the message the template replies to.
    page.wait_for_function(
        "(scroller) => { const m = scroller.querySelectorAll('.message-row');"
        " return m[m.length - 1].getBoundingClientRect().bottom <= scroller.getBoundingClientRect().bottom + 1; }",
        arg=scroller.element_handle(), timeout=2000)
    assert page.console_errors == []
