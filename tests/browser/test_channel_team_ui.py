"""The channels page in Chromium: an admin sets a channel's default team, clears it from the
keyboard, and sees why a save failed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inbox.models import Channel, Team
from inbox.teams import create_team
from tests.browser.test_people_ui import _check_page, _screenshot, _sign_in, admin  # noqa: F401 - fixture
from tests.conftest import AGENT_PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def returns_team(state, admin):  # noqa: F811 - the imported fixture
    with state.session_factory() as session:
        team = create_team(session, "Returns", [admin.id])
        team.round_robin = False
        session.commit()
        return team.id


def _default_team_name(state, channel_id: int) -> str | None:
    with state.session_factory() as session:
        team = session.get(Channel, channel_id).default_team
        return team.name if team else None


def test_admin_sets_and_clears_default_team(page, live_server, state, admin, returns_team, whatsapp_channel):  # noqa: F811
    _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    page.goto(live_server.url + "/channels")
    card = page.get_by_role("region", name="WhatsApp support")
    select = card.get_by_label("Default team")
    expect(select).to_have_value("")

    # Pick a team with the mouse and save.
    select.select_option(label="Billing")
    card.get_by_role("button", name="Save default team").click()
    notice = page.get_by_role("region", name="WhatsApp support").get_by_role("status")
    expect(notice).to_contain_text("new conversations on WhatsApp support go to Billing's queue")
    expect(notice).to_contain_text("assigned round robin")
    expect(page.get_by_role("region", name="WhatsApp support").get_by_label("Default team")).to_have_value(
        str(_team_id(state, "Billing"))
    )
    assert _default_team_name(state, whatsapp_channel.id) == "Billing"
    _screenshot(page, "channels-default-team-saved")
    _check_page(page)

    # Back to None with the keyboard only: the first option, then Tab to the button and Enter.
    select = page.get_by_role("region", name="WhatsApp support").get_by_label("Default team")
    select.focus()
    page.keyboard.press("Home")
    expect(select).to_have_value("")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Save default team")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("no longer go to a team")
    assert _default_team_name(state, whatsapp_channel.id) is None
    _check_page(page)


def test_failed_save_shows_error_beside_select(page, live_server, state, admin, returns_team, whatsapp_channel):  # noqa: F811
    _sign_in(page, live_server.url, admin.email, AGENT_PASSWORD)
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    page.goto(live_server.url + "/channels")
    card = page.get_by_role("region", name="WhatsApp support")
    expect(card.get_by_label("Default team").locator("option")).to_have_text(
        ["None", "Billing", "Returns (round robin off)"]
    )

    # A team that no longer exists by the time the form arrives, as when another tab removed it.
    card.locator("option", has_text="Returns").evaluate("(option) => { option.value = '999'; }")
    card.get_by_label("Default team").select_option(label="Returns (round robin off)")
    card.get_by_role("button", name="Save default team").click()

    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Not saved: Team 999 not found.")
    expect(page.get_by_label("Default team")).to_have_attribute("aria-invalid", "true")
    assert _default_team_name(state, whatsapp_channel.id) is None
    _screenshot(page, "channels-default-team-error")
    # The page comes back with the error's status, which Chromium logs; nothing else may be logged.
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 404 (NOT FOUND)"]


def _team_id(state, name: str) -> int:
    with state.session_factory() as session:
        return session.scalars(select(Team.id).where(Team.name == name)).one()
