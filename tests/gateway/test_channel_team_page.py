"""The default-team form on the channels page: what it shows, saves, audits and rejects."""

from __future__ import annotations

import re

from sqlalchemy import select

from inbox.models import AuditEvent, Channel
from inbox.teams import create_team
from tests.gateway.test_people_pages import _sign_in_as


def _add_team(state, name: str, round_robin: bool = True) -> int:
    with state.session_factory() as session:
        team = create_team(session, name)
        team.round_robin = round_robin
        session.commit()
        return team.id


def _default_team_id(state, channel_id: int) -> int | None:
    with state.session_factory() as session:
        return session.get(Channel, channel_id).default_team_id


def _selected_option(html: str, channel_id: int) -> str:
    select_html = re.search(rf'id="channel-{channel_id}-team-select".*?</select>', html, re.S)
    assert select_html is not None, "the page has no default team select for the channel"
    selected = re.search(r'<option value="(\d*)" selected>', select_html.group(0))
    assert selected is not None, "no option is selected"
    return selected.group(1)


def test_page_lists_teams_in_a_labelled_select(app, state, whatsapp_channel):
    billing = _add_team(state, "Billing")
    _add_team(state, "Returns", round_robin=False)
    client, _, _ = _sign_in_as(app, state, "admin")

    html = client.get("/channels").get_data(as_text=True)

    assert f'<label class="field__label" for="channel-{whatsapp_channel.id}-team-select">Default team' in html
    assert '<option value="" selected>None</option>' in html
    assert re.search(rf'<option value="{billing}">\s*Billing\s*</option>', html)
    assert "Returns (round robin off)" in html


def test_saving_a_team_confirms(app, state, whatsapp_channel):
    billing = _add_team(state, "Billing")
    client, csrf, _ = _sign_in_as(app, state, "admin")

    saved = client.post(f"/channels/{whatsapp_channel.id}/default-team",
                        data={"csrf_token": csrf, "default_team_id": str(billing)})
    page = client.get("/channels").get_data(as_text=True)
    reloaded = client.get("/channels").get_data(as_text=True)

    assert saved.status_code == 303
    assert saved.headers["Location"].endswith(f"/channels#channel-{whatsapp_channel.id}-team")
    assert _default_team_id(state, whatsapp_channel.id) == billing
    assert "Saved: new conversations on WhatsApp support go to Billing&#39;s queue" in page
    assert _selected_option(page, whatsapp_channel.id) == str(billing)
    assert "Saved:" not in reloaded


def test_saving_a_team_writes_audit_row(app, state, whatsapp_channel):
    billing = _add_team(state, "Billing")
    client, csrf, admin = _sign_in_as(app, state, "admin")

    client.post(f"/channels/{whatsapp_channel.id}/default-team", data={"csrf_token": csrf, "default_team_id": str(billing)})

    with state.session_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "channel.changed")).one()
        assert event.actor_id == admin.id
        assert event.target_id == whatsapp_channel.id


def test_choosing_none_clears_team(app, state, whatsapp_channel):
    billing = _add_team(state, "Billing", round_robin=False)
    client, csrf, _ = _sign_in_as(app, state, "admin")
    client.post(f"/channels/{whatsapp_channel.id}/default-team", data={"csrf_token": csrf, "default_team_id": str(billing)})
    off = client.get("/channels").get_data(as_text=True)

    cleared = client.post(f"/channels/{whatsapp_channel.id}/default-team", data={"csrf_token": csrf, "default_team_id": ""})
    page = client.get("/channels").get_data(as_text=True)

    assert "Round robin is off for Billing, so they wait there unassigned." in off
    assert cleared.status_code == 303
    assert _default_team_id(state, whatsapp_channel.id) is None
    assert "no longer go to a team" in page
    assert _selected_option(page, whatsapp_channel.id) == ""


def test_unknown_team_gets_error_beside_select(app, state, whatsapp_channel):
    client, csrf, _ = _sign_in_as(app, state, "admin")

    missing = client.post(f"/channels/{whatsapp_channel.id}/default-team",
                          data={"csrf_token": csrf, "default_team_id": "999"})
    garbage = client.post(f"/channels/{whatsapp_channel.id}/default-team",
                          data={"csrf_token": csrf, "default_team_id": "billing"})
    superscript = client.post(f"/channels/{whatsapp_channel.id}/default-team",
                              data={"csrf_token": csrf, "default_team_id": "\u00b2"})

    missing_html = missing.get_data(as_text=True)
    assert missing.status_code == 404
    assert f'id="channel-{whatsapp_channel.id}-team-error">Not saved: Team 999 not found.' in missing_html
    assert 'aria-invalid="true"' in missing_html
    assert garbage.status_code == 400
    assert "Invalid team id &#39;billing&#39;. Pick a team from the list." in garbage.get_data(as_text=True)
    assert superscript.status_code == 400
    assert _default_team_id(state, whatsapp_channel.id) is None


def test_unknown_channel_is_not_found(app, state):
    billing = _add_team(state, "Billing")
    client, csrf, _ = _sign_in_as(app, state, "admin")

    response = client.post("/channels/999/default-team", data={"csrf_token": csrf, "default_team_id": str(billing)})

    assert response.status_code == 404
    assert "Channel 999 not found." in response.get_data(as_text=True)


def test_form_needs_csrf(app, state, whatsapp_channel):
    billing = _add_team(state, "Billing")
    client, _, _ = _sign_in_as(app, state, "admin")

    response = client.post(f"/channels/{whatsapp_channel.id}/default-team", data={"default_team_id": str(billing)})

    assert response.status_code in (400, 403)
    assert _default_team_id(state, whatsapp_channel.id) is None


def test_agent_cannot_set_team(app, state, whatsapp_channel):
    billing = _add_team(state, "Billing")
    client, csrf, _ = _sign_in_as(app, state, "agent")

    response = client.post(f"/channels/{whatsapp_channel.id}/default-team",
                           data={"csrf_token": csrf, "default_team_id": str(billing)})

    assert response.status_code == 403
    assert _default_team_id(state, whatsapp_channel.id) is None
