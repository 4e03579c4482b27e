"""The conversation workflow in Chromium: views with live counts, status and assignee controls
in the thread header, keyboard shortcuts, and a bulk action that applies to all or none."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from inbox.models import Conversation, utcnow
from inbox.teams import create_label
from tests.browser.test_inbox_ui import (
    FIND_LOW_CONTRAST,
    _conversation,
    _new_page,
    _sign_in,
    _unexpected_errors,
    _whatsapp_from,
)
from tests.support.conversations import add_agent

pytestmark = pytest.mark.browser

# Chromium logs the response to the bulk change that the test makes fail on purpose.
REJECTED_BULK_CHANGE = re.compile(r"status of 403 \(FORBIDDEN\)")
# The second agent's page loads while the first one works, which can take a while on a busy machine.
PAGE_LOAD_TIMEOUT_MS = 20_000
# How many 50 ms pauses to wait at most for the page to request a conversation.
HOLD_POLLS = 200


def _view(page, name: str):
    return page.get_by_role("navigation", name="Views").get_by_role("button", name=re.compile(rf"^{name} \d+"))


def _count(page, name: str, count: int) -> None:
    noun = "conversation" if count == 1 else "conversations"
    expect(_view(page, name)).to_have_accessible_name(f"{name} {count} {noun}")


def test_status_assignee_and_bulk_action(page, browser, live_server, state, config, agent, whatsapp_channel):
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    _whatsapp_from(state, config, live_server, "+15551230002", "Heidi", "I need a refund")
    _sign_in(page, live_server.url, agent.email)
    colleague = _new_page(browser)
    try:
        _sign_in(colleague, live_server.url, bob.email)
        expect(_conversation(colleague, "Grace")).to_be_visible(timeout=PAGE_LOAD_TIMEOUT_MS)
        _count(page, "Unassigned", 2)
        _count(page, "Mine", 0)

        # "a" assigns the open conversation to the signed-in agent.
        _conversation(page, "Grace").click()
        thread = page.locator("#thread")
        expect(thread).to_contain_text("Where is my order?")
        page.keyboard.press("a")
        expect(page.get_by_label("Assignee")).to_have_value(str(agent.id))
        expect(thread.locator(".activity")).to_contain_text(["Ada Agent assigned this to themselves"])
        _count(page, "Mine", 1)
        _count(page, "Unassigned", 1)

        # The status buttons set pending, and the snooze picker sets a time.
        status = page.get_by_role("group", name="Conversation status")
        status.get_by_role("button", name="Pending").click()
        expect(status.get_by_role("button", name="Pending")).to_have_attribute("aria-pressed", "true")
        expect(thread.locator(".thread__details .status-pill")).to_have_text("Pending")
        status.get_by_role("button", name="Snoozed").click()
        page.get_by_role("form", name="Snooze").get_by_role("button", name="Tomorrow 9:00").click()
        expect(thread.locator(".controls__note")).to_contain_text("Snoozed until")
        _count(page, "Snoozed", 1)
        # The colleague sees the change live.
        expect(_conversation(colleague, "Grace")).to_contain_text("Snoozed")
        expect(_conversation(colleague, "Grace")).to_have_attribute("aria-label", re.compile("assigned to Ada Agent"))

        # A bulk action that one conversation cannot take changes none of them.
        _conversation(colleague, "Heidi").click()
        colleague.get_by_label("Assignee").select_option(str(bob.id))
        expect(_conversation(page, "Heidi")).to_have_attribute("aria-label", re.compile("assigned to Bob Builder"))
        for name in ("Grace", "Heidi"):
            _conversation(page, name).locator(".conversation__check").click()
        bulk = page.get_by_role("toolbar", name="Bulk actions")
        expect(bulk).to_contain_text("2 conversations selected")
        bulk.get_by_label("Action for the selected conversations").select_option(label="Set status: Resolved")
        bulk.get_by_role("button", name="Apply").click()
        expect(bulk.get_by_role("alert")).to_contain_text("Nothing was changed.")
        expect(bulk.get_by_role("alert")).to_contain_text("assigned to Bob Builder")
        expect(_conversation(page, "Heidi")).not_to_contain_text("Resolved")
        expect(_conversation(page, "Grace")).to_contain_text("Snoozed")

        # Without Heidi the same action applies.
        _conversation(page, "Heidi").locator(".conversation__check").click()
        expect(bulk).to_contain_text("1 conversation selected")
        bulk.get_by_role("button", name="Apply").click()
        expect(bulk).to_be_hidden()
        expect(_conversation(page, "Grace")).to_contain_text("Resolved")
        expect(_conversation(colleague, "Grace")).to_contain_text("Resolved")
        _count(page, "Resolved", 1)
        _count(page, "Snoozed", 0)

        # A view lists only its conversations, and an empty one says so.
        _view(page, "Mine").click()
        expect(page.locator("#inbox-heading")).to_have_text("Mine")
        expect(page.get_by_role("listbox", name="Conversations")).to_be_hidden()
        expect(page.locator("#conversation-list")).to_contain_text("Nothing in this view.")
        _view(page, "Resolved").click()
        expect(page.get_by_role("listbox", name="Conversations").get_by_role("option")).to_have_count(1)
        expect(_conversation(page, "Grace")).to_be_visible()

        assert _unexpected_errors(page, REJECTED_BULK_CHANGE) == []
        assert colleague.console_errors == []
    finally:
        colleague.context.close()


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_controls_and_bulk_bar_meet_contrast(browser, live_server, state, config, agent, whatsapp_channel, color_scheme):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    with state.session_factory() as session:
        create_label(session, "VIP")
        session.commit()
    page = _new_page(browser, color_scheme)
    try:
        _sign_in(page, live_server.url, agent.email)
        _conversation(page, "Grace").click()
        expect(page.locator("#thread")).to_contain_text("Where is my order?")
        page.get_by_role("combobox", name="Add label").fill("VIP")
        page.get_by_role("combobox", name="Add label").press("Enter")
        page.get_by_label("Priority").select_option("urgent")
        page.get_by_role("group", name="Conversation status").get_by_role("button", name="Snoozed").click()
        expect(page.get_by_role("form", name="Snooze")).to_be_visible()
        page.keyboard.press("Escape")
        page.keyboard.press("x")
        expect(page.get_by_role("toolbar", name="Bulk actions")).to_contain_text("1 conversation selected")
        page.get_by_role("group", name="Conversation status").get_by_role("button", name="Snoozed").click()
        expect(_conversation(page, "Grace")).to_contain_text("Urgent")

        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        page.context.close()


def test_merge_dialog_moves_messages(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "My order 1234 is late")
    with state.session_factory() as session:
        # The first conversation was resolved a month ago, so the next message starts another.
        first = session.scalars(select(Conversation)).one()
        first.status = "resolved"
        first.last_message_at = utcnow() - timedelta(days=30)
        session.commit()
        first_id = first.id
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Still waiting for order 1234")
    _sign_in(page, live_server.url, agent.email)
    options = page.get_by_role("listbox", name="Conversations").get_by_role("option")
    expect(options).to_have_count(2)

    options.first.click()
    expect(page.locator("#thread")).to_contain_text("Still waiting for order 1234")
    page.get_by_role("button", name="Merge…").click()
    dialog = page.get_by_role("dialog", name=re.compile("Merge conversation"))
    dialog.get_by_role("radio", name=re.compile(f"#{first_id}")).check()
    dialog.get_by_role("button", name="Merge", exact=True).click()

    expect(dialog).to_be_hidden()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("My order 1234 is late")
    expect(thread).to_contain_text("Still waiting for order 1234")
    expect(thread.locator(".activity")).to_contain_text([re.compile(r"Ada Agent merged conversation #\d+ into this one \(1 message\)")])
    expect(options).to_have_count(1)
    assert page.console_errors == []


def test_resolve_shortcut_and_labels(page, live_server, state, config, agent, whatsapp_channel):
    manager = add_agent(state, "mia@example.com", "Mia Manager", "manager")
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    _sign_in(page, live_server.url, manager.email)

    _conversation(page, "Grace").click()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("Where is my order?")
    label_box = page.get_by_role("combobox", name="Add label")
    label_box.fill("Delivery")
    label_box.press("Enter")
    expect(page.get_by_role("list", name="Labels")).to_contain_text("Delivery")
    expect(_conversation(page, "Grace")).to_have_attribute("aria-label", re.compile("labels Delivery"))
    page.get_by_role("button", name="Remove label Delivery").click()
    expect(page.get_by_role("button", name="Remove label Delivery")).to_have_count(0)
    expect(_conversation(page, "Grace")).not_to_have_attribute("aria-label", re.compile("labels"))

    page.get_by_label("Priority").select_option("urgent")
    expect(_conversation(page, "Grace")).to_contain_text("Urgent")

    page.get_by_role("listbox", name="Conversations").focus()
    page.keyboard.press("e")
    expect(page.get_by_role("group", name="Conversation status").get_by_role("button", name="Resolved")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(thread.locator(".activity").last).to_have_text(re.compile("^Mia Manager set the status to Resolved"))
    assert page.console_errors == []



def test_stale_load_keeps_newer_assignment(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    with state.session_factory() as session:
        # Read already, so that opening it publishes no fresh copy that would hide a stale one.
        session.execute(update(Conversation).values(unread_count=0))
        session.commit()
    _sign_in(page, live_server.url, agent.email)
    detail = re.compile(r"/api/v1/conversations/\d+$")
    held_requests = []
    # The conversation's copy is read before the assignment and delivered after it.
    page.route(detail, lambda route: held_requests.append((route, route.fetch())))

    _conversation(page, "Grace").click()
    for _ in range(HOLD_POLLS):
        if held_requests:
            break
        page.wait_for_timeout(50)
    assert len(held_requests) == 1
    page.keyboard.press("a")
    expect(page.get_by_label("Assignee")).to_have_value(str(agent.id))
    route, response = held_requests[0]
    route.fulfill(response=response)

    expect(page.locator("#thread")).to_contain_text("Where is my order?")
    expect(page.get_by_label("Assignee")).to_have_value(str(agent.id))
    page.unroute(detail)
