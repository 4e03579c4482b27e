"""The update template editor in Chromium: where the placeholder buttons insert, the
preview's reason when a conversation would get nothing, and fields that stay in view above
the sticky Save bar."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inbox.models import Conversation, Role
from tests.browser.test_inbox_ui import _new_page, _sign_in, _whatsapp_from
from tests.browser.test_updates_ui import _conversation_id, _screenshot
from tests.gateway.test_proactive_api import _zone_at_local_hour
from tests.support.conversations import add_agent

pytestmark = pytest.mark.browser

# Where the focused control of the form is, and whether the sticky bars cover any of it.
FIND_HIDDEN_FOCUS = """() => {
  const focused = document.activeElement;
  const actions = document.querySelector('.editor__actions');
  if (!focused.closest('.editor__fields') || actions.contains(focused)) return null;
  const box = focused.getBoundingClientRect();
  const barTop = actions.getBoundingClientRect().top;
  const headerBottom = document.querySelector('.topbar').getBoundingClientRect().bottom;
  const label = focused.labels?.[0]?.textContent ?? focused.getAttribute('aria-label') ?? focused.textContent;
  return { label, top: box.top, bottom: box.bottom, hidden: box.bottom > barTop || box.top < headerBottom };
}"""

# The selection of the focused text field, as [start, end].
SELECTION = "() => [document.activeElement.selectionStart, document.activeElement.selectionEnd]"


def _open_new_template(page, live_server, state) -> None:
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    _sign_in(page, live_server.url, manager.email)
    page.goto(live_server.url + "/updates")
    expect(page.get_by_role("heading", name="New template")).to_be_visible()


def _tab_to(page, name: str, limit: int = 20) -> None:
    """Press Tab until the control named ``name`` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.getAttribute('aria-label')") == name:
            return
    raise AssertionError(f"{limit} presses of Tab did not reach {name!r}")


def test_placeholder_goes_into_last_edited_field(page, live_server, state, whatsapp_channel):
    _open_new_template(page, live_server, state)
    subject = page.get_by_label("Subject")
    email_body = page.get_by_label("Body", exact=True)
    whatsapp_body = page.get_by_label("Body, sent inside the 24-hour window")
    subject.click()
    page.keyboard.type("Update on ")
    email_body.click()
    page.keyboard.type("Hello ")

    # The Tab path to the placeholders passes the WhatsApp body, which must not take them.
    page.keyboard.press("Tab")
    expect(whatsapp_body).to_be_focused()
    _tab_to(page, "Insert customer_name")
    page.keyboard.press("Enter")
    expect(email_body).to_have_value("Hello {{ customer_name }}")
    expect(whatsapp_body).to_have_value("")
    # The focus returns to the body, with the caret after the placeholder.
    expect(email_body).to_be_focused()
    end = len("Hello {{ customer_name }}")
    assert page.evaluate(SELECTION) == [end, end]

    # Shift+Tab into the subject selects its text, but the last edited field is still the body.
    page.keyboard.press("Shift+Tab")
    expect(subject).to_be_focused()
    assert page.evaluate(SELECTION) == [0, len("Update on ")]
    page.get_by_role("button", name="Insert reference").click()
    expect(subject).to_have_value("Update on ")
    expect(email_body).to_have_value("Hello {{ customer_name }}{{ reference }}")

    # Arrow keys place the caret, which makes the subject the field to insert into.
    subject.focus()
    page.keyboard.press("End")
    page.get_by_role("button", name="Insert reference").click()
    expect(subject).to_have_value("Update on {{ reference }}")
    expect(subject).to_be_focused()

    # A selection that only came from tabbing back in stays, and the placeholder goes at its end.
    page.keyboard.press("Tab")
    expect(email_body).to_be_focused()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(SELECTION) == [0, len("Update on {{ reference }}")]
    page.get_by_role("button", name="Insert status").click()
    expect(subject).to_have_value("Update on {{ reference }}{{ status }}")

    # A selection made with Shift and the arrow keys is replaced, as editors do.
    page.keyboard.press("Home")
    for _ in range(len("Update")):
        page.keyboard.press("Shift+ArrowRight")
    page.get_by_role("button", name="Insert customer_name").click()
    expect(subject).to_have_value("{{ customer_name }} on {{ reference }}{{ status }}")

    # A click places the caret too, also in an empty field.
    whatsapp_body.click()
    page.get_by_role("button", name="Insert customer_name").click()
    expect(whatsapp_body).to_have_value("{{ customer_name }}")
    expect(email_body).to_have_value("Hello {{ customer_name }}{{ reference }}")
    assert page.console_errors == []


