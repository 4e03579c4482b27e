"""The proactive update log page in Chromium: a manager filters the log by result and trigger."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inbox.models import Agent, Contact, Role, UpdateTemplate, utcnow
from inbox.proactive.sending import sweep
from inbox.proactive.templates import delete_update_template
from inbox.workflow import Changes, change_conversations
from tests.browser.test_inbox_ui import FIND_LOW_CONTRAST, _sign_in, _whatsapp_from
from tests.conftest import AGENT_PASSWORD
from tests.support.conversations import add_agent
from tests.support.proactive import add_template, settings
from tests.support.whatsapp import config, dispatch, post_status, twilio  # noqa: F401 (config and twilio are fixtures)

pytestmark = pytest.mark.browser


def _sign_in_to_log(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/login?next=/updates/log")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Proactive update log")).to_be_visible()


def test_manager_filters_log(page, live_server, state, config, whatsapp_channel, tmp_path):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    add_template(state, "status_changed", {"to_status": "pending"}, name="Waiting for you")
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    _whatsapp_from(state, config, live_server, "+15551230002", "Heidi", "I need a refund")
    with state.session_factory() as session:
        change_conversations(session, session.get(Agent, manager.id), [1, 2], Changes(status="pending"))
        # Heidi opted out, so her update is skipped with the reason.
        session.get(Contact, 2).opted_out_at = utcnow()
        session.commit()
    sweep(state.session_factory, settings(), utcnow())

    _sign_in_to_log(page, live_server.url, manager.email)
    rows = page.locator("#log-rows tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#log-status")).to_have_text("2 updates shown.")
    page.screenshot(path=str(tmp_path / "updates-log-all.png"), full_page=True)

    page.get_by_label("Result").select_option("skipped")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("opted_out")
    expect(rows.first).to_contain_text("Waiting for you")

    # Keyboard only: the trigger filter, then Enter in the form submits it.
    page.get_by_label("Trigger").select_option("periodic")
    page.get_by_label("Conversation id").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#log-status")).to_have_text("No updates match this filter.")

    page.screenshot(path=str(tmp_path / "updates-log.png"), full_page=True)
    assert page.evaluate(FIND_LOW_CONTRAST) == []
    assert page.console_errors == []


def test_agent_gets_forbidden_page(page, live_server, state, agent):
    page.goto(live_server.url + "/login?next=/updates/log")
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    with page.expect_response(lambda response: response.url.endswith("/updates/log")) as response:
        page.get_by_role("button", name="Sign in").click()

    assert response.value.status == 403


def test_log_shows_delivery_as_thread_does(page, live_server, app, state, config, whatsapp_channel, twilio, tmp_path):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    add_template(state, "status_changed", {"to_status": "pending"}, name="Waiting for you")
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    with state.session_factory() as session:
        change_conversations(session, session.get(Agent, manager.id), [1], Changes(status="pending"))
        session.commit()
    sweep(state.session_factory, settings(), utcnow())
    dispatch(state)
    [created] = twilio.wait_for(1)
    # Twilio reports the update sent; the scheduler has not swept since.
    post_status(app.test_client(), whatsapp_channel, twilio.messages[0]["sid"], "sent")

    _sign_in(page, live_server.url, manager.email)
    page.goto(live_server.url + "/#conversation=1")
    update = page.locator("#thread .message-row").filter(has_text="Automatic update")
    expect(update.locator(".message__status")).to_contain_text("Sent")

    page.goto(live_server.url + "/updates/log")
    row = page.locator("#log-rows tr")
    expect(row).to_have_count(1)
    expect(row.locator("td.result--sent")).to_have_text("sent")
    expect(row.locator("td.log-delivery")).to_have_text("Sent")
    page.screenshot(path=str(tmp_path / "updates-log-sent.png"), full_page=True)

    post_status(app.test_client(), whatsapp_channel, twilio.messages[0]["sid"], "undelivered", error_code="30003")
    page.reload()
    expect(row.locator("td.result--failed")).to_have_text("failed")
    expect(row.locator("td.log-delivery")).to_have_text("Not delivered")
    page.screenshot(path=str(tmp_path / "updates-log-undelivered.png"), full_page=True)
    assert page.evaluate(FIND_LOW_CONTRAST) == []
    assert page.console_errors == []


def test_log_template_filter_and_address(page, live_server, state, config, whatsapp_channel):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    current_id = add_template(state, "status_changed", {"to_status": "pending"}, name="Waiting for you")
    deleted_id = add_template(state, "status_changed", {"to_status": "pending"}, name="Old wording")
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my order?")
    with state.session_factory() as session:
        change_conversations(session, session.get(Agent, manager.id), [1], Changes(status="pending"))
        session.commit()
    sweep(state.session_factory, settings(), utcnow())
    with state.session_factory() as session:
        delete_update_template(session, session.get(UpdateTemplate, deleted_id))
        session.commit()

    _sign_in_to_log(page, live_server.url, manager.email)
    rows = page.locator("#log-rows tr")
    expect(rows).to_have_count(2)
    template = page.locator("#log-filters").get_by_label("Template")
    expect(template.locator("option")).to_have_text(["Any", "Old wording (deleted)", "Waiting for you"])

    assert sorted(rows.locator("td:nth-child(2)").all_inner_texts()) == ["Old wording (deleted)", "Waiting for you"]

    template.select_option(label="Old wording (deleted)")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").nth(1)).to_have_text("Old wording (deleted)")
    expect(rows.first.locator("td").nth(1)).to_have_attribute("title", f"Template {deleted_id}")
    assert page.url.endswith(f"/updates/log?template_id={deleted_id}")

    # Reloading, or opening the address elsewhere, shows the same filter and rows.
    page.reload()
    expect(template).to_have_value(str(deleted_id))
    expect(rows).to_have_count(1)
    page.goto(f"{live_server.url}/updates/log?template_id={current_id}&result=queued")
    expect(template).to_have_value(str(current_id))
    expect(page.get_by_label("Result")).to_have_value("queued")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Waiting for you")

    # Back returns to the filter before.
    page.get_by_label("Result").select_option("")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    assert page.url.endswith(f"/updates/log?template_id={current_id}")
    page.go_back()
    expect(page.get_by_label("Result")).to_have_value("queued")
    assert page.url.endswith("result=queued")

    # A template id the menu does not offer filters the log, which then shows nothing.
    page.goto(f"{live_server.url}/updates/log?template_id=99")
    expect(template).to_have_value("99")
    expect(template.locator("option:checked")).to_have_text("Template 99")
    expect(page.locator("#log-status")).to_have_text("No updates match this filter.")
    assert page.console_errors == []
