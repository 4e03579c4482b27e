"""Unsent drafts in Chromium. The reply box keeps each conversation's draft in the tab's
sessionStorage, so it comes back after a reload and after an ended sign-in. A disabled agent
reads on the sign-in page why they were signed out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from inbox.agents import create_agent, create_api_token
from tests.browser.test_inbox_ui import _conversation, _sign_in, _whatsapp_from
from tests.conftest import AGENT_PASSWORD
from tests.support.conversations import add_agent

pytestmark = pytest.mark.browser

GRACE = "+15551230001"
# Disabling closes the inbox's live connection at once. Its reconnection waits 1 to 3 seconds
# before the server rejects it, and the page then finds its sign-in ended.
SIGNED_OUT_TIMEOUT_MS = 20_000
DISABLED_NOTICE = "This account has been disabled, so you were signed out. Ask an admin if you need access again."


@pytest.fixture
def admin_token(state) -> str:
    with state.session_factory() as session:
        admin = create_agent(session, "root@example.com", "Rita Root", AGENT_PASSWORD, "admin")
        token = create_api_token(session, admin, "tests")
        session.commit()
        return token


@pytest.fixture
def grace(state, config, live_server, whatsapp_channel) -> None:
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")


def _open_grace(page) -> None:
    _conversation(page, "Grace").click()
    expect(page.locator("#thread .message")).to_contain_text(["Where is my order?"])


def _reply_box(page):
    return page.get_by_role("textbox", name=re.compile("Reply|Internal note"))


def _set_active(live_server, admin_token: str, agent_id: int, active: bool) -> None:
    response = requests.post(
        f"{live_server.url}/api/v1/agents/{agent_id}/{'enable' if active else 'disable'}",
        headers={"Authorization": f"Bearer {admin_token}"}, timeout=10,
    )
    response.raise_for_status()


def test_disabled_agent_keeps_draft(page, live_server, agent, admin_token, grace, tmp_path: Path):
    _sign_in(page, live_server.url, agent.email)
    _open_grace(page)
    _reply_box(page).fill("I refunded the order.")

    _set_active(live_server, admin_token, agent.id, False)

    expect(page.get_by_role("heading", name="Sign in to the inbox")).to_be_visible(timeout=SIGNED_OUT_TIMEOUT_MS)
    expect(page.get_by_role("alert")).to_have_text(DISABLED_NOTICE)
    assert re.search(r"/login\?next=%2F%23conversation%3D\d+$", page.url), page.url
    page.screenshot(path=str(tmp_path / "sign-in-disabled.png"))
    # The inbox's last request got 401 before the page left, which Chromium logs; nothing else fails.
    assert [error for error in page.console_errors if "401" not in error] == []

    _set_active(live_server, admin_token, agent.id, True)
    page.get_by_label("Email").fill(agent.email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # Back on the same conversation, with the draft in the box.
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    expect(page.locator("#thread .message")).to_contain_text(["Where is my order?"])
    expect(_reply_box(page)).to_have_value("I refunded the order.")

    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#thread .message--outbound")).to_contain_text("I refunded the order.")
    expect(_reply_box(page)).to_have_value("")
    page.reload()
    _open_grace(page)
    expect(_reply_box(page)).to_have_value("")
    assert [error for error in page.console_errors if "401" not in error] == []


def test_drafts_survive_reload_per_conversation(page, state, config, live_server, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Where is my order?")
    _whatsapp_from(state, config, live_server, "+15551230002", "Heidi", "Can I pay by invoice?")
    _sign_in(page, live_server.url, agent.email)
    _open_grace(page)
    _reply_box(page).fill("Your order left this morning.")
    _conversation(page, "Heidi").click()
    expect(page.locator("#thread .message")).to_contain_text(["Can I pay by invoice?"])
    # A note stays a note: restored as a reply, it would go to the customer.
    page.get_by_role("button", name="Note", exact=True).click()
    _reply_box(page).fill("Check the credit limit first.")

    page.reload()
    expect(page.locator("#live-indicator")).to_contain_text("Live")

    expect(page.locator("#thread .message")).to_contain_text(["Can I pay by invoice?"])
    expect(page.get_by_role("button", name="Note", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("textbox", name="Internal note")).to_have_value("Check the credit limit first.")
    _open_grace(page)
    expect(page.get_by_role("button", name="Reply", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("textbox", name="Reply by WhatsApp")).to_have_value("Your order left this morning.")

    # Emptying the box drops the draft.
    _reply_box(page).fill("")
    page.reload()
    _open_grace(page)
    expect(_reply_box(page)).to_have_value("")
    assert page.console_errors == []


def test_restored_draft_keeps_stale_check(page, state, config, live_server, agent, grace):
    _sign_in(page, live_server.url, agent.email)
    _open_grace(page)
    _reply_box(page).fill("It left our warehouse this morning.")
    inbox_url = page.url
    page.goto("about:blank")

    # The customer writes while the agent is away from the inbox.
    _whatsapp_from(state, config, live_server, GRACE, "Grace", "Please cancel it, I ordered twice.")
    page.goto(inbox_url)
    expect(page.locator("#thread")).to_contain_text("Please cancel it")
    expect(_reply_box(page)).to_have_value("It left our warehouse this morning.")
    page.get_by_role("button", name="Send", exact=True).click()

    expect(page.locator(".stale-warning")).to_contain_text("Please cancel it, I ordered twice.")
    expect(_reply_box(page)).to_have_value("It left our warehouse this morning.")
    # The app handles the 409 response, but Chromium logs the failed request.
    assert [error for error in page.console_errors if "409" not in error] == []


def test_sign_out_forgets_drafts(page, state, live_server, agent, grace):
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    _sign_in(page, live_server.url, agent.email)
    _open_grace(page)
    _reply_box(page).fill("A draft nobody else should see.")
    stored = page.evaluate("Object.keys(sessionStorage).filter((key) => key.startsWith('switchboard.draft.'))")
    assert len(stored) == 1

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Sign in to the inbox")).to_be_visible()
    assert page.evaluate("Object.keys(sessionStorage).filter((key) => key.startsWith('switchboard.draft.'))") == []

    _sign_in(page, live_server.url, bob.email)
    _open_grace(page)
    expect(_reply_box(page)).to_have_value("")
    assert page.console_errors == []
