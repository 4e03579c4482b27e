"""The contact panel beside the thread: edit the name and notes inline, merge two contacts."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inbox.models import Contact
from tests.browser.test_inbox_ui import _sign_in
from tests.support.contacts import add_email_channel, contact_of, receive_mail
from tests.support.conversations import receive

pytestmark = pytest.mark.browser

PHONE = "+15551230042"
EMAIL = "grace@example.org"
SCREENSHOTS = os.environ.get("SWITCHBOARD_TEST_SCREENSHOTS")


def _screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"))


def test_agent_edits_contact_and_merges_whatsapp_with_email(page, live_server, state, agent, whatsapp_channel):
    email_channel = add_email_channel(state)
    whatsapp = receive(state, whatsapp_channel.id, PHONE, "Where is my order?")
    mail = receive_mail(state, email_channel.id, EMAIL, "Order 1234 is late, please check.", name="Grace Hopper")
    phone_contact, email_contact = contact_of(state, whatsapp.conversation_id), contact_of(state, mail.conversation_id)

    page.set_viewport_size({"width": 1440, "height": 900})
    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option").filter(has_text="Where is my order?").click()
    panel = page.get_by_role("complementary", name="Contact")
    expect(panel).to_contain_text(PHONE)
    expect(panel.get_by_role("button", name=re.compile("#1"))).to_have_attribute("aria-current", "true")

    # The name: edit, cancel with Escape, edit again and save.
    panel.get_by_role("button", name="Edit name").click()
    panel.get_by_role("textbox", name="Name", exact=True).fill("Someone else")
    panel.get_by_role("textbox", name="Name", exact=True).press("Escape")
    expect(panel.get_by_role("textbox", name="Name", exact=True)).to_have_count(0)
    expect(panel.get_by_role("button", name="Edit name")).to_be_focused()
    panel.get_by_role("button", name="Edit name").click()
    panel.get_by_role("textbox", name="Name", exact=True).fill("Grace H.")
    panel.get_by_role("button", name="Save").click()
    expect(panel.locator(".contact-panel__name")).to_have_text("Grace H.")
    # The conversation.updated event renames the thread header and the list too.
    expect(page.locator("#thread-title")).to_have_text("Grace H.")

    # The notes: Cancel leaves them as they were, Save keeps them.
    panel.get_by_role("button", name="Edit notes").click()
    panel.get_by_role("textbox", name="Notes").fill("Not this")
    panel.get_by_role("button", name="Cancel").click()
    expect(panel).to_contain_text("No notes yet.")
    panel.get_by_role("button", name="Edit notes").click()
    panel.get_by_role("textbox", name="Notes").fill("Calls before noon.\nOrder 1234.")
    panel.get_by_role("button", name="Save").click()
    expect(panel.locator(".contact-panel__notes")).to_have_text("Calls before noon.\nOrder 1234.")
    _screenshot(page, "contact-panel")

    # Merge: find the email contact, read what moves, confirm.
    panel.get_by_role("button", name="Merge with…").click()
    dialog = page.get_by_role("dialog", name=re.compile("Merge another contact into Grace H."))
    dialog.get_by_label("Find the other contact").fill("hopper")
    dialog.get_by_role("button", name=re.compile("Grace Hopper")).click()
    expect(dialog).to_contain_text("Merging moves these from Grace Hopper to Grace H.:")
    expect(dialog).to_contain_text(f"1 address ({EMAIL})")
    expect(dialog).to_contain_text("1 conversation with their messages")
    _screenshot(page, "contact-merge-confirm")
    dialog.get_by_role("button", name="Merge into Grace H.").click()
    expect(dialog).to_have_count(0)

    expect(panel).to_contain_text(EMAIL)
    expect(panel).to_contain_text(PHONE)
    expect(panel.locator(".contact-panel__merge-record")).to_contain_text("Grace Hopper")
    expect(panel.locator(".contact-panel__conversation")).to_have_count(2)
    expect(page.locator("#thread")).to_contain_text("merged the contact Grace Hopper")
    _screenshot(page, "contact-merged")

    # A past conversation opens from the panel.
    panel.get_by_role("button", name=re.compile("Order 1234")).click()
    expect(page.locator("#thread")).to_contain_text("Order 1234 is late, please check.")
    expect(page.locator("#thread-title")).to_have_text("Grace H.")

    with state.session_factory() as session:
        kept = session.get(Contact, phone_contact)
        assert (kept.name, kept.notes) == ("Grace H.", "Calls before noon.\nOrder 1234.")
        assert {identity.value for identity in kept.identities} == {PHONE, EMAIL}
        assert session.scalar(select(Contact.merged_into_id).where(Contact.id == email_contact)) == phone_contact
    assert page.console_errors == []


def test_agent_sets_and_clears_time_zone(page, live_server, state, agent, whatsapp_channel):
    whatsapp = receive(state, whatsapp_channel.id, PHONE, "Where is my order?")
    contact_id = contact_of(state, whatsapp.conversation_id)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    page.set_viewport_size({"width": 1440, "height": 900})
    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option").filter(has_text="Where is my order?").click()
    panel = page.get_by_role("complementary", name="Contact")
    # A +1 555 number has no single zone, so quiet hours follow the workspace's.
    expect(panel.locator("#contact-time-zone-in-use")).to_have_text("UTC, the workspace's zone")

    # An unknown name is not saved, and the form says why.
    panel.get_by_role("button", name="Edit time zone").click()
    panel.get_by_role("textbox", name="Time zone").fill("Europe/Atlantis")
    panel.get_by_role("button", name="Save").click()
    expect(panel.get_by_role("alert")).to_contain_text("not a known IANA time zone")

    panel.get_by_role("textbox", name="Time zone").fill(" Europe/Berlin ")
    panel.get_by_role("textbox", name="Time zone").press("Enter")
    expect(panel.locator(".contact-panel__time-zone")).to_have_text("Europe/Berlin")
    expect(panel.get_by_role("button", name="Edit time zone")).to_be_focused()
    _screenshot(page, "contact-panel-time-zone")
    with state.session_factory() as session:
        assert session.get(Contact, contact_id).time_zone == "Europe/Berlin"

    # Saving it empty clears it.
    panel.get_by_role("button", name="Edit time zone").click()
    panel.get_by_role("textbox", name="Time zone").fill("")
    panel.get_by_role("button", name="Save").click()
    expect(panel.locator("#contact-time-zone-in-use")).to_have_text("UTC, the workspace's zone")
    with state.session_factory() as session:
        assert session.get(Contact, contact_id).time_zone is None
    assert [error for error in errors if "400" not in error] == []
