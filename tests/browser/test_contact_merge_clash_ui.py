"""The contact merge dialog in Chromium with two contacts that both have a phone number.

Such a candidate is marked in the results and cannot be confirmed. A candidate without a
clashing address still merges."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inbox.ingest import ingest_message
from inbox.models import Contact
from tests.browser.test_contact_panel_ui import _screenshot
from tests.browser.test_inbox_ui import _sign_in
from tests.support.contacts import add_email_channel, contact_of, receive_mail
from tests.support.conversations import customer_message

pytestmark = pytest.mark.browser

GRACE_PHONE = "+15551230042"
ALAN_PHONE = "+447700900123"
ALAN_EMAIL = "alan@example.org"


def _receive_whatsapp(state, channel_id: int, number: str, text: str, name: str) -> int:
    with state.session_factory() as session:
        result = ingest_message(session, channel_id, customer_message(number, text, name))
    return contact_of(state, result.conversation_id)


def _merged_into(state, contact_id: int) -> int | None:
    with state.session_factory() as session:
        return session.scalar(select(Contact.merged_into_id).where(Contact.id == contact_id))


def test_clashing_candidate_is_marked_and_blocked(page, live_server, state, agent, whatsapp_channel):
    email_channel = add_email_channel(state)
    grace = _receive_whatsapp(state, whatsapp_channel.id, GRACE_PHONE, "Where is my order?", "Grace")
    alan_phone = _receive_whatsapp(state, whatsapp_channel.id, ALAN_PHONE, "Here is the photo", "Alan Turing")
    alan_email = contact_of(state, receive_mail(state, email_channel.id, ALAN_EMAIL, "Any news?", name="Alan T.").conversation_id)

    page.set_viewport_size({"width": 1440, "height": 900})
    _sign_in(page, live_server.url, agent.email)
    page.get_by_role("option").filter(has_text="Where is my order?").click()
    panel = page.get_by_role("complementary", name="Contact")
    expect(panel).to_contain_text(GRACE_PHONE)

    # The results mark the WhatsApp Alan, who has a phone number like Grace, and not the email one.
    panel.get_by_role("button", name="Merge with…").click()
    dialog = page.get_by_role("dialog", name=re.compile("Merge another contact into Grace"))
    dialog.get_by_label("Find the other contact").fill("alan")
    blocked = dialog.get_by_role("button", name=re.compile("Alan Turing"))
    allowed = dialog.get_by_role("button", name=re.compile("Alan T\\."))
    expect(blocked).to_contain_text("Cannot merge: both have a phone number")
    expect(allowed).to_contain_text(ALAN_EMAIL)
    expect(allowed).not_to_contain_text("Cannot merge")
    _screenshot(page, "contact-merge-clash-results")

    # Picking it explains why, keeps Merge disabled and puts the focus on Back.
    blocked.click()
    reason = dialog.get_by_role("alert").filter(has_text="cannot be merged")
    expect(reason).to_have_text(
        f"Alan Turing cannot be merged into Grace: both have a phone number ({GRACE_PHONE} and {ALAN_PHONE}). "
        "A contact has one address of each kind, and replies on that kind of channel go to it."
    )
    merge = dialog.get_by_role("button", name="Merge into Grace")
    expect(merge).to_be_disabled()
    expect(merge).to_have_accessible_description(re.compile("cannot be merged into Grace"))
    expect(dialog).not_to_contain_text("Merging moves these")
    back = dialog.get_by_role("button", name="Back")
    expect(back).to_be_focused()
    _screenshot(page, "contact-merge-clash-confirm")

    # Back from the keyboard, then the email contact merges as before.
    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Find the other contact")).to_be_focused()
    allowed.click()
    expect(dialog).to_contain_text("Merging moves these from Alan T. to Grace:")
    expect(merge).to_be_enabled()
    expect(merge).to_be_focused()
    merge.click()
    expect(dialog).to_have_count(0)
    expect(panel).to_contain_text(ALAN_EMAIL)

    assert _merged_into(state, alan_email) == grace
    assert _merged_into(state, alan_phone) is None
    assert page.console_errors == [], page.console_errors
