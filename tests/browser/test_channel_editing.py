"""Editing a channel in Chromium. An admin changes connection settings and a password, gets a
rejected value marked beside its field, and renames and disables the channel. An agent's reply
on the disabled channel is then rejected in the composer with the reason."""

from __future__ import annotations

import dataclasses
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from gateway.simulate import send_simulated_whatsapp
from inbox.channel_config import add_channel
from inbox.models import AuditEvent, Channel, OutboxItem
from tests.browser.test_narrow_layout import PHONE, _open
from tests.browser.test_people_ui import _check_page, _screenshot, _sign_in, admin  # noqa: F401 - fixture
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser

IMAP_PASSWORD = "imap-secret-1234"

# The character before each line break inside the element's text.
CHARACTERS_BEFORE_BREAKS = """
(element) => {
  const characters = [];
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let index = 0; index < node.data.length; index++) {
      const range = document.createRange();
      range.setStart(node, index);
      range.setEnd(node, index + 1);
      characters.push([node.data[index], Math.round(range.getBoundingClientRect().top)]);
    }
  }
  return characters.slice(1)
    .map(([character, top], index) => top > characters[index][1] ? characters[index][0] : null)
    .filter((character) => character !== null);
}
"""


@pytest.fixture
def help_desk(state) -> int:
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Help desk", "help@shop.example", {
            "imap_host": "imap.shop.example", "imap_port": 993, "imap_username": "help@shop.example",
            "imap_password": IMAP_PASSWORD, "smtp_host": "smtp.shop.example", "smtp_port": 587,
            "smtp_username": "help@shop.example", "smtp_password": "smtp-secret-5678", "smtp_security": "starttls",
        })
        session.commit()
        return channel.id


def _channel(state, channel_id: int) -> Channel:
    with state.session_factory() as session:
        channel = session.get(Channel, channel_id)
        session.expunge(channel)
        return channel


