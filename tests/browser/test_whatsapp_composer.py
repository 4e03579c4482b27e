"""The WhatsApp reply box in Chromium: the 24-hour window and the template picker."""

from __future__ import annotations

import json
import re
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


def test_closed_window_composer_sends_chosen_template(
    page, live_server, workers, state, config, agent, whatsapp_channel, twilio
):
    sid = twilio.add_template("Hi {{1}}, your order {{2}} has shipped.", name="order_shipped",
                              variables={"1": "Customer", "2": "A-1"})
    twilio.add_template("Awaiting review", name="not_yet_approved", status="pending")
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Where is my order?", profile_name="Grace")
    live_server.wait_until_ingested()
    with state.session_factory() as session:
        session.execute(update(Conversation).values(last_inbound_at=utcnow() - timedelta(hours=25)))
        session.commit()

    open_conversation(page, live_server.url, agent.email, "Grace", "Where is my order?")

    # Outside the window, free text would be held: the box says so before anything is sent.
    expect(page.locator("#reply-window")).to_contain_text("24-hour window has closed")
    expect(page.locator("#reply-window")).to_contain_text("held until the customer writes")
    expect(page.locator(".composer__send")).to_have_text("Hold reply")

    page.get_by_role("button", name="Template").click()
    picker = page.get_by_role("form", name="WhatsApp template")
    expect(picker).to_be_visible()
    template_select = picker.get_by_label("Template")
    expect(template_select.locator("option")).to_have_count(1)
    expect(template_select).to_have_value(sid)
    preview = picker.locator("#template-preview")
    expect(preview).to_have_text("Hi {{1}}, your order {{2}} has shipped.")

    picker.get_by_role("button", name="Send template").click()
    expect(picker.get_by_role("alert")).to_have_text("Fill in variable {{1}}.")
    picker.get_by_label("Variable {{1}}").fill("Grace")
    picker.get_by_label("Variable {{2}}").fill("A-17")
    expect(preview).to_have_text("Hi Grace, your order A-17 has shipped.")
    picker.get_by_role("button", name="Send template").click()

    expect(picker).to_be_hidden()
    sent = page.locator("#thread .message-row--outbound").last
    expect(sent).to_contain_text("Hi Grace, your order A-17 has shipped.")
    expect(sent.locator(".message__status")).to_have_text(re.compile("Queued|Sent"))
    (request,) = twilio.wait_for(1)
    assert request["ContentSid"] == sid
    assert json.loads(request["ContentVariables"]) == {"1": "Grace", "2": "A-17"}
    assert "Body" not in request

    # A free-text reply now is held, shown as such, and can be cancelled.
    page.get_by_role("textbox", name="Reply by WhatsApp").fill("Also, thanks for waiting.")
    page.locator(".composer__send").click()
    held = page.locator("#thread .message-row--held")
    expect(held).to_contain_text("Held until the customer writes")
    held.get_by_role("button", name="Cancel").click()
    expect(page.locator("#thread .message-row--outbound").last).to_contain_text("Cancelled, not sent")
    expect(held).to_have_count(0)

    # When the customer writes, the window opens again and the countdown starts.
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Thanks!", profile_name="Grace")
    expect(page.locator("#reply-window")).to_have_text(re.compile(r"^Free-text replies possible for 2[34] h \d\d min$"))
    expect(page.locator(".composer__send")).to_have_text("Send")
    assert len(twilio.requests) == 1
    assert page.console_errors == []


def test_template_picker_names_rejected_variable(page, live_server, workers, state, config, agent,
                                                whatsapp_channel, twilio):
    twilio.add_template("Hi {{1}}, your order {{2}} has shipped.", name="order_shipped")
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000",
                            "Where is my order?", profile_name="Grace")
    live_server.wait_until_ingested()
    open_conversation(page, live_server.url, agent.email, "Grace", "Where is my order?")

    page.get_by_role("button", name="Template").click()
    picker = page.get_by_role("form", name="WhatsApp template")
    picker.get_by_label("Variable {{1}}").fill("Grace")
    second = picker.get_by_label("Variable {{2}}")
    second.fill("A-17     B-18")
    picker.get_by_role("button", name="Send template").click()

    expect(picker.get_by_role("alert")).to_contain_text(
        "Not sent: Variable {{2}} contains 5 consecutive spaces, more than the 4 allowed.")
    expect(second).to_be_focused()
    expect(second).to_have_attribute("aria-invalid", "true")
    expect(picker).to_be_visible()
    second.fill("A-17 B-18")
    expect(second).not_to_have_attribute("aria-invalid", "true")
    picker.get_by_role("button", name="Send template").click()
    expect(picker).to_be_hidden()
    (request,) = twilio.wait_for(1)
    assert json.loads(request["ContentVariables"]) == {"1": "Grace", "2": "A-17 B-18"}
    # Chromium logs the rejected request itself; nothing else may fail.
    assert [line for line in page.console_errors if "status of 400" not in line] == []
