"""The thread on a small phone in Chromium with the WhatsApp template picker open, when the
reply box is at its tallest. Part of the conversation stays in view, and the page itself does
not scroll past the window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from gateway.simulate import send_simulated_whatsapp
from inbox.models import Conversation, utcnow
from tests.browser.test_inbox_ui import workers  # noqa: F401 (a fixture)
from tests.support.inbox_page import open_conversation
from tests.support.whatsapp import config, twilio  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

SMALL_PHONE = {"width": 375, "height": 667}
# About two lines of messages, so the agent still sees what the template replies to.
MIN_THREAD_HEIGHT = 80

BOX_OF = "(element) => { const r = element.getBoundingClientRect(); return [r.top, r.bottom]; }"


def test_template_picker_leaves_thread_visible_on_phone(
    browser, live_server, workers, state, config, agent, whatsapp_channel, twilio
):
    twilio.add_template("Hi {{1}}, your order {{2}} has shipped.", name="order_shipped",
                        variables={"1": "Customer", "2": "A-1"})
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Where is my order?", profile_name="Grace")
    live_server.wait_until_ingested()
    with state.session_factory() as session:
        session.execute(update(Conversation).values(last_inbound_at=utcnow() - timedelta(hours=25)))
        session.commit()
    context = browser.new_context(viewport=SMALL_PHONE)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        open_conversation(page, live_server.url, agent.email, "Grace", "Where is my order?")

        page.get_by_role("button", name="Template").click()
        picker = page.get_by_role("form", name="WhatsApp template")
        expect(picker.get_by_label("Template")).to_be_focused()

        # The header, the reply box and the picker together are taller than the window. The
        # messages kept no height at all, and the picker's foot hung below the window.
        top, bottom = page.locator("#thread .thread__scroller").evaluate(BOX_OF)
        assert bottom - top >= MIN_THREAD_HEIGHT, f"the messages get {bottom - top:.0f} px"
        page_height = page.evaluate("document.documentElement.scrollHeight")
        assert page_height <= SMALL_PHONE["height"], f"the page is {page_height} px high"

        # Scrolling the thread pane brings the picker's buttons into the window.
        send = picker.get_by_role("button", name="Send template")
        send.scroll_into_view_if_needed()
        top, bottom = send.evaluate(BOX_OF)
        assert top >= 0
        assert bottom <= SMALL_PHONE["height"], f"Send template ends at {bottom:.0f}"
        assert errors == []
    finally:
        context.close()
