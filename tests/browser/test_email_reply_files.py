"""Files in an email reply, in Chromium: attached from the reply box, shown in the thread, sent by SMTP."""

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect

from gateway.workers import OutboxDispatcher
from inbox.channel_config import add_channel
from tests.browser.test_inbox_ui import EMAIL_SETTINGS, _conversation, _email_bytes, _ingest_email, _sign_in
from tests.support.smtp_server import SmtpTestServer

pytestmark = pytest.mark.browser

LABEL = b"%PDF-1.4\nshipping label 7\n%%EOF\n"
LABEL_NAME = "Étiquette №7.pdf"


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def email_channel(state, smtp):
    """An email channel that sends through the test SMTP server. Its mailbox is never read."""
    settings = {**EMAIL_SETTINGS, "smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_security": "none"}
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Support email", "support@example.com", settings)
        session.commit()
        return channel


def test_file_attached_to_email_reply(page, live_server, state, agent, email_channel, smtp):
    _ingest_email(state, email_channel.id, _email_bytes("label-1@example.org", "Shipping label", "Please send the label."))
    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Marie").click()
    expect(page.locator("#thread")).to_contain_text("Please send the label.")

    # The attach button shows on email, and it is the control that Shift+Tab reaches from the box.
    reply_box = page.get_by_role("textbox", name=re.compile("Reply"))
    attach = page.get_by_role("button", name="Attach files")
    expect(attach).to_be_visible()
    reply_box.focus()
    page.keyboard.press("Shift+Tab")
    expect(attach).to_be_focused()

    with page.expect_file_chooser() as chooser:
        attach.click()
    chooser.value.set_files(files=[{"name": LABEL_NAME, "mimeType": "application/pdf", "buffer": LABEL}])
    expect(page.get_by_role("list", name="Files to send")).to_contain_text(LABEL_NAME)
    reply_box.fill("Here is your label.")
    page.get_by_role("button", name="Send").click()

    outbound = page.locator("#thread .message-row--outbound")
    expect(outbound).to_contain_text("Here is your label.")
    expect(outbound.get_by_role("list", name="Attachments")).to_contain_text(LABEL_NAME)
    expect(outbound.locator("a.attachment")).to_have_attribute("download", LABEL_NAME)
    expect(page.get_by_role("list", name="Files to send")).to_be_hidden()
    expect(page.locator(".composer__error")).to_have_text("")

    OutboxDispatcher(state, threading.Event()).dispatch_due()
    (sent,) = smtp.wait_for(1)
    [part] = list(sent.message.iter_attachments())
    assert part.get_filename() == LABEL_NAME
    assert part.get_payload(decode=True) == LABEL
    assert page.console_errors == []


def test_note_mode_file_input_not_focusable(page, live_server, state, agent, email_channel):
    _ingest_email(state, email_channel.id, _email_bytes("note-1@example.org", "Question", "Is it shipped?"))
    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Marie").click()
    file_input = page.locator(".composer input[type=file]")
    expect(file_input).to_have_attribute("tabindex", "-1")

    page.get_by_role("button", name="Note", exact=True).click()
    expect(page.get_by_role("button", name="Attach files")).to_be_hidden()
    expect(file_input).to_be_disabled()

    # Shift+Tab from the note box lands on a visible control, never on the file input.
    page.get_by_role("textbox", name=re.compile("Internal note")).focus()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.type") != "file"

    page.get_by_role("button", name="Reply", exact=True).click()
    expect(page.get_by_role("button", name="Attach files")).to_be_visible()
    expect(file_input).to_be_enabled()
    assert page.console_errors == []
