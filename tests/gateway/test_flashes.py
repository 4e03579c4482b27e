"""Notices after a form: every page a form redirects to shows its notice once, in a status region."""

from __future__ import annotations

import inspect
import re

from markupsafe import escape
from sqlalchemy import select

from inbox.agents import create_api_token, set_temporary_password
from inbox.models import Agent, AgentSession, ApiToken, Team
from inbox.teams import create_team
from tests.conftest import AGENT_PASSWORD, TWILIO_ACCOUNT_SID, login
from tests.gateway.test_people_pages import _sign_in_as

NEW_PASSWORD = "a fresh password 42"
TEMPORARY_PASSWORD = "temporary pass 4"

# Every view that flashes a notice, with the path it redirects to. A new one must be added
# here and tested below, so that its notice is known to show.
FLASHING_VIEWS = {
    "admin_pages.change_password_page": ("/", "/account"),
    "admin_pages.revoke_token_page": ("/account",),
    "admin_pages.end_sign_in_page": ("/account",),
    "admin_pages.end_other_sign_ins_page": ("/account",),
    "admin_pages.create_agent_page": ("/admin/agents",),
    "admin_pages.change_role_page": ("/admin/agents",),
    "admin_pages.set_active_page": ("/admin/agents",),
    "admin_pages.password_reset_page": ("/admin/agents",),
    "admin_pages.create_team_page": ("/admin/teams",),
    "admin_pages.update_team_page": ("/admin/teams",),
    "admin_pages.capacity_page": ("/admin/teams",),
    "channel_settings.save_default_team": ("/channels",),
    "channel_settings.save_settings": ("/channels",),
    "channel_settings.save_name": ("/channels",),
}


