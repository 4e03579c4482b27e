"""People and access through the JSON API: agent accounts, one's own account, sign-in limits, audit."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from inbox.agents import create_agent, create_api_token
from inbox.assignment import OnlineAgents, choose_agent, use_online_agents
from inbox.models import Agent, AgentSession, ApiToken, AuditEvent, PasswordReset, utcnow
from inbox.teams import create_team
from tests.conftest import AGENT_PASSWORD, login

NEW_PASSWORD = "a fresh password 42"


def _make(state, email: str, role: str, name: str | None = None) -> tuple[Agent, str]:
    with state.session_factory() as session:
        created = create_agent(session, email, name or email.split("@")[0].title(), AGENT_PASSWORD, role)
        token = create_api_token(session, created, "tests")
        session.commit()
        return created, token


@pytest.fixture
def admin(state):
    return _make(state, "root@example.com", "admin", "Root Admin")


@pytest.fixture
def manager(state):
    return _make(state, "max@example.com", "manager", "Max Manager")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _audit_rows(state) -> list[AuditEvent]:
    with state.session_factory() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def _agent_row(state, agent_id: int) -> Agent:
    with state.session_factory() as session:
        return session.get(Agent, agent_id)


# ---- Agent accounts ---------------------------------------------------------------------------


def test_admin_creates_agent_with_temporary_password(app, state, admin):
    _, token = admin
    response = app.test_client().post(
        "/api/v1/agents", json={"email": "Bea@Example.com", "name": "Bea", "role": "manager", "password": "temporary pass 1"},
        headers=_bearer(token),
    )

    assert response.status_code == 201
    assert response.json["email"] == "bea@example.com"
    assert response.json["role"] == "manager"
    assert response.json["must_change_password"] is True
    assert response.json["password_reset"] is None
    [row] = _audit_rows(state)
    assert row.action == "agent.created"
    assert row.actor_label == "root@example.com"
    assert row.target_label == "bea@example.com"
    assert "temporary pass 1" not in json.dumps(row.details)


def test_agent_without_password_gets_reset_link(app, state, admin):
    _, token = admin
    response = app.test_client().post(
        "/api/v1/agents", json={"email": "cy@example.com", "name": "Cy"}, headers=_bearer(token)
    )
    link = response.json["password_reset"]["reset_url"]
    path = link.removeprefix("http://localhost")

    browser = app.test_client()
    form = browser.get(path)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.data.decode()).group(1)
    mismatch = browser.post(path, data={"csrf_token": csrf, "new_password": NEW_PASSWORD, "confirm_password": "other"})
    done = browser.post(path, data={"csrf_token": csrf, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    again = browser.get(path)

    assert response.status_code == 201
    assert link.startswith("http://localhost/reset-password/")
    assert form.status_code == 200
    assert mismatch.status_code == 400
    assert done.status_code == 200
    assert b"Your password is set" in done.data
    assert again.status_code == 404
    login(app.test_client(), "cy@example.com", NEW_PASSWORD)
    actions = [row.action for row in _audit_rows(state)]
    assert actions == ["agent.created", "agent.password_reset", "agent.password_changed"]
    with state.session_factory() as session:
        stored = session.scalar(select(PasswordReset))
        assert stored.token_hash not in link
        assert stored.used_at is not None


def test_reset_link_expires(app, state, admin):
    _, token = admin
    response = app.test_client().post("/api/v1/agents", json={"email": "d@example.com", "name": "D"}, headers=_bearer(token))
    path = response.json["password_reset"]["reset_url"].removeprefix("http://localhost")
    with state.session_factory() as session:
        session.scalar(select(PasswordReset)).expires_at = utcnow() - timedelta(seconds=1)
        session.commit()

    assert app.test_client().get(path).status_code == 404


def test_create_agent_rejects_bad_input(app, admin, agent):
    _, token = admin
    client = app.test_client()

    duplicate = client.post("/api/v1/agents", json={"email": agent.email, "name": "X", "password": "long enough 1"}, headers=_bearer(token))
    bad_email = client.post("/api/v1/agents", json={"email": "nope", "name": "X", "password": "long enough 1"}, headers=_bearer(token))
    bad_role = client.post("/api/v1/agents", json={"email": "x@example.com", "name": "X", "role": "root", "password": "long enough 1"}, headers=_bearer(token))
    short = client.post("/api/v1/agents", json={"email": "x@example.com", "name": "X", "password": "short"}, headers=_bearer(token))
    not_a_string = client.post("/api/v1/agents", json={"email": 5, "name": "X"}, headers=_bearer(token))
    not_json = client.post("/api/v1/agents", data="x", headers=_bearer(token))

    assert duplicate.status_code == 409
    assert bad_email.json["error"]["field"] == "email"
    assert bad_role.json["error"]["field"] == "role"
    assert short.json["error"]["field"] == "password"
    assert not_a_string.status_code == 400
    assert not_json.status_code == 400


def test_accounts_list_includes_disabled_and_last_seen(app, state, admin, agent):
    _, token = admin
    client = app.test_client()
    client.post(f"/api/v1/agents/{agent.id}/disable", headers=_bearer(token))

    items = client.get("/api/v1/agents/accounts", headers=_bearer(token)).json["items"]

    by_email = {item["email"]: item for item in items}
    assert by_email["ada@example.com"]["active"] is False
    assert by_email["root@example.com"]["active"] is True
    assert by_email["root@example.com"]["last_seen_at"] is not None
    assert by_email["ada@example.com"]["last_seen_at"] is None


def test_role_change_is_logged(app, state, admin, agent):
    _, token = admin
    response = app.test_client().put(f"/api/v1/agents/{agent.id}/role", json={"role": "manager"}, headers=_bearer(token))

    assert response.status_code == 200
    assert response.json["role"] == "manager"
    [row] = _audit_rows(state)
    assert (row.action, row.details) == ("agent.role_changed", {"from": "agent", "to": "manager"})


def test_last_admin_keeps_the_role(app, admin):
    root, token = admin
    client = app.test_client()

    demoted = client.put(f"/api/v1/agents/{root.id}/role", json={"role": "agent"}, headers=_bearer(token))
    unknown_role = client.put(f"/api/v1/agents/{root.id}/role", json={"role": "owner"}, headers=_bearer(token))
    missing = client.put("/api/v1/agents/999/role", json={"role": "agent"}, headers=_bearer(token))

    assert demoted.status_code == 409
    assert demoted.json["error"]["code"] == "last_admin"
    assert unknown_role.status_code == 400
    assert missing.status_code == 404


def test_admin_cannot_disable_themselves(app, admin):
    root, token = admin
    response = app.test_client().post(f"/api/v1/agents/{root.id}/disable", headers=_bearer(token))
    assert response.status_code == 409
    assert response.json["error"]["code"] == "own_account"


def test_disabled_agent_token_and_cookie_fail_at_once(app, state, admin, agent, api_token):
    _, admin_token = admin
    browser = app.test_client()
    login(browser)
    assert browser.get("/api/v1/me").status_code == 200
    assert app.test_client().get("/api/v1/me", headers=_bearer(api_token)).status_code == 200

    disabled = app.test_client().post(f"/api/v1/agents/{agent.id}/disable", headers=_bearer(admin_token))

    assert disabled.status_code == 200
    assert disabled.json["active"] is False
    assert browser.get("/api/v1/me").status_code == 401
    assert app.test_client().get("/api/v1/me", headers=_bearer(api_token)).status_code == 401
    again = app.test_client()
    again.get("/login")
    with again.session_transaction() as flask_session:
        csrf = flask_session["csrf_token"]
    refused = again.post("/login", data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": csrf})
    assert refused.status_code == 200
    assert b"The email or password is wrong." in refused.data
    assert again.get("/api/v1/me").status_code == 401
    assert [row.action for row in _audit_rows(state)] == ["agent.disabled"]


DISABLED_NOTICE = b"This account has been disabled, so you were signed out."


def test_disabled_agent_sign_in_page_says_why(app, admin, agent):
    _, admin_token = admin
    browser = app.test_client()
    login(browser)
    app.test_client().post(f"/api/v1/agents/{agent.id}/disable", headers=_bearer(admin_token))

    redirect = browser.get("/")
    page = browser.get("/login?next=/")

    assert redirect.status_code == 302
    assert page.status_code == 200
    assert DISABLED_NOTICE in page.data
    assert b'id="login-notice"' in page.data
    # The fields are not at fault, so they are not marked invalid.
    assert b'aria-invalid="true"' not in page.data


def test_disabled_notice_only_for_that_browser(app, admin, agent):
    _, admin_token = admin
    signed_out = app.test_client()
    login(signed_out)
    signed_out.post("/logout", data={"csrf_token": _csrf(signed_out)})
    app.test_client().post(f"/api/v1/agents/{agent.id}/disable", headers=_bearer(admin_token))

    stranger = app.test_client().get("/login")
    wrong_password = app.test_client()
    wrong_password.get("/login")
    refused = wrong_password.post(
        "/login", data={"email": agent.email, "password": "not the password", "csrf_token": _csrf(wrong_password)}
    )

    assert DISABLED_NOTICE not in stranger.data
    assert DISABLED_NOTICE not in signed_out.get("/login").data
    assert DISABLED_NOTICE not in refused.data
    assert b"The email or password is wrong." in refused.data


def test_disabled_notice_goes_when_enabled(app, admin, agent):
    _, admin_token = admin
    browser = app.test_client()
    login(browser)
    app.test_client().post(f"/api/v1/agents/{agent.id}/disable", headers=_bearer(admin_token))
    assert DISABLED_NOTICE in browser.get("/login").data

    app.test_client().post(f"/api/v1/agents/{agent.id}/enable", headers=_bearer(admin_token))

    # The sign-in stays ended. After enabling, the agent signs in anew, and the page shows no notice.
    assert browser.get("/api/v1/me").status_code == 401
    assert DISABLED_NOTICE not in browser.get("/login").data


def _csrf(client) -> str:
    with client.session_transaction() as flask_session:
        return flask_session["csrf_token"]


def test_enabled_agent_token_works_again(app, admin, agent, api_token):
    _, admin_token = admin
    client = app.test_client()
    client.post(f"/api/v1/agents/{agent.id}/disable", headers=_bearer(admin_token))
    enabled = client.post(f"/api/v1/agents/{agent.id}/enable", headers=_bearer(admin_token))

    assert enabled.json["active"] is True
    assert client.get("/api/v1/me", headers=_bearer(api_token)).status_code == 200


def test_disabled_agent_is_skipped_by_assignment(state, admin, agent):
    root, _ = admin
    online = OnlineAgents()
    online.connected(agent.id)
    online.connected(root.id)
    use_online_agents(state.session_factory, online)
    with state.session_factory() as session:
        team = create_team(session, "Support", [agent.id, root.id])
        session.commit()
        first = choose_agent(session, team)
        first.is_active = False
        session.flush()

        assert first.id in (agent.id, root.id)
        assert choose_agent(session, team).id == ({agent.id, root.id} - {first.id}).pop()


def test_temporary_password_forces_a_change(app, state, admin, agent):
    _, admin_token = admin
    browser = app.test_client()
    login(browser)

    reset = app.test_client().post(
        f"/api/v1/agents/{agent.id}/password-reset", json={"temporary_password": "temporary pass 2"}, headers=_bearer(admin_token)
    )
    assert reset.status_code == 200
    assert reset.json["agent"]["must_change_password"] is True
    assert browser.get("/api/v1/me").status_code == 401  # the reset ended the sign-in

    csrf = login(browser, agent.email, "temporary pass 2")
    blocked = browser.get("/api/v1/conversations")
    page = browser.get("/")
    me = browser.get("/api/v1/me")
    changed = browser.post(
        "/api/v1/me/password", json={"current_password": "temporary pass 2", "new_password": NEW_PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )

    assert blocked.status_code == 403
    assert blocked.json["error"]["code"] == "password_change_required"
    assert page.status_code == 302
    assert page.headers["Location"] == "/account/password"
    assert me.status_code == 200
    assert changed.status_code == 204
    assert browser.get("/api/v1/conversations").status_code == 200
    assert _agent_row(state, agent.id).must_change_password is False


def test_reset_link_for_disabled_agent_is_refused(app, admin, agent):
    _, admin_token = admin
    client = app.test_client()
    client.post(f"/api/v1/agents/{agent.id}/disable", headers=_bearer(admin_token))
    response = client.post(f"/api/v1/agents/{agent.id}/password-reset", headers=_bearer(admin_token))
    assert response.status_code == 409
    assert response.json["error"]["code"] == "agent_disabled"


# ---- One's own account ------------------------------------------------------------------------


def test_password_change_ends_other_sign_ins_only(app, state, agent):
    mine = app.test_client()
    other = app.test_client()
    csrf = login(mine)
    login(other)

    response = mine.post(
        "/api/v1/me/password", json={"current_password": AGENT_PASSWORD, "new_password": NEW_PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )

    assert response.status_code == 204
    assert mine.get("/api/v1/me").status_code == 200
    assert other.get("/api/v1/me").status_code == 401
    login(app.test_client(), agent.email, NEW_PASSWORD)
    [row] = _audit_rows(state)
    assert row.action == "agent.password_changed"
    assert NEW_PASSWORD not in json.dumps(row.details)


def test_password_change_rejects_bad_input(app, agent, api_token):
    client = app.test_client()
    headers = _bearer(api_token)

    wrong = client.post("/api/v1/me/password", json={"current_password": "nope", "new_password": NEW_PASSWORD}, headers=headers)
    short = client.post("/api/v1/me/password", json={"current_password": AGENT_PASSWORD, "new_password": "short"}, headers=headers)
    same = client.post("/api/v1/me/password", json={"current_password": AGENT_PASSWORD, "new_password": AGENT_PASSWORD}, headers=headers)

    assert wrong.status_code == 403
    assert wrong.json["error"]["code"] == "wrong_password"
    assert short.status_code == 400
    assert short.json["error"]["field"] == "new_password"
    assert same.status_code == 400


def test_password_change_without_csrf_is_refused(app, agent):
    client = app.test_client()
    login(client)
    response = client.post("/api/v1/me/password", json={"current_password": AGENT_PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "csrf_failed"


def test_password_change_attempts_are_limited(app, agent, api_token):
    client = app.test_client()
    statuses = [
        client.post("/api/v1/me/password", json={"current_password": f"guess {index}", "new_password": NEW_PASSWORD},
                    headers=_bearer(api_token)).status_code
        for index in range(12)
    ]
    right_but_throttled = client.post(
        "/api/v1/me/password", json={"current_password": AGENT_PASSWORD, "new_password": NEW_PASSWORD}, headers=_bearer(api_token)
    )

    assert statuses == [403] * 10 + [429] * 2
    assert right_but_throttled.status_code == 429
    assert right_but_throttled.json["error"]["code"] == "too_many_attempts"


def test_token_is_shown_once_and_stored_hashed(app, state, agent, api_token):
    client = app.test_client()
    csrf = login(client)
    created = client.post("/api/v1/me/tokens", json={"name": "reports"}, headers={"X-CSRF-Token": csrf})
    token = created.json["token"]
    listed = client.get("/api/v1/me/tokens", headers=_bearer(api_token)).json["items"]

    assert created.status_code == 201
    assert token.startswith("sbt_")
    assert [item["name"] for item in listed] == ["tests", "reports"]
    assert all("token" not in item for item in listed)
    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 200
    with state.session_factory() as session:
        hashes = list(session.scalars(select(ApiToken.token_hash)))
        assert token not in hashes
        assert all(token not in json.dumps(row.details) for row in session.scalars(select(AuditEvent)))


def test_revoked_token_stops_working(app, state, agent, api_token):
    client = app.test_client()
    browser = app.test_client()
    csrf = login(browser)
    created = browser.post("/api/v1/me/tokens", json={"name": "short-lived"}, headers={"X-CSRF-Token": csrf}).json

    revoked = client.delete(f"/api/v1/me/tokens/{created['id']}", headers=_bearer(api_token))

    assert revoked.status_code == 204
    assert client.get("/api/v1/me", headers=_bearer(created["token"])).status_code == 401
    assert [row.action for row in _audit_rows(state)] == ["token.created", "token.revoked"]


def test_token_of_someone_else_cannot_be_revoked(app, admin, api_token):
    _, admin_token = admin
    client = app.test_client()
    mine = client.get("/api/v1/me/tokens", headers=_bearer(admin_token)).json["items"][0]

    response = client.delete(f"/api/v1/me/tokens/{mine['id']}", headers=_bearer(api_token))

    assert response.status_code == 404
    assert client.get("/api/v1/me", headers=_bearer(admin_token)).status_code == 200


def test_token_name_is_required(app, agent):
    client = app.test_client()
    csrf = login(client)
    response = client.post("/api/v1/me/tokens", json={"name": "  "}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 400
    assert response.json["error"]["field"] == "name"


def test_api_token_cannot_create_tokens(app, state, agent, api_token):
    client = app.test_client()
    response = client.post("/api/v1/me/tokens", json={"name": "backup"}, headers=_bearer(api_token))
    page = client.post("/account/tokens", data={"name": "backup"}, headers=_bearer(api_token))

    assert response.status_code == 403
    assert response.json["error"]["code"] == "sign_in_required"
    assert "sign in with your password" in response.json["error"]["message"]
    assert page.status_code == 403
    assert b"sign in with your password" in page.data
    with state.session_factory() as session:
        assert list(session.scalars(select(ApiToken.name))) == ["tests"]
        assert list(session.scalars(select(AuditEvent))) == []


def test_token_creation_needs_csrf(app, agent):
    client = app.test_client()
    login(client)
    response = client.post("/api/v1/me/tokens", json={"name": "reports"})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "csrf_failed"


def test_own_sign_ins_are_listed_and_ended(app, agent):
    mine = app.test_client()
    other = app.test_client()
    csrf = login(mine)
    login(other)

    items = mine.get("/api/v1/me/sessions").json["items"]
    [other_item] = [item for item in items if not item["current"]]
    ended = mine.delete(f"/api/v1/me/sessions/{other_item['id']}", headers={"X-CSRF-Token": csrf})
    unknown = mine.delete("/api/v1/me/sessions/999", headers={"X-CSRF-Token": csrf})

    assert len(items) == 2
    assert sum(item["current"] for item in items) == 1
    assert ended.status_code == 204
    assert other.get("/api/v1/me").status_code == 401
    assert mine.get("/api/v1/me").status_code == 200
    assert unknown.status_code == 404


def test_sign_in_of_someone_else_cannot_be_ended(app, state, admin, agent):
    root_browser = app.test_client()
    login(root_browser, "root@example.com")
    mine = app.test_client()
    csrf = login(mine)
    with state.session_factory() as session:
        root_session = session.scalar(select(AgentSession).where(AgentSession.agent_id == admin[0].id))

    response = mine.delete(f"/api/v1/me/sessions/{root_session.id}", headers={"X-CSRF-Token": csrf})

    assert response.status_code == 404
    assert root_browser.get("/api/v1/me").status_code == 200


def _age_sign_in(state, **changes: timedelta) -> None:
    with state.session_factory() as session:
        row = session.scalar(select(AgentSession))
        for field, age in changes.items():
            setattr(row, field, utcnow() - age)
        session.commit()


def test_idle_sign_in_expires(app, state, config, agent):
    client = app.test_client()
    login(client)
    _age_sign_in(state, last_seen_at=timedelta(seconds=config.session_lifetime + 5))

    assert client.get("/api/v1/me").status_code == 401
    with state.session_factory() as session:
        assert session.scalar(select(AgentSession)).revoked_at is not None


def test_active_sign_in_ends_at_absolute_lifetime(app, state, config, agent):
    client = app.test_client()
    login(client)
    _age_sign_in(state, last_seen_at=timedelta(seconds=30))
    assert client.get("/api/v1/me").status_code == 200

    _age_sign_in(state, created_at=timedelta(seconds=config.session_absolute_lifetime + 5), last_seen_at=timedelta(seconds=30))

    assert client.get("/api/v1/me").status_code == 401


def test_activity_moves_last_seen_forward(app, state, agent):
    client = app.test_client()
    login(client)
    _age_sign_in(state, last_seen_at=timedelta(minutes=10))

    assert client.get("/api/v1/me").status_code == 200

    with state.session_factory() as session:
        row = session.scalar(select(AgentSession))
        assert utcnow() - row.last_seen_at < timedelta(minutes=1)
        assert utcnow() - session.get(Agent, agent.id).last_seen_at < timedelta(minutes=1)


def test_last_seen_is_written_once_a_minute(app, state, agent):
    client = app.test_client()
    login(client)
    _age_sign_in(state, last_seen_at=timedelta(seconds=30))
    with state.session_factory() as session:
        before = session.scalar(select(AgentSession)).last_seen_at

    assert client.get("/api/v1/me").status_code == 200

    with state.session_factory() as session:
        assert session.scalar(select(AgentSession)).last_seen_at == before


# ---- Teams ------------------------------------------------------------------------------------


def test_team_changes_are_logged(app, state, manager, agent):
    boss, token = manager
    client = app.test_client()

    created = client.post("/api/v1/teams", json={"name": "Billing", "agent_ids": [agent.id], "round_robin": False}, headers=_bearer(token))
    team_id = created.json["id"]
    changed = client.patch(f"/api/v1/teams/{team_id}", json={"name": "Payments", "agent_ids": [agent.id, boss.id], "round_robin": True}, headers=_bearer(token))
    unchanged = client.patch(f"/api/v1/teams/{team_id}", json={"name": "Payments"}, headers=_bearer(token))
    bad = client.patch(f"/api/v1/teams/{team_id}", json={"round_robin": "yes"}, headers=_bearer(token))
    capacity = client.patch(f"/api/v1/agents/{agent.id}", json={"max_open_conversations": 3}, headers=_bearer(token))

    assert created.json["round_robin"] is False
    assert changed.json["round_robin"] is True
    assert unchanged.status_code == 200
    assert bad.status_code == 400
    assert capacity.status_code == 200
    rows = _audit_rows(state)
    assert [row.action for row in rows] == ["team.created", "team.changed", "agent.capacity_changed"]
    assert rows[1].details == {
        "name": {"from": "Billing", "to": "Payments"}, "members_added": [boss.id], "round_robin": {"from": False, "to": True},
    }
    assert rows[2].details == {"from": None, "to": 3}


def test_round_robin_off_leaves_conversations_queued(state, agent, whatsapp_channel):
    from inbox.assignment import assign_within_team
    from inbox.models import Conversation
    from tests.support.conversations import receive

    online = OnlineAgents()
    online.connected(agent.id)
    use_online_agents(state.session_factory, online)
    conversation_id = receive(state, whatsapp_channel.id, "+15551230000").conversation_id
    with state.session_factory() as session:
        team = create_team(session, "Queue only", [agent.id])
        team.round_robin = False
        conversation = session.get(Conversation, conversation_id)
        assign_within_team(session, conversation, team, None)
        session.flush()

        assert conversation.team_id == team.id
        assert conversation.assignee_id is None

        team.round_robin = True
        assign_within_team(session, conversation, team, None)
        session.flush()

        assert conversation.assignee_id == agent.id


# ---- The audit log ----------------------------------------------------------------------------


def test_audit_filters_and_pages(app, state, admin, agent):
    root, token = admin
    client = app.test_client()
    for role in ("manager", "admin", "agent"):
        client.put(f"/api/v1/agents/{agent.id}/role", json={"role": role}, headers=_bearer(token))
    client.post("/api/v1/teams", json={"name": "Night"}, headers=_bearer(token))

    def get(query: str):
        return client.get(f"/api/v1/audit?{query}", headers=_bearer(token))

    first = get("limit=2").json
    second = get(f"limit=2&cursor={first['next_cursor']}").json
    roles = get("action=agent.role_changed").json["items"]
    agents = get("action=agent.").json["items"]
    targeted = get(f"target=agent:{agent.id}").json["items"]
    teams = get("target=team").json["items"]
    by_actor = get(f"actor={root.id}").json["items"]
    by_cli = get("actor=cli").json["items"]
    future = get("since=2999-01-01T00:00:00Z").json["items"]
    past = get("until=2000-01-01T00:00:00Z").json["items"]

    assert [item["action"] for item in first["items"]] == ["team.created", "agent.role_changed"]
    assert [item["details"]["to"] for item in second["items"]] == ["admin", "manager"]
    assert second["next_cursor"] is None
    assert len(roles) == 3
    assert len(agents) == 3
    assert len(targeted) == 3
    assert [item["target"]["label"] for item in teams] == ["Night"]
    assert len(by_actor) == 4
    assert by_cli == []
    assert future == []
    assert past == []


@pytest.mark.parametrize("query", [
    "cursor=!!", "limit=0", "limit=x", "actor=bob", "action=agent.exploded", "target=planet:1",
    "target=agent:x", "since=yesterday", "since=2026-01-01T00:00:00", "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
])
def test_audit_rejects_bad_filters(app, admin, query):
    response = app.test_client().get(f"/api/v1/audit?{query}", headers=_bearer(admin[1]))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid"


def test_audit_needs_admin(app, manager, api_token):
    client = app.test_client()
    assert client.get("/api/v1/audit", headers=_bearer(api_token)).status_code == 403
    assert client.get("/api/v1/audit", headers=_bearer(manager[1])).status_code == 403


def test_audit_row_rolls_back_with_its_change(state, admin, agent):
    from inbox.agents import change_role

    with state.session_factory() as session:
        change_role(session, session.get(Agent, admin[0].id), agent.id, "manager")
        session.rollback()

    assert _audit_rows(state) == []
    assert _agent_row(state, agent.id).role == "agent"


def test_channel_folder_change_is_logged(app, state, admin):
    from inbox.channel_config import add_channel

    with state.session_factory() as session:
        channel = add_channel(session, "email", "Mail", "help@example.com", {
            "imap_host": "127.0.0.1", "imap_port": 1143, "imap_username": "help", "imap_password": "imap secret",
            "imap_ssl": False, "smtp_host": "127.0.0.1", "smtp_port": 1025, "smtp_security": "none",
        })
        session.commit()
        channel_id = channel.id

    response = app.test_client().patch(f"/api/v1/channels/{channel_id}", json={"imap_folders": ["INBOX", "Sales"]}, headers=_bearer(admin[1]))

    assert response.status_code == 200
    [row] = _audit_rows(state)
    assert row.action == "channel.changed"
    assert row.details["imap_folders"]["to"] == ["INBOX", "Sales"]
    assert "imap secret" not in json.dumps(row.details)


def test_secret_settings_are_masked_in_changes():
    from inbox.audit import setting_changes

    changes = setting_changes(
        {"smtp_password": "old", "smtp_port": 587, "oauth_refresh_token": "r1"},
        {"smtp_password": "new", "smtp_port": 465, "oauth_refresh_token": "r2"},
    )

    assert changes == {
        "oauth_refresh_token": {"changed": True}, "smtp_password": {"changed": True}, "smtp_port": {"from": 587, "to": 465},
    }
