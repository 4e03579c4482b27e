"""The proactive updates page in Chromium.

A manager writes a template, fixes what validation finds, previews it against a real
conversation and enables it. Agents see the estimate in the thread header.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from inbox.models import Channel, Conversation, Role, UpdateTemplate, utcnow
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST, _conversation, _new_page, _sign_in, _whatsapp_from
from tests.inbox.test_proactive_estimates import History
from tests.support.conversations import add_agent

pytestmark = pytest.mark.browser

# Chromium logs every 422 that the editor gets for an invalid template; the page shows those.
REJECTED_TEMPLATE = re.compile(r"status of 422 \(UNPROCESSABLE ENTITY\)")
# Screenshots go here when set, so a person can look at the editor.
SCREENSHOT_DIR = os.environ.get("SWITCHBOARD_SCREENSHOT_DIR")


def _screenshot(page, name: str) -> None:
    if SCREENSHOT_DIR:
        # From the top, because a full-page capture draws the sticky header where the view was.
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, name), full_page=True)


def _conversation_id(state) -> int:
    with state.session_factory() as session:
        return session.query(Conversation.id).one()[0]


def test_manager_writes_previews_and_enables_template(page, live_server, state, config, whatsapp_channel):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace Hopper", "Where is my parcel?")
    conversation_id = _conversation_id(state)
    _sign_in(page, live_server.url, manager.email)

    # The inbox header links managers to the page.
    page.get_by_role("link", name="Proactive updates").click()
    expect(page).to_have_url(re.compile(r"/updates$"))
    expect(page.get_by_role("link", name="Activity log")).to_have_attribute("href", "/updates/log")
    expect(page.get_by_role("heading", name="New template")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("Still on it")
    page.get_by_label("When").select_option(label="No agent reply")
    page.get_by_label("After (hours)").fill("4")
    page.get_by_label("Count business hours only").check()
    page.get_by_role("group", name="Channels").get_by_label("WhatsApp").check()
    page.get_by_label("Subject").fill("Your request {{ reference }}")
    page.get_by_label("Body", exact=True).fill(
        "Hello {{ customer_name }},\n\nThanks for waiting, {{ custmer_name }}.\nYou are number {{ queue_position }}."
    )
    page.get_by_label("Body, sent inside the 24-hour window").fill("Hi {{ customer_name }}, ")
    # A placeholder goes in at the cursor of the last body edited.
    page.get_by_role("button", name="Insert reference").click()
    expect(page.get_by_label("Body, sent inside the 24-hour window")).to_have_value("Hi {{ customer_name }}, {{ reference }}")

    page.get_by_role("button", name="Save").click()

    # The unknown placeholder is reported beside the email body, with its line.
    email_body = page.get_by_label("Body", exact=True)
    expect(page.locator("#error-email_body")).to_have_text(
        "Line 3: unknown placeholder 'custmer_name': did you mean 'customer_name'?"
    )
    expect(email_body).to_have_attribute("aria-invalid", "true")
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("The template was not saved")
    expect(summary).to_be_focused()
    _screenshot(page, "updates-editor-error.png")
    # The summary's link selects the faulty line in the body.
    summary.get_by_role("link").click()
    expect(email_body).to_be_focused()
    assert page.evaluate("() => { const area = document.activeElement; "
                         "return area.value.slice(area.selectionStart, area.selectionEnd); }") \
        == "Thanks for waiting, {{ custmer_name }}."
    with state.session_factory() as session:
        assert session.query(UpdateTemplate).count() == 0

    # Fixed, and saved with the keyboard.
    email_body.fill("Hello {{ customer_name }},\n\nThanks for waiting.\nYou are number {{ queue_position }}.")
    page.keyboard.press("Control+s")
    expect(page.locator("#save-status")).to_have_text("Saved.")
    expect(page.get_by_role("heading", name="Edit “Still on it”")).to_be_visible()
    expect(email_body).not_to_have_attribute("aria-invalid", "true")
    switch = page.get_by_role("switch", name="Enabled: Still on it")
    expect(switch).to_have_attribute("aria-checked", "false")

    # Preview against the real conversation, picked by its reference.
    page.get_by_label("Conversation id or reference").fill(f"#{conversation_id}")
    page.get_by_label("Conversation id or reference").press("Enter")
    output = page.locator("#preview-output")
    expect(output).to_contain_text(f"#{conversation_id} · Grace Hopper · WhatsApp")
    expect(output).to_contain_text("This conversation meets the conditions.")
    # Only the version that Grace's WhatsApp conversation would get: the text, inside the window.
    expect(output.get_by_role("heading", name="Sent on WhatsApp")).to_be_visible()
    expect(page.locator("#preview-whatsapp")).to_have_text(f"Hi Grace Hopper, #{conversation_id}")
    expect(page.locator("#preview-email")).to_have_count(0)
    expect(output).not_to_contain_text("Thanks for waiting")
    _screenshot(page, "updates-editor-preview.png")

    # A save keeps the preview and its conversation, and shows "Saved." beside the Save button.
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.press("Control+s")
    # The "Saved." of the first save is still shown until this save's response rebuilds the
    # form, which enables Save again. Editing before that would race the rebuild.
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    save_status = page.get_by_role("status").filter(has_text="Saved.")
    expect(save_status).to_be_in_viewport()
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    expect(page.get_by_label("Conversation id or reference")).to_have_value(f"#{conversation_id}")
    expect(page.locator("#preview-whatsapp")).to_have_text(f"Hi Grace Hopper, #{conversation_id}")
    # An edit makes "Saved." untrue until the next save, which previews the saved version.
    page.get_by_label("Body, sent inside the 24-hour window").fill("Hi {{ customer_name }}, still on {{ reference }}")
    expect(page.locator("#save-status")).to_have_text("")
    page.get_by_role("button", name="Save").click()
    expect(save_status).to_be_in_viewport()
    expect(page.locator("#preview-whatsapp")).to_have_text(f"Hi Grace Hopper, still on #{conversation_id}")
    _screenshot(page, "updates-editor-saved.png")

    # Sample data has no channel, so both versions show.
    page.get_by_role("button", name="Use sample data").click()
    expect(page.locator("#preview-email")).to_contain_text("Thanks for waiting.")
    expect(page.locator("#preview-whatsapp")).to_be_visible()

    # Enable it from the list.
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(page.locator(".state-pill")).to_have_text("Enabled")
    with state.session_factory() as session:
        saved = session.query(UpdateTemplate).one()
        assert saved.enabled is True
        assert saved.trigger == "no_agent_reply"
        assert saved.trigger_params == {"hours": 4, "business_hours": True}
        assert saved.conditions == {"channels": ["whatsapp"]}
        assert saved.created_by_id == manager.id
    # Enabling re-renders the form, and the preview stays.
    expect(page.locator("#preview-whatsapp")).to_be_visible()

    assert page.evaluate(FIND_LOW_CONTRAST) == []
    assert [error for error in page.console_errors if not REJECTED_TEMPLATE.search(error)] == []


def test_editor_keyboard_only(page, live_server, state, whatsapp_channel):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    _sign_in(page, live_server.url, manager.email)
    page.goto(live_server.url + "/updates")
    expect(page.get_by_role("heading", name="New template")).to_be_visible()

    # Tab order reaches every control of the editor by its label.
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.type("Resolved note")
    page.keyboard.press("Tab")
    expect(page.get_by_label("When")).to_be_focused()
    page.keyboard.press("End")
    expect(page.get_by_label("When")).to_have_value("resolved")
    expect(page.locator("#trigger-help")).to_have_text("Sent when the conversation is resolved.")
    page.get_by_label("Body", exact=True).focus()
    page.keyboard.type("Your request {{ reference }} is resolved.")
    page.get_by_label("Subject").focus()
    page.keyboard.type("Done")
    page.get_by_label("Approved template (Content SID), sent outside the window").fill("HX" + "0" * 32)
    page.get_by_role("button", name="Add variable").press("Enter")
    expect(page.get_by_label("Variable 1: number in the approved template")).to_be_focused()
    expect(page.get_by_label("Variable 1: number in the approved template")).to_have_value("1")
    page.keyboard.press("Tab")
    page.keyboard.press("End")
    page.get_by_role("button", name="Add variable").press("Enter")
    page.get_by_role("button", name="Remove variable 2").press("Enter")
    page.keyboard.press("Control+s")

    expect(page.locator("#save-status")).to_have_text("Saved.")
    expect(page.get_by_role("button", name="Save")).to_be_focused()
    expect(page.get_by_role("switch", name="Enabled: Resolved note")).to_be_visible()
    with state.session_factory() as session:
        saved = session.query(UpdateTemplate).one()
        assert saved.trigger == "resolved"
        assert saved.whatsapp_variables == {"1": "reply_to"}

    # The switch keeps the focus when the list is redrawn, so Space toggles it back and forth.
    switch = page.get_by_role("switch", name="Enabled: Resolved note")
    switch.focus()
    page.keyboard.press("Space")
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(switch).to_be_focused()
    page.keyboard.press("Space")
    expect(switch).to_have_attribute("aria-checked", "false")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="New template")).to_be_visible()
    expect(page.locator("#template-list")).to_have_text("No templates yet.")
    assert page.console_errors == []


def test_empty_required_fields_named_beside_them(page, live_server, state, whatsapp_channel):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    _sign_in(page, live_server.url, manager.email)
    page.goto(live_server.url + "/updates")
    expect(page.get_by_role("heading", name="New template")).to_be_visible()
    page.get_by_label("When").select_option(label="No agent reply")

    page.get_by_role("button", name="Save").click()

    # Each message names the field by its label on the page, beside that field.
    name_error = "Name is required. Enter a name for this template."
    hours_error = "After (hours) is required. Enter a number of hours, such as 4."
    nothing_error = ("There is nothing to send. Enter an email Body, a WhatsApp Body or an Approved template "
                     "(Content SID).")
    expect(page.locator("#error-name")).to_have_text(name_error)
    expect(page.locator("#error-param-hours")).to_have_text(hours_error)
    expect(page.locator("#error-email_body")).to_have_text(nothing_error)
    expect(page.locator("#error-trigger_params")).to_be_hidden()
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("After (hours)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("After (hours)")).to_have_attribute("aria-describedby", "error-param-hours")
    expect(page.get_by_label("Body", exact=True)).to_have_attribute("aria-invalid", "true")
    summary = page.get_by_role("alert")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("listitem")).to_have_text([name_error, hours_error, nothing_error])
    summary.get_by_role("link", name=hours_error).click()
    expect(page.get_by_label("After (hours)")).to_be_focused()
    _screenshot(page, "updates-editor-empty.png")

    # Nothing was saved, and the form never reached the server, so it logged no 422.
    expect(page.locator("#template-list")).to_have_text("No templates yet.")
    with state.session_factory() as session:
        assert session.query(UpdateTemplate).count() == 0
    assert page.console_errors == []

    # An email subject without a body needs the body, and the messages already fixed go away.
    page.get_by_label("Name", exact=True).fill("Still on it")
    page.get_by_label("After (hours)").fill("4")
    page.get_by_label("Subject").fill("Your request {{ reference }}")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#error-email_body")).to_have_text(
        "Body is required for an email. Enter the email’s text, or empty the Subject to send no email."
    )
    expect(page.locator("#error-name")).to_be_hidden()
    expect(page.locator("#error-param-hours")).to_be_hidden()
    expect(page.get_by_label("Name", exact=True)).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("After (hours)")).not_to_have_attribute("aria-invalid", "true")

    page.get_by_label("Subject").fill("")
    page.get_by_label("Body", exact=True).fill("We are still on it.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#error-email_subject")).to_have_text(
        "Subject is required for an email. Enter a subject, or empty the email’s Body to send no email."
    )

    page.get_by_label("Subject").fill("Your request {{ reference }}")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-status")).to_have_text("Saved.")
    with state.session_factory() as session:
        saved = session.query(UpdateTemplate).one()
        assert saved.name == "Still on it"
        assert saved.trigger_params == {"hours": 4}
    assert page.console_errors == []


def test_agent_sees_estimate_not_updates(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "First")
    _whatsapp_from(state, config, live_server, "+15551230002", "Heidi", "Second")
    _sign_in(page, live_server.url, agent.email)

    expect(page.get_by_role("link", name="Proactive updates")).to_have_count(0)
    _conversation(page, "Heidi").click()
    estimate = page.locator(".thread__estimate")
    expect(estimate.get_by_role("term")).to_have_text(["Queue position"])
    expect(estimate.get_by_role("definition")).to_have_text(["2"])
    expect(estimate).to_have_attribute("title", "Too little history for estimated times")

    forbidden = page.goto(live_server.url + "/updates")
    assert forbidden.status == 403
    assert [error for error in page.console_errors if "403" not in error] == []


def test_estimate_shows_times_from_history(page, live_server, state, config, agent, whatsapp_channel):
    with state.session_factory() as session:
        History(session, session.get(Channel, whatsapp_channel.id), now=utcnow()).handled(
            10, first_response=timedelta(hours=2), resolution=timedelta(hours=30),
        )
        session.commit()
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my parcel?")
    _sign_in(page, live_server.url, agent.email)

    _conversation(page, "Grace").click()

    estimate = page.locator(".thread__estimate")
    expect(estimate.get_by_role("term")).to_have_text(["Queue position", "First reply", "Resolution"])
    expect(estimate.get_by_role("definition")).to_have_text(["1 (next)", "in about 2 hours", "in about 1 day"])
    expect(estimate).to_have_attribute("title", "Estimated from the workspace's history of up to 4 weeks (10 conversations)")
    expect(page.locator("#thread")).to_contain_text("Where is my parcel?")
    _screenshot(page, "inbox-estimate.png")
    assert page.console_errors == []

    forbidden = page.goto(live_server.url + "/updates")
    assert forbidden.status == 403
    assert [error for error in page.console_errors if "403" not in error] == []


def test_updates_page_dark_scheme_contrast(browser, live_server, state, whatsapp_channel):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    page = _new_page(browser, color_scheme="dark")
    try:
        _sign_in(page, live_server.url, manager.email)
        page.goto(live_server.url + "/updates")
        expect(page.get_by_role("heading", name="New template")).to_be_visible()
        page.get_by_role("button", name="Use sample data").click()
        expect(page.locator("#preview-output")).to_contain_text("Sample data")
        _screenshot(page, "updates-editor-dark.png")

        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        page.context.close()