def _status_texts(html: str) -> list[str]:
    """Return the text of every element with role="status" that the page has at load."""
    texts = []
    for match in re.finditer(r'<(\w+)[^>]*\brole="status"[^>]*>(.*?)</\1>', html, re.S):
        texts.append(" ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split()))
    return texts


def _lands_with_notice(client, response, notice: str, path: str) -> str:
    """Follow the form's redirect; check the page shows ``notice`` once and return the page."""
    assert response.status_code == 303, response.data
    location = response.headers["Location"]
    assert location.split("#")[0] == path
    page = client.get(location).get_data(as_text=True)
    again = client.get(location).get_data(as_text=True)

    assert any(str(escape(notice)) in text for text in _status_texts(page)), _status_texts(page)
    assert str(escape(notice)) not in again
    return page


def test_every_flashing_view_is_listed(app):
    flashing = {
        endpoint for endpoint, view in app.view_functions.items()
        if "flash" in inspect.unwrap(view).__code__.co_names
    }
    assert flashing == set(FLASHING_VIEWS)


def test_forced_password_change_notice_shows_on_inbox(app, state, agent):
    with state.session_factory() as session:
        set_temporary_password(session, None, agent.id, TEMPORARY_PASSWORD)
        session.commit()
    browser = app.test_client()
    csrf = login(browser, agent.email, TEMPORARY_PASSWORD)

    done = browser.post("/account/password", data={
        "csrf_token": csrf, "current_password": TEMPORARY_PASSWORD, "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
    })
    inbox = _lands_with_notice(browser, done, "Your password is changed. Your other sign-ins have ended.", "/")
    account = browser.get("/account").get_data(as_text=True)

    assert 'id="flash-messages" role="status"' in inbox
    assert '<div class="app" id="app"' in inbox
    assert "Your password is changed" not in account


def test_inbox_without_notices_has_no_notice_region(app, agent):
    browser = app.test_client()
    login(browser)

    inbox = browser.get("/").get_data(as_text=True)

    assert 'id="flash-messages"' not in inbox


def test_inbox_notice_is_escaped(app, agent):
    browser = app.test_client()
    login(browser)
    with browser.session_transaction() as flask_session:
        flask_session["_flashes"] = [("notice", "<script>alert(1)</script>"), ("error", "Second & last")]

    inbox = browser.get("/").get_data(as_text=True)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in inbox
    assert "<script>alert(1)" not in inbox
    assert '<p class="flash flash--error">Second &amp; last</p>' in inbox


def test_own_password_change_notice_shows_on_account(app, agent):
    browser = app.test_client()
    csrf = login(browser)

    done = browser.post("/account/password", data={
        "csrf_token": csrf, "current_password": AGENT_PASSWORD, "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
    })

    _lands_with_notice(browser, done, "Your password is changed. Your other sign-ins have ended.", "/account")


def test_account_forms_show_notices(app, state, agent):
    browser = app.test_client()
    other = app.test_client()
    third = app.test_client()
    csrf = login(browser)
    login(other)
    login(third)
    with state.session_factory() as session:
        create_api_token(session, session.get(Agent, agent.id), "zapier")
        session.commit()
        token_id = session.scalar(select(ApiToken.id))
        other_sign_in = session.scalars(select(AgentSession.id).order_by(AgentSession.id)).all()[1]

    revoked = browser.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    _lands_with_notice(browser, revoked, 'The token "zapier" is revoked.', "/account")
    ended = browser.post(f"/account/sessions/{other_sign_in}/end", data={"csrf_token": csrf})
    _lands_with_notice(browser, ended, "The sign-in has ended.", "/account")
    ended_others = browser.post("/account/sessions/end-others", data={"csrf_token": csrf})
    _lands_with_notice(browser, ended_others, "Your other sign-ins have ended.", "/account")


def test_agent_forms_show_notices(app, state, agent):
    client, csrf, _ = _sign_in_as(app, state, "admin")

    created = client.post("/admin/agents", data={
        "csrf_token": csrf, "email": "bo@example.com", "name": "Bo", "role": "agent", "password": TEMPORARY_PASSWORD,
    })
    _lands_with_notice(client, created, "bo@example.com is created.", "/admin/agents")
    role = client.post(f"/admin/agents/{agent.id}/role", data={"csrf_token": csrf, "role": "manager"})
    _lands_with_notice(client, role, "ada@example.com is now manager.", "/admin/agents")
    disabled = client.post(f"/admin/agents/{agent.id}/active", data={"csrf_token": csrf, "active": "false"})
    _lands_with_notice(client, disabled, "ada@example.com is disabled.", "/admin/agents")
    reset = client.post(f"/admin/agents/{agent.id}/password-reset", data={
        "csrf_token": csrf, "method": "temporary", "temporary_password": TEMPORARY_PASSWORD,
    })
    _lands_with_notice(client, reset, "ada@example.com has a temporary password", "/admin/agents")


def test_team_forms_show_notices(app, state, agent):
    client, csrf, _ = _sign_in_as(app, state, "manager")

    created = client.post("/admin/teams", data={"csrf_token": csrf, "name": "Returns", "agent_ids": [str(agent.id)]})
    _lands_with_notice(client, created, "The team Returns is created.", "/admin/teams")
    with state.session_factory() as session:
        team_id = session.scalar(select(Team.id))
    saved = client.post(f"/admin/teams/{team_id}", data={"csrf_token": csrf, "name": "Refunds", "agent_ids": [str(agent.id)]})
    _lands_with_notice(client, saved, "The team Refunds is saved.", "/admin/teams")
    capacity = client.post(f"/admin/agents/{agent.id}/capacity", data={"csrf_token": csrf, "max_open_conversations": "4"})
    _lands_with_notice(client, capacity, "Ada Agent now gets at most 4 open conversations", "/admin/teams")


def test_channel_team_form_shows_notice(app, state, whatsapp_channel):
    with state.session_factory() as session:
        team = create_team(session, "Billing")
        session.commit()
        team_id = team.id
    client, csrf, _ = _sign_in_as(app, state, "admin")

    saved = client.post(f"/channels/{whatsapp_channel.id}/default-team",
                        data={"csrf_token": csrf, "default_team_id": str(team_id)})

    _lands_with_notice(client, saved, "Saved: new conversations on WhatsApp support go to Billing's queue", "/channels")


def test_channel_rename_shows_notice(app, state, whatsapp_channel):
    client, csrf, _ = _sign_in_as(app, state, "admin")

    renamed = client.post(f"/channels/{whatsapp_channel.id}/name", data={"csrf_token": csrf, "name": "Orders"})

    _lands_with_notice(client, renamed, "Saved: the channel WhatsApp support is now called Orders.", "/channels")


def test_channel_settings_form_shows_notice(app, state, whatsapp_channel):
    client, csrf, _ = _sign_in_as(app, state, "admin")

    form = {"csrf_token": csrf, "address": whatsapp_channel.address, "account_sid": TWILIO_ACCOUNT_SID}
    unchanged = client.post(f"/channels/{whatsapp_channel.id}/settings", data=form)

    _lands_with_notice(
        client, unchanged, "Nothing changed: the settings of WhatsApp support are as they were.", "/channels"
    )
