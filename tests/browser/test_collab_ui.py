"""Working together in Chromium, with two agents in two browser contexts: a note with an
@mention reaches the colleague live, a reply written before new messages is held back with a
warning, and a canned response goes into the reply box by its shortcut."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from inbox.canned import create_canned_response
from inbox.models import Agent, Message, OutboxItem, Role
from inbox.notes import create_note
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST, _conversation, _new_page, _sign_in, _whatsapp_from
from tests.support.conversations import add_agent

pytestmark = pytest.mark.browser

PAGE_LOAD_TIMEOUT_MS = 20_000
GRACE = "+15551230001"


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """The folder for screenshots: SWITCHBOARD_SCREENSHOT_DIR when set, else the test's temp folder."""
    folder = Path(os.environ.get("SWITCHBOARD_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def bob(state) -> Agent:
    return add_agent(state, "bob@example.com", "Bob Builder")


def _open_grace(page) -> None:
    _conversation(page, "Grace").click()
    # The messages, not the contact panel, which lists the conversation's snippet too.
    expect(page.locator("#thread .message")).to_contain_text(["Where is my order?"], timeout=PAGE_LOAD_TIMEOUT_MS)


def _two_agents(browser, page, live_server, agent, bob):
    _sign_in(page, live_server.url, agent.email)
    colleague = _new_page(browser)
    _sign_in(colleague, live_server.url, bob.email)
    for each in (page, colleague):
        expect(_conversation(each, "Grace")).to_be_visible(timeout=PAGE_LOAD_TIMEOUT_MS)
        _open_grace(each)
    return colleague


def test_note_mention_reaches_colleague_live(page, browser, live_server, state, config, agent, bob, whatsapp_channel, screenshots):
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    colleague = _two_agents(browser, page, live_server, agent, bob)
    try:
        # n opens the box in Note mode; @ offers the colleagues by name.
        page.locator("#thread").click()
        page.keyboard.press("n")
        box = page.get_by_role("textbox", name="Internal note")
        expect(box).to_be_focused()
        box.press_sequentially("Refund approved. @Bo")
        options = page.get_by_role("listbox", name="Suggestions").get_by_role("option")
        expect(options).to_have_count(1)
        expect(options.first).to_contain_text("Bob Builder")
        page.screenshot(path=str(screenshots / "note-mention-suggestions.png"))
        box.press("Enter")
        expect(box).to_have_value("Refund approved. @Bob Builder ")
        box.press_sequentially("please send it today.")
        box.press("Control+Enter")

        mine = page.locator("#thread .note")
        expect(mine).to_contain_text("Refund approved. @Bob Builder please send it today.")
        expect(box).to_have_value("")
        expect(mine.locator(".note__mention")).to_have_text("@Bob Builder")

        # The note reaches Bob live, marked as internal, and so does his mention.
        theirs = colleague.locator("#thread .note")
        expect(theirs).to_contain_text("please send it today.")
        expect(theirs.locator(".note__badge")).to_have_text("Internal note")
        mentions_button = colleague.locator("#mentions-button")
        expect(mentions_button).to_have_accessible_name("Mentions, 1 unread")
        colleague.screenshot(path=str(screenshots / "note-colleague-view.png"))
        mentions_button.click()
        item = colleague.locator(".mentions__item")
        expect(item).to_have_count(1)
        expect(item).to_contain_text("Ada Agent in Grace")
        colleague.screenshot(path=str(screenshots / "mentions-panel.png"))
        item.click()
        expect(mentions_button).to_have_accessible_name("Mentions")
        expect(colleague.locator(".mentions__count")).to_be_hidden()

        # The author got no mention of their own, and nothing went to the customer.
        expect(page.locator("#mentions-button")).to_have_accessible_name("Mentions")
        with state.session_factory() as session:
            assert session.query(OutboxItem).count() == 0
        assert page.console_errors == []
        assert colleague.console_errors == []
    finally:
        colleague.context.close()


def test_customer_message_while_typing_holds(page, live_server, state, config, agent, whatsapp_channel, screenshots):
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    _sign_in(page, live_server.url, agent.email)
    _open_grace(page)
    box = page.get_by_role("textbox", name="Reply")
    box.fill("It left our warehouse this morning.")

    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Please cancel it, I ordered twice.")
    expect(page.locator("#thread")).to_contain_text("Please cancel it")
    page.get_by_role("button", name="Send", exact=True).click()

    warning = page.locator(".stale-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("A new message arrived while you were writing")
    expect(warning).to_contain_text("Grace wrote")
    expect(warning).to_contain_text("Please cancel it, I ordered twice.")
    expect(box).to_have_value("It left our warehouse this morning.")
    expect(page.locator("#reply-error")).to_contain_text("Not sent")
    page.screenshot(path=str(screenshots / "stale-reply-customer.png"))
    with state.session_factory() as session:
        assert session.query(OutboxItem).count() == 0

    # Edit keeps the draft and counts the new message as read, so the next send goes out.
    page.get_by_role("button", name="Edit reply").click()
    expect(warning).to_be_hidden()
    expect(box).to_be_focused()
    box.fill("Cancelled: you will not be charged.")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#thread .message--outbound")).to_contain_text("Cancelled: you will not be charged.")
    expect(box).to_have_value("")
    with state.session_factory() as session:
        assert [m.text for m in session.query(Message).filter_by(direction="outbound")] == ["Cancelled: you will not be charged."]
    # The app handles the 409 response, but Chromium logs the failed request.
    assert [error for error in page.console_errors if "409" not in error] == []


def test_colleague_first_then_send_anyway(page, browser, live_server, state, config, agent, bob, whatsapp_channel, screenshots):
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    colleague = _two_agents(browser, page, live_server, agent, bob)
    try:
        page.get_by_role("textbox", name="Reply").fill("Your order ships tomorrow.")
        theirs = colleague.get_by_role("textbox", name="Reply")
        theirs.fill("It shipped today, here is the tracking link.")
        colleague.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator("#thread")).to_contain_text("here is the tracking link")

        page.get_by_role("button", name="Send", exact=True).click()
        warning = page.locator(".stale-warning")
        expect(warning).to_contain_text("Bob Builder replied")
        expect(warning).to_contain_text("It shipped today, here is the tracking link.")
        page.screenshot(path=str(screenshots / "stale-reply-colleague.png"))

        page.get_by_role("button", name="Send anyway").click()
        expect(warning).to_be_hidden()
        expect(page.locator("#thread .message--outbound")).to_have_count(2)
        expect(colleague.locator("#thread")).to_contain_text("Your order ships tomorrow.")
        with state.session_factory() as session:
            texts = [m.text for m in session.query(Message).filter_by(direction="outbound").order_by(Message.id)]
        assert texts == ["It shipped today, here is the tracking link.", "Your order ships tomorrow."]
        assert [error for error in page.console_errors if "409" not in error] == []
        assert colleague.console_errors == []
    finally:
        colleague.context.close()


def test_canned_response_inserted_by_shortcut(page, live_server, state, config, agent, whatsapp_channel, screenshots):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    with state.session_factory() as session:
        create_canned_response(
            session, session.get(Agent, manager.id), "Greeting",
            'Hi {{ customer.first_name | default("there") }}, {{ agent.first_name }} here. Thanks for writing!', True,
        )
        create_canned_response(session, session.get(Agent, manager.id), "Refund policy", "Refunds take 5 days.", True)
        session.commit()
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    _sign_in(page, live_server.url, agent.email)
    _open_grace(page)
    box = page.get_by_role("textbox", name="Reply")
    options = page.get_by_role("listbox", name="Suggestions").get_by_role("option")

    # "/" at the start of a word filters by title, and Enter inserts the filled-in text.
    box.press_sequentially("/gree")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("Hi Grace, Ada here.")
    page.screenshot(path=str(screenshots / "canned-slash.png"))
    box.press("Enter")
    expect(box).to_have_value("Hi Grace, Ada here. Thanks for writing!")

    # Ctrl+Space lists them all; the arrow keys choose.
    box.press("End")
    box.press_sequentially(" ")
    box.press("Control+Space")
    expect(options).to_have_count(2)
    box.press("ArrowDown")
    box.press("Enter")
    expect(box).to_have_value("Hi Grace, Ada here. Thanks for writing! Refunds take 5 days.")

    # A slash inside a word is text, and Escape closes the list without inserting.
    box.press_sequentially(" and/or")
    expect(options).to_have_count(0)
    box.press_sequentially(" /re")
    expect(options).to_have_count(1)
    box.press("Escape")
    expect(page.get_by_role("listbox", name="Suggestions")).to_be_hidden()
    expect(box).to_have_value("Hi Grace, Ada here. Thanks for writing! Refunds take 5 days. and/or /re")
    assert page.console_errors == []


def test_agent_manages_personal_responses(page, live_server, state, config, agent, whatsapp_channel, screenshots):
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    _sign_in(page, live_server.url, agent.email)
    _open_grace(page)

    page.get_by_role("button", name="Canned responses").click()
    dialog = page.get_by_role("dialog", name="Canned responses")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("None yet")
    # Agents keep personal responses only; sharing is for managers.
    expect(dialog.get_by_label("Shared with every agent")).to_be_hidden()
    dialog.get_by_label("Title").fill("Sign-off")
    dialog.get_by_label("Text").fill("{{ agent.password }}")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".canned__error")).to_contain_text("Unknown placeholder 'agent.password'")
    dialog.get_by_label("Text").fill("Best regards, {{ agent.name }}")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".canned__item")).to_contain_text("Sign-off")
    expect(dialog.locator(".canned__item")).to_contain_text("Personal")
    page.screenshot(path=str(screenshots / "canned-dialog.png"))
    dialog.get_by_role("button", name="Close").click()

    box = page.get_by_role("textbox", name="Reply")
    expect(box).to_be_focused()
    box.press_sequentially("/sign")
    option = page.get_by_role("listbox", name="Suggestions").get_by_role("option")
    expect(option).to_have_count(1)
    expect(option).to_contain_text("Best regards, Ada Agent")
    box.press("Enter")
    expect(box).to_have_value("Best regards, Ada Agent")
    assert [error for error in page.console_errors if "400" not in error] == []


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_collab_parts_keep_contrast(browser, live_server, state, config, agent, bob, whatsapp_channel, screenshots, color_scheme):
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    with state.session_factory() as session:
        conversation_id = session.query(Message.conversation_id).scalar()
        create_note(session, conversation_id, bob.id, "@ada can you take this one? It is the second order this week.")
        session.commit()
    page = _new_page(browser, color_scheme)
    try:
        _sign_in(page, live_server.url, agent.email)
        _open_grace(page)
        expect(page.locator("#thread .note .note__mention")).to_have_text("@ada")
        page.locator("#mentions-button").click()
        expect(page.locator(".mentions__item--unread")).to_have_count(1)
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        page.screenshot(path=str(screenshots / f"note-and-mentions-{color_scheme}.png"))
        page.keyboard.press("Escape")

        page.locator("#thread").click()
        page.keyboard.press("n")
        page.keyboard.type("Taking it.")
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        page.screenshot(path=str(screenshots / f"note-mode-{color_scheme}.png"))

        page.get_by_role("button", name="Reply", exact=True).click()
        _whatsapp_from(state, config, live_server, GRACE, "Grace", "Hello? Anyone there?")
        expect(page.locator("#thread")).to_contain_text("Anyone there?")
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator(".stale-warning")).to_be_visible()
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        page.screenshot(path=str(screenshots / f"stale-warning-{color_scheme}.png"))

        page.get_by_role("button", name="Keyboard shortcuts").click()
        expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_contain_text("Write an internal note")
        page.screenshot(path=str(screenshots / f"shortcuts-{color_scheme}.png"))
        page.keyboard.press("Escape")

        page.set_viewport_size({"width": 420, "height": 800})
        expect(page.locator("#mentions-button")).to_be_visible()
        # "Mentions" is out of sight but still names the button for screen readers.
        expect(page.get_by_role("button", name="Mentions")).to_be_visible()
        assert page.locator(".mentions__label").evaluate("(label) => label.getBoundingClientRect().width") <= 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        page.screenshot(path=str(screenshots / f"stale-warning-narrow-{color_scheme}.png"))
        assert [error for error in page.console_errors if "409" not in error] == []
    finally:
        page.context.close()


def test_draft_started_before_thread_loads_is_checked(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    _sign_in(page, live_server.url, agent.email)
    expect(_conversation(page, "Grace")).to_be_visible(timeout=PAGE_LOAD_TIMEOUT_MS)
    held_back = []
    detail = re.compile(r"/api/v1/conversations/\d+$")

    def hold(route) -> None:
        held_back.append(route)

    page.route(detail, hold)

    # The reply box is ready before the thread's messages have arrived.
    with page.expect_request(detail):
        _conversation(page, "Grace").click()
    box = page.get_by_role("textbox", name="Reply")
    box.fill("Let me check.")
    expect(page.locator("#thread .message")).to_have_count(0)
    assert len(held_back) == 1
    held_back[0].continue_()
    page.unroute(detail)
    expect(page.locator("#thread .message")).to_contain_text(["Where is my order?"])

    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Never mind, it just arrived.")
    expect(page.locator("#thread")).to_contain_text("it just arrived")
    page.get_by_role("button", name="Send", exact=True).click()

    expect(page.locator(".stale-warning")).to_contain_text("Never mind, it just arrived.")
    expect(box).to_have_value("Let me check.")