def test_admin_edits_settings_and_password(page, live_server, state, admin, help_desk):  # noqa: F811
    _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    page.goto(live_server.url + "/channels")
    card = page.get_by_role("region", name="Help desk")
    card.get_by_text("Connection settings").click()
    password = card.get_by_label("IMAP password", exact=True)
    expect(password).to_have_value("")
    expect(password).to_have_attribute("placeholder", "Stored; empty keeps it")
    assert IMAP_PASSWORD not in page.content()
    _screenshot(page, "channels-settings-open")
    _check_page(page)

    # A new password typed without ticking Replace is not saved, and neither is the host.
    card.get_by_label("IMAP host").fill("mail.shop.example")
    password.fill("a new password")
    card.get_by_role("button", name="Save settings").click()
    card = page.get_by_role("region", name="Help desk")
    error = card.locator(f"#channel-{help_desk}-imap_password-error")
    expect(error).to_have_text("Tick “Replace” to change the stored IMAP password, or clear the field to keep it.")
    expect(card.get_by_label("IMAP password", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(card.get_by_label("IMAP host")).to_have_value("mail.shop.example")
    expect(card.get_by_label("IMAP password", exact=True)).to_have_value("")
    assert _channel(state, help_desk).settings["imap_host"] == "imap.shop.example"
    _screenshot(page, "channels-settings-error")
    # The page comes back with the error's status, which Chromium logs; nothing else may be logged.
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"]
    page.console_errors.clear()
    _check_page(page)

    # With Replace ticked both are saved.
    card.get_by_label("IMAP password", exact=True).fill("a new password")
    card.get_by_label("Replace the stored IMAP password").check()
    card.get_by_label("SMTP security").select_option("ssl")
    card.get_by_label("SMTP port").fill("465")
    card.get_by_role("button", name="Save settings").click()
    card = page.get_by_role("region", name="Help desk")
    expect(card.get_by_role("status")).to_have_text(
        "Saved the settings of Help desk: IMAP host, IMAP password, SMTP port and SMTP security."
    )
    settings = _channel(state, help_desk).settings
    assert settings["imap_host"] == "mail.shop.example"
    assert settings["imap_password"] == "a new password"
    assert settings["smtp_security"] == "ssl"
    assert settings["smtp_port"] == 465
    assert "a new password" not in page.content()
    _screenshot(page, "channels-settings-saved")
    _check_page(page)
    with state.session_factory() as session:
        details = session.scalars(select(AuditEvent.details).where(AuditEvent.action == "channel.changed")).one()
    assert details["imap_password"] == {"changed": True}


def test_admin_renames_and_disables_channel(page, browser, live_server, state, config, admin, whatsapp_channel):  # noqa: F811
    send_simulated_whatsapp(state.session_factory, config, live_server.url, "+15551230000", "Where is my parcel?",
                            profile_name="Grace")
    live_server.wait_until_ingested()
    _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    page.goto(live_server.url + "/channels")

    card = page.get_by_role("region", name="WhatsApp support")
    card.get_by_label("Name").fill("WhatsApp orders")
    card.get_by_role("button", name="Rename").click()
    card = page.get_by_role("region", name="WhatsApp orders")
    expect(card.get_by_role("status")).to_have_text("Saved: the channel WhatsApp support is now called WhatsApp orders.")

    card.get_by_role("button", name="Disable").click()
    card = page.get_by_role("region", name="WhatsApp orders")
    expect(card.get_by_role("status")).to_contain_text("WhatsApp orders is disabled")
    expect(card.locator(".channel-card__state")).to_have_text("Disabled")
    expect(card.get_by_role("button", name="Enable")).to_be_visible()
    assert not _channel(state, whatsapp_channel.id).is_active
    _screenshot(page, "channels-disabled")
    _check_page(page)

    # The agent's reply on the disabled channel is rejected, with the reason, and kept in the box.
    page.goto(live_server.url + "/")
    page.get_by_role("option", name=re.compile("Grace")).click()
    page.get_by_role("textbox", name=re.compile("Reply")).fill("Your parcel ships today.")
    page.get_by_role("button", name="Send").click()
    error = page.locator("#reply-error")
    expect(error).to_have_text(
        "Not sent: The channel WhatsApp orders is disabled, so nothing can be sent through it. "
        "Ask an admin to enable it on the Channels page, or reach the customer another way."
    )
    expect(page.get_by_role("textbox", name=re.compile("Reply"))).to_have_value("Your parcel ships today.")
    _screenshot(page, "inbox-reply-on-disabled-channel")
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboxItem)) == 0
    # The browser logs the rejected request itself; nothing else may fail.
    assert [text for text in page.console_errors if "409" not in text] == []

    # Enabled again, the same reply goes out.
    page.goto(live_server.url + "/channels")
    page.get_by_role("region", name="WhatsApp orders").get_by_role("button", name="Enable").click()
    expect(page.get_by_role("region", name="WhatsApp orders").get_by_role("status")).to_contain_text("is enabled")
    assert _channel(state, whatsapp_channel.id).is_active


def test_webhook_url_wraps_and_copies(browser, live_server, state, admin, whatsapp_channel, tmp_path):  # noqa: F811
    # A fixed address, so the URL's length and its line breaks do not depend on the server's port.
    state.config = dataclasses.replace(state.config, public_url="https://support.shop-example.com/switchboard")
    page = _open(browser, PHONE)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
        expect(page.locator("#live-indicator")).to_contain_text("Live")
        page.goto(live_server.url + "/channels")
        card = page.get_by_role("region", name="WhatsApp support")
        url = card.locator("code", has_text="/webhooks/")
        expected = f"https://support.shop-example.com/switchboard/webhooks/twilio/{whatsapp_channel.id}/messages"
        expect(url).to_have_text(expected)

        # The URL is longer than a line on a phone, and breaks only after a slash.
        breaks = url.evaluate(CHARACTERS_BEFORE_BREAKS)
        assert breaks, "the URL fits one line, so the test shows nothing about where it breaks"
        assert set(breaks) == {"/"}, f"the URL breaks after {breaks}"
        page.screenshot(path=str(tmp_path / "channels-phone.png"), full_page=True)
        _screenshot(page, "channels-webhook-url-phone")

        # One click selects the whole URL, and copying it gives the URL unchanged.
        url.click()
        assert page.evaluate("window.getSelection().toString()") == expected
        page.keyboard.press("Control+C")
        assert page.evaluate("navigator.clipboard.readText()") == expected
        assert page.console_errors == []
    finally:
        page.context.close()
