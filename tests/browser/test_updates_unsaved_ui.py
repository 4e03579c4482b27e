"""The update template editor in Chromium asks before unsaved edits are thrown away: by a
confirm when another template is picked from the list, and by beforeunload when the manager
leaves the page. It asks nothing when the form holds no edits."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inbox.models import Role
from inbox.proactive.templates import create_update_template
from tests.browser.test_inbox_ui import _sign_in
from tests.support.conversations import add_agent

pytestmark = pytest.mark.browser


def _template(name: str) -> dict:
    return {
        "name": name,
        "trigger": "status_changed",
        "trigger_params": {"to_status": "pending"},
        "conditions": {},
        "email_subject": "Your request {{ reference }}",
        "email_body": "Hello {{ customer_name }}, we are waiting for your reply.",
        "whatsapp_body": "Hi {{ customer_name }}, we are waiting for your reply.",
    }


@pytest.fixture
def updates_page(page, live_server, state, whatsapp_channel):
    with state.session_factory() as session:
        create_update_template(session, None, _template("Awaiting reply"))
        create_update_template(session, None, _template("Back soon"))
        session.commit()
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    _sign_in(page, live_server.url, manager.email)
    page.goto(live_server.url + "/updates")
    expect(page.get_by_role("heading", name="Edit “Awaiting reply”")).to_be_visible()
    page.dialogs = []
    return page


def _open_in_list(page, name: str) -> None:
    page.locator("#template-list").get_by_role("button", name=name).click()


def test_list_switch_without_edits_asks_nothing(updates_page):
    page = updates_page
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.type), dialog.dismiss()))

    _open_in_list(page, "Back soon")

    expect(page.get_by_role("heading", name="Edit “Back soon”")).to_be_visible()
    assert page.dialogs == []


def test_list_switch_with_edits_asks_first(updates_page):
    page = updates_page
    page.get_by_label("Subject").fill("Your request has an update")

    # Cancelling the confirm keeps the form and its edit.
    page.once("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    _open_in_list(page, "Back soon")
    expect(page.get_by_role("heading", name="Edit “Awaiting reply”")).to_be_visible()
    expect(page.get_by_label("Subject")).to_have_value("Your request has an update")
    assert page.dialogs == ["Discard the unsaved changes to “Awaiting reply”?"]

    # Accepting it opens the other template.
    page.once("dialog", lambda dialog: dialog.accept())
    _open_in_list(page, "Back soon")
    expect(page.get_by_role("heading", name="Edit “Back soon”")).to_be_visible()


def test_edit_undone_by_hand_asks_nothing(updates_page):
    page = updates_page
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.type), dialog.dismiss()))
    subject = page.get_by_label("Subject")
    original = subject.input_value()
    subject.fill("Something else")
    subject.fill(original)

    _open_in_list(page, "Back soon")

    expect(page.get_by_role("heading", name="Edit “Back soon”")).to_be_visible()
    assert page.dialogs == []


def test_saved_edit_asks_nothing(updates_page):
    page = updates_page
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.type), dialog.dismiss()))
    page.get_by_label("Subject").fill("Your request has an update")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#save-status")).to_have_text("Saved.")

    _open_in_list(page, "Back soon")

    expect(page.get_by_role("heading", name="Edit “Back soon”")).to_be_visible()
    assert page.dialogs == []


def test_leaving_page_with_edits_asks_first(updates_page, live_server):
    page = updates_page
    page.get_by_label("Subject").fill("Your request has an update")
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.type), dialog.dismiss()))

    page.get_by_role("link", name="Activity log").click()

    page.wait_for_timeout(300)
    assert page.dialogs == ["beforeunload"]
    assert page.url == live_server.url + "/updates"
    expect(page.get_by_label("Subject")).to_have_value("Your request has an update")


def test_leaving_page_without_edits_asks_nothing(updates_page, live_server):
    page = updates_page
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.type), dialog.dismiss()))

    page.get_by_role("link", name="Activity log").click()

    expect(page).to_have_url(live_server.url + "/updates/log")
    assert page.dialogs == []