def test_placeholder_target_survives_save(page, live_server, state, whatsapp_channel):
    _open_new_template(page, live_server, state)
    page.get_by_label("Name", exact=True).fill("Still on it")
    page.get_by_label("Subject").fill("Update on {{ reference }}")
    page.get_by_label("Body", exact=True).fill("Hello ")

    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-status")).to_have_text("Saved.")
    # The save rebuilt the form, and the placeholder still goes into the body, at its caret.
    page.get_by_role("button", name="Insert customer_name").click()

    expect(page.get_by_label("Body", exact=True)).to_have_value("Hello {{ customer_name }}")
    expect(page.get_by_label("Body", exact=True)).to_be_focused()
    # The insertion is an edit, so "Saved." is no longer true.
    expect(page.locator("#save-status")).to_have_text("")
    assert page.console_errors == []


def test_preview_names_why_nothing_is_sent(page, live_server, state, config, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace Hopper", "Where is my parcel?")
    conversation_id = _conversation_id(state)
    _open_new_template(page, live_server, state)
    page.get_by_label("Subject").fill("Update on {{ reference }}")
    page.get_by_label("Body", exact=True).fill("Hello {{ customer_name }}, we are on it.")

    # An email-only template, and a customer who wrote minutes ago on WhatsApp.
    page.get_by_label("Conversation id or reference").fill(f"#{conversation_id}")
    page.get_by_role("button", name="Preview", exact=True).click()
    output = page.locator("#preview-output")
    expect(output).to_contain_text("This conversation meets the conditions.")
    nothing = page.locator("#preview-nothing")
    expect(nothing).to_contain_text("The template has no WhatsApp body and no approved template (Content SID).")
    expect(nothing).not_to_contain_text("24 hours")
    _screenshot(page, "updates-editor-preview-nothing.png")

    # Conditions that leave the conversation out come first, as they do when sending.
    page.get_by_role("group", name="Channels").get_by_label("Email").check()
    page.get_by_role("button", name="Preview", exact=True).click()
    expect(output).to_contain_text("This conversation does not meet the conditions")
    expect(nothing).to_contain_text("The conversation does not meet the template's conditions.")
    assert page.console_errors == []


def test_preview_says_quiet_hours_hold_the_update(page, live_server, state, config, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace Hopper", "Where is my parcel?")
    conversation_id = _conversation_id(state)
    night_zone = _zone_at_local_hour(2)
    with state.session_factory() as session:
        session.get(Conversation, conversation_id).contact.time_zone = night_zone
        session.commit()
    _open_new_template(page, live_server, state)
    page.get_by_label("Body, sent inside the 24-hour window").fill("Hello {{ customer_name }}, we are on it.")

    page.get_by_label("Conversation id or reference").fill(f"#{conversation_id}")
    page.get_by_role("button", name="Preview", exact=True).click()

    expect(page.locator("#preview-whatsapp")).to_have_text("Hello Grace Hopper, we are on it.")
    expect(page.locator("#preview-deferred")).to_contain_text(f"Held until 08:00 ({night_zone})")
    assert page.console_errors == []


@pytest.mark.parametrize("size", [{"width": 1400, "height": 700}, {"width": 1000, "height": 600}])
def test_focused_field_clears_sticky_bars(browser, live_server, state, whatsapp_channel, size):
    page = _new_page(browser)
    try:
        page.set_viewport_size(size)
        _open_new_template(page, live_server, state)
        page.get_by_label("Name", exact=True).fill("Still on it")
        page.get_by_label("Subject").fill("Update on {{ reference }}")
        page.get_by_label("Body", exact=True).fill("Hello {{ customer_name }},\n\nwe are on it.")
        page.get_by_role("button", name="Save").click()
        # A saved template's bar has Save, Enable and Delete.
        expect(page.get_by_role("button", name="Delete")).to_be_visible()

        # Forward from the name to the bar, then back, so both sticky bars are passed.
        page.get_by_label("Name", exact=True).focus()
        seen = []
        for key in ["Tab"] * 60 + ["Shift+Tab"] * 60:
            page.keyboard.press(key)
            focus = page.evaluate(FIND_HIDDEN_FOCUS)
            if focus is not None:
                seen.append(focus)
        _screenshot(page, "updates-editor-focus.png")

        labels = {focus["label"] for focus in seen}
        assert {"Pending", "Body", "Approved template (Content SID), sent outside the window"} <= labels
        assert [focus for focus in seen if focus["hidden"]] == []
        assert page.console_errors == []
    finally:
        page.context.close()


def test_invalid_preview_points_to_listed_problems(page, live_server, state, whatsapp_channel):
    _open_new_template(page, live_server, state)
    page.get_by_label("Body, sent inside the 24-hour window").fill("Hi {{ customer_nme }}")
    page.get_by_role("button", name="Use sample data").click()

    # The problem is listed once, with the field's name, at the top of the form.
    summary = page.get_by_role("alert").filter(has_text="The preview failed")
    expect(summary).to_contain_text("WhatsApp body, line 1: unknown placeholder 'customer_nme'")
    # The preview beside it pointed to the same problem under the API's field key.
    output = page.locator("#preview-output")
    expect(output).to_have_text("No preview: fix the problems listed at the top of the form.")
    expect(output).not_to_contain_text("whatsapp_body")
