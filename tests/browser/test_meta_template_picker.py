"""The reply box of a Meta Cloud API channel in Chromium: choosing an approved template outside the window."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from inbox.channel_config import add_channel
from inbox.models import Conversation, utcnow
from tests.browser.test_inbox_ui import workers  # noqa: F401 (a fixture)
from tests.conftest import AGENT_PASSWORD
from tests.support.meta_live import meta_server  # noqa: F401 (a fixture)
from tests.support.meta_server import change, contact, entry, text_message, webhook_body

pytestmark = pytest.mark.browser

CUSTOMER = "15551230000"


@pytest.fixture
def config(config, meta_server):
    return replace(config, meta_api_base_url=meta_server.base_url)


def test_closed_window_composer_sends_meta_template(page, live_server, workers, state, agent, meta_server):
    with state.session_factory() as session:
        channel = add_channel(session, "whatsapp", "WhatsApp Cloud", "+15550783881",
                              meta_server.channel_settings(waba_id=meta_server.account_id))
        session.commit()
    meta_server.add_template("order_shipped", "en_US", body="Hi {{1}}, your order {{2}} has shipped.",
                             examples=["Customer", "A-1"])
    meta_server.add_template("order_shipped", "de", body="Hallo {{1}}", status="PENDING")
    document = webhook_body(entry(change(
        meta_server.phone_number_id, messages=[text_message(CUSTOMER, "Where is my order?")],
        contacts=[contact(CUSTOMER, "Grace")],
    )))
    assert meta_server.deliver(f"{live_server.url}/webhooks/meta/{channel.id}", document).status_code == 200
    with state.session_factory() as session:
        session.execute(update(Conversation).values(last_inbound_at=utcnow() - timedelta(hours=25)))
        session.commit()

    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("option", name=re.compile("Grace")).click()
    expect(page.locator("#thread")).to_contain_text("Where is my order?")
    expect(page.locator("#reply-window")).to_contain_text("24-hour window has closed")

    page.get_by_role("button", name="Template").click()
    picker = page.get_by_role("form", name="WhatsApp template")
    expect(picker).to_be_visible()
    template_select = picker.get_by_label("Template")
    expect(template_select.locator("option")).to_have_count(1)
    expect(template_select.locator("option")).to_have_text("order_shipped · en_US")
    expect(template_select).to_have_value("order_shipped:en_US")
    expect(picker.get_by_label("Variable {{1}}")).to_have_attribute("placeholder", "Customer")
    preview = picker.locator("#template-preview")
    expect(preview).to_have_text("Hi {{1}}, your order {{2}} has shipped.")

    # Tab moves from one variable's field to the next.
    picker.get_by_label("Variable {{1}}").fill("Grace")
    page.keyboard.press("Tab")
    page.keyboard.type("A-17")
    expect(preview).to_have_text("Hi Grace, your order A-17 has shipped.")
    picker.get_by_role("button", name="Send template").click()

    expect(picker).to_be_hidden()
    sent_row = page.locator("#thread .message-row--outbound").last
    expect(sent_row).to_contain_text("Hi Grace, your order A-17 has shipped.")
    (sent,) = meta_server.wait_for_messages(1)
    assert sent["type"] == "template"
    assert sent["template"]["name"] == "order_shipped"
    assert sent["template"]["language"] == {"code": "en_US"}
    assert [p["text"] for p in sent["template"]["components"][0]["parameters"]] == ["Grace", "A-17"]
    expect(sent_row.locator(".message__status")).to_have_text(re.compile("Queued|Sent"))
    assert page.console_errors == []
