"""The account, agents, teams and audit pages: who may open them, and what their forms change."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from inbox.agents import create_agent
from inbox.models import Agent, AuditEvent, Team
from tests.conftest import AGENT_PASSWORD, login

NEW_PASSWORD = "a fresh password 42"

# Every page route with the least role it needs; POST forms are sent with a valid CSRF token.
PAGES = [
    ("GET", "/account", "agent"),
    ("GET", "/account/password", "agent"),
    ("POST", "/account/password", "agent"),
    ("POST", "/account/tokens", "agent"),
    ("POST", "/account/tokens/999/revoke", "agent"),
    ("POST", "/account/sessions/999/end", "agent"),
    ("POST", "/account/sessions/end-others", "agent"),
    ("GET", "/admin/agents", "admin"),
    ("POST", "/admin/agents", "admin"),
    ("POST", "/admin/agents/1/role", "admin"),
    ("POST", "/admin/agents/1/active", "admin"),
    ("POST", "/admin/agents/1/password-reset", "admin"),
    ("GET", "/admin/audit", "admin"),
    ("GET", "/admin/teams", "manager"),
    ("POST", "/admin/teams", "manager"),
    ("POST", "/admin/teams/1", "manager"),
    ("POST", "/admin/agents/1/capacity", "manager"),
]
RANK = {"agent": 0, "manager": 1, "admin": 2}


def _sign_in_as(app, state, role: str) -> tuple:
    email = f"{role}-user@example.com"
    with state.session_factory() as session:
        created = create_agent(session, email, f"{role.title()} User", AGENT_PASSWORD, role)
        session.commit()
    client = app.test_client()
    return client, login(client, email), created


def test_every_page_route_is_listed(app):
    listed = {(method, re.sub(r"/\d+(?=/|$)", "/<id>", path)) for method, path, _ in PAGES}
    routes = {
        (method, re.sub(r"<[^>]+>", "<id>", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin_pages.") and rule.endpoint != "admin_pages.reset_password"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == listed


@pytest.mark.parametrize(("method", "path", "role"), PAGES)
def test_pages_send_anonymous_to_sign_in(app, method, path, role):
    response = app.test_client().open(path, method=method)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_pages_above_a_role_refuse_it(app, state, role):
    client, csrf, _ = _sign_in_as(app, state, role)
    for method, path, needed in PAGES:
        response = client.open(path, method=method, data={"csrf_token": csrf})
        if RANK[needed] > RANK[role]:
            assert response.status_code == 403, (method, path)
            assert f"needs the {needed} role".encode() in response.data
        else:
            assert response.status_code != 403, (method, path)


def test_page_forms_need_csrf(app, state):
    client, _, _ = _sign_in_as(app, state, "admin")
    response = client.post("/admin/agents", data={"email": "x@example.com", "name": "X"})
    assert response.status_code == 403
    with state.session_factory() as session:
        assert session.scalar(select(Agent).where(Agent.email == "x@example.com")) is None


def test_inbox_header_links_by_role(app, state):
    admin, _, _ = _sign_in_as(app, state, "admin")
    agent, _, _ = _sign_in_as(app, state, "agent")
    assert b'href="/admin/agents">Admin</a>' in admin.get("/").data
    assert b'href="/account">Account</a>' in agent.get("/").data


def test_admin_creates_agent_on_the_page(app, state):
    client, csrf, _ = _sign_in_as(app, state, "admin")

    created = client.post("/admin/agents", data={
        "csrf_token": csrf, "email": "nia@example.com", "name": "Nia", "role": "agent", "password": "temporary pass 3",
    })
    duplicate = client.post("/admin/agents", data={
        "csrf_token": csrf, "email": "nia@example.com", "name": "Nia", "role": "agent", "password": "temporary pass 3",
    })
    listed = client.get("/admin/agents").data.decode()

    assert created.status_code == 303
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.data.decode()
    assert "temporary pass 3" not in duplicate.data.decode()
    assert "nia@example.com" in listed
    assert "password change due" in listed


def test_page_reset_link_is_shown_once(app, state, agent):
    client, csrf, _ = _sign_in_as(app, state, "admin")

    response = client.post(f"/admin/agents/{agent.id}/password-reset", data={"csrf_token": csrf, "method": "link"})
    link = re.search(r'value="(http://localhost/reset-password/[^"]+)"', response.data.decode()).group(1)

    assert response.status_code == 200
    assert link not in client.get("/admin/agents").data.decode()
    assert app.test_client().get(link.removeprefix("http://localhost")).status_code == 200


def test_reset_form_without_csrf_is_refused(app, state, agent):
    client, csrf, _ = _sign_in_as(app, state, "admin")
    response = client.post(f"/admin/agents/{agent.id}/password-reset", data={"csrf_token": csrf, "method": "link"})
    path = re.search(r'value="http://localhost(/reset-password/[^"]+)"', response.data.decode()).group(1)

    refused = app.test_client().post(path, data={"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})

    assert refused.status_code == 400
    assert app.test_client().get(path).status_code == 200  # still unused


def test_page_disable_ends_sign_in(app, state, agent):
    client, csrf, _ = _sign_in_as(app, state, "admin")
    agent_browser = app.test_client()
    login(agent_browser)

    response = client.post(f"/admin/agents/{agent.id}/active", data={"csrf_token": csrf, "active": "false"})

    assert response.status_code == 303
    assert agent_browser.get("/api/v1/me").status_code == 401
    assert "disabled" in client.get("/admin/agents").data.decode()


def test_last_admin_cannot_be_demoted_on_the_page(app, state):
    client, csrf, admin = _sign_in_as(app, state, "admin")
    response = client.post(f"/admin/agents/{admin.id}/role", data={"csrf_token": csrf, "role": "agent"})
    assert response.status_code == 409
    assert "only active admin" in response.data.decode()


def test_forced_change_on_the_page(app, state, agent):
    admin, csrf, _ = _sign_in_as(app, state, "admin")
    admin.post(f"/admin/agents/{agent.id}/password-reset", data={
        "csrf_token": csrf, "method": "temporary", "temporary_password": "temporary pass 4",
    })
    browser = app.test_client()
    csrf = login(browser, agent.email, "temporary pass 4")

    redirected = browser.get("/admin/teams")
    form = browser.get("/account/password")
    mismatch = browser.post("/account/password", data={
        "csrf_token": csrf, "current_password": "temporary pass 4", "new_password": NEW_PASSWORD, "confirm_password": "x",
    })
    done = browser.post("/account/password", data={
        "csrf_token": csrf, "current_password": "temporary pass 4", "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD,
    })

    assert redirected.headers["Location"] == "/account/password"
    assert b"Choose a new password" in form.data
    assert mismatch.status_code == 400
    assert done.status_code == 303
    assert done.headers["Location"] == "/"
    assert browser.get("/").status_code == 200


def test_password_page_attempts_are_limited(app, agent):
    browser = app.test_client()
    csrf = login(browser)
    statuses = [
        browser.post("/account/password", data={
            "csrf_token": csrf, "current_password": f"guess {index}", "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD,
        }).status_code
        for index in range(11)
    ]
    assert statuses == [400] * 10 + [429]


def test_token_page_shows_new_token_once(app, state, agent):
    browser = app.test_client()
    csrf = login(browser)

    created = browser.post("/account/tokens", data={"csrf_token": csrf, "name": "zapier"}).data.decode()
    token = re.search(r'value="(sbt_[^"]+)"', created).group(1)
    listed = browser.get("/account").data.decode()
    token_id = re.search(r'/account/tokens/(\d+)/revoke', listed).group(1)
    works = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code
    revoked = browser.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})

    assert "zapier" in listed
    assert token not in listed
    assert works == 200
    assert revoked.status_code == 303
    assert app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_end_other_sign_ins_on_the_page(app, agent):
    mine = app.test_client()
    other = app.test_client()
    csrf = login(mine)
    login(other)

    page = mine.get("/account").data.decode()
    response = mine.post("/account/sessions/end-others", data={"csrf_token": csrf})

    assert "this browser" in page
    assert response.status_code == 303
    assert other.get("/api/v1/me").status_code == 401
    assert mine.get("/api/v1/me").status_code == 200


def test_manager_edits_team_on_the_page(app, state, agent):
    client, csrf, manager = _sign_in_as(app, state, "manager")

    created = client.post("/admin/teams", data={"csrf_token": csrf, "name": "Returns", "agent_ids": [str(agent.id)]})
    with state.session_factory() as session:
        team_id = session.scalar(select(Team.id))
    renamed = client.post(f"/admin/teams/{team_id}", data={
        "csrf_token": csrf, "name": "Refunds", "agent_ids": [str(agent.id), str(manager.id)], "round_robin": "on",
    })
    bad_member = client.post(f"/admin/teams/{team_id}", data={"csrf_token": csrf, "name": "Refunds", "agent_ids": ["x"]})
    capacity = client.post(f"/admin/agents/{agent.id}/capacity", data={"csrf_token": csrf, "max_open_conversations": "4"})
    bad_capacity = client.post(f"/admin/agents/{agent.id}/capacity", data={"csrf_token": csrf, "max_open_conversations": "-2"})

    assert created.status_code == 303
    assert renamed.status_code == 303
    assert bad_member.status_code == 400
    assert capacity.status_code == 303
    assert bad_capacity.status_code == 400
    with state.session_factory() as session:
        team = session.get(Team, team_id)
        assert team.name == "Refunds"
        assert team.round_robin is True
        assert sorted(member.id for member in team.members) == sorted([agent.id, manager.id])
        assert session.get(Agent, agent.id).max_open_conversations == 4
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["team.created", "team.changed", "agent.capacity_changed"]


def test_audit_page_filters_and_reports_bad_filters(app, state, agent):
    client, csrf, _ = _sign_in_as(app, state, "admin")
    client.post(f"/admin/agents/{agent.id}/role", data={"csrf_token": csrf, "role": "manager"})

    everything = client.get("/admin/audit").data.decode()
    only_teams = client.get("/admin/audit?action=team.").data.decode()
    bad = client.get("/admin/audit?since=yesterday")

    assert "agent.role_changed" in everything
    assert "No events match" in only_teams
    assert bad.status_code == 400
    assert "Since (UTC) must be a date such as 2026-01-31 or a time such as 2026-01-31T09:00, not &#39;yesterday&#39;." in bad.data.decode()


@pytest.mark.parametrize(("query", "message", "field"), [
    ("since=2026-02-02&until=2026-02-01",
     "Since (UTC) (2026-02-02 00:00 UTC) is later than Until (UTC) (2026-02-01 00:00 UTC). "
     "Choose a Since before the Until, or leave one of them empty.", "since"),
    ("since=2026-02-01T10:30&until=2026-02-01",
     "Since (UTC) (2026-02-01 10:30 UTC) is later than Until (UTC) (2026-02-01 00:00 UTC).", "since"),
    ("since=2026-02-01&until=2026-02-01",
     "Since (UTC) and Until (UTC) are both 2026-02-01 00:00 UTC, and Until is not included, so no event can match. "
     "Choose a later Until, such as the next day.", "until"),
    ("since=2026-02-01T12:00%2B05:00&until=2026-02-01T07:00Z",
     "Since (UTC) and Until (UTC) are both 2026-02-01 07:00 UTC", "until"),
])
def test_audit_page_rejects_empty_time_range(app, state, agent, query, message, field):
    client, csrf, _ = _sign_in_as(app, state, "admin")
    client.post(f"/admin/agents/{agent.id}/role", data={"csrf_token": csrf, "role": "manager"})

    response = client.get(f"/admin/audit?{query}")

    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'<p class="notice notice--error admin-form__error" role="alert" id="filter-error">{message}' in page
    assert re.search(rf'name="{field}"[^>]* aria-invalid="true" aria-describedby="filter-error"', page)
    # The error is inside the filter form, and the page shows no "No events match" line.
    form = re.search(r'<form[^>]*aria-label="Filter the audit log">(.*?)</form>', page, re.S).group(1)
    assert 'id="filter-error"' in form
    assert "No events match" not in page
    assert "<code>agent.role_changed</code>" not in page


def test_audit_api_rejects_since_after_until(app, state, agent):
    client, _, _ = _sign_in_as(app, state, "admin")

    later = client.get("/api/v1/audit?since=2026-02-02T00:00:00Z&until=2026-02-01T00:00:00Z")

    assert later.status_code == 400
    assert later.json["error"]["field"] == "since"
    assert later.json["error"]["message"] == (
        "since (2026-02-02T00:00:00+00:00) is later than until (2026-02-01T00:00:00+00:00). "
        "Pass a since before the until, or leave one out."
    )


def test_audit_page_reads_times_without_offset_as_utc(app, state, agent):
    client, csrf, _ = _sign_in_as(app, state, "admin")
    client.post(f"/admin/agents/{agent.id}/role", data={"csrf_token": csrf, "role": "manager"})
    today = datetime.now(timezone.utc).date()

    from_today = client.get(f"/admin/audit?since={today.isoformat()}")
    from_tomorrow = client.get(f"/admin/audit?since={(today + timedelta(days=1)).isoformat()}T00:00")

    assert from_today.status_code == 200
    assert "<code>agent.role_changed</code>" in from_today.data.decode()
    assert from_tomorrow.status_code == 200
    assert "No events match" in from_tomorrow.data.decode()


# ---- Sign-ins by browser name --------------------------------------------------------------

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/18.5 Mobile/15E148 Safari/604.1")


def _client_with_user_agent(app, user_agent: str):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


def test_account_names_sign_in_browsers(app, agent):
    mine = _client_with_user_agent(app, FIREFOX_WINDOWS)
    login(mine)
    login(_client_with_user_agent(app, SAFARI_IPHONE))
    login(_client_with_user_agent(app, ""))

    page = mine.get("/account").get_data(as_text=True)
    rows = re.findall(r"<tr>.*?</tr>", page.split('id="sign-ins"')[1].split("<tbody>")[1], re.S)

    assert len(rows) == 3
    assert re.search(r'<span class="sign-in__browser" title="[^"]*Firefox/140.0">Firefox 140 on Windows</span> '
                     r'<span class="badge">this browser</span>', page)
    assert "<code>Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0</code>" in page
    assert ">Safari 18 on iPhone</span>" in page
    assert 'aria-label="End the sign-in of Safari 18 on iPhone from 127.0.0.1 begun ' in page
    assert '<span class="sign-in__browser">Unknown browser</span>' in page
    assert page.count("<details class=\"sign-in__header\">") == 2
    assert all(re.search(r"<time datetime=", row) for row in rows)
    assert all("127.0.0.1" in row for row in rows)


def test_account_escapes_user_agent(app, agent):
    hostile = '<script>alert(1)</script>" onmouseover="alert(2)'
    client = _client_with_user_agent(app, hostile)
    login(client)

    page = client.get("/account").get_data(as_text=True)

    assert "<script>alert(1)" not in page
    assert 'title="&lt;script&gt;alert(1)&lt;/script&gt;&#34; onmouseover=&#34;alert(2)"' in page
    assert ">Unknown browser</span>" in page


def test_account_shortens_stored_long_user_agent(app, agent):
    client = _client_with_user_agent(app, FIREFOX_WINDOWS + " " + "x" * 5000)
    login(client)

    page = client.get("/account").get_data(as_text=True)

    assert ">Firefox 140 on Windows</span>" in page
    assert "x" * 301 not in page


# ---- Audit values for people -----------------------------------------------------------------

AUDIT_DETAILS = [
    ({"name": "Ada Agent", "role": "agent"}, [("name", ["Ada Agent"]), ("role", ["agent"])]),
    ({"from": "agent", "to": "manager"}, [("from", ["agent"]), ("to", ["manager"])]),
    ({"from": None, "to": 4}, [("from", ["none"]), ("to", ["4"])]),
    ({"name": "Billing", "member_ids": [2, 3], "round_robin": False},
     [("name", ["Billing"]), ("member ids", ["2, 3"]), ("round robin", ["No"])]),
    ({"members_added": [], "round_robin": {"from": False, "to": True}},
     [("members added", ["none"]), ("round robin", ["No → Yes"])]),
    ({"method": "link", "expires_at": "2026-01-31T09:05:59.123456+00:00"},
     [("method", ["link"]), ("expires at", ["2026-01-31 09:05 UTC"])]),
    ({"at": "2026-01-31T10:05:00+01:00", "naive": "2026-01-31T09:05:00", "day": "2026-01-31", "bad": "2026-13-45T99:00"},
     [("at", ["2026-01-31 09:05 UTC"]), ("naive", ["2026-01-31 09:05 UTC"]), ("day", ["2026-01-31"]),
      ("bad", ["2026-13-45T99:00"])]),
    ({"imap_folders": {"from": ["INBOX"], "to": ["INBOX", "Support"]}, "default_team_id": {"from": None, "to": 3}},
     [("imap folders", ["INBOX → INBOX, Support"]), ("default team id", ["none → 3"])]),
    ({"fields": ["body", "name"], "enabled": True}, [("fields", ["body, name"]), ("enabled", ["Yes"])]),
    ({"imap_password": {"changed": True}, "reauthorized": True},
     [("imap password", ["changed (not shown)"]), ("reauthorized", ["Yes"])]),
    ({"oauth_client_id": {"changed": True}}, [("oauth client id", ["changed"])]),
    ({"auth_token": "sk-live-123", "app_secret": {"from": "a", "to": "b"}, "Password": ["x"]},
     [("auth token", ["changed (not shown)"]), ("app secret", ["changed (not shown)"]),
      ("Password", ["changed (not shown)"])]),
    ({"limits": {"max": 5, "hours": [9, 17], "access_token": "sk", "note": None}},
     [("limits", ["max: 5", "hours: 9, 17", "access token: changed (not shown)", "note: none"])]),
    ({"deep": {"a": {"b": {"c": {"d": {"e": "hidden"}}}}}}, [("deep", ["a: b: c: d: e: …"])]),
    ({"empty": {}, "text": "", "ratio": 0.5}, [("empty", ["none"]), ("text", [""]), ("ratio", ["0.5"])]),
    ({}, []),
    (None, []),
]


@pytest.mark.parametrize(("details", "expected"), AUDIT_DETAILS)
def test_audit_details_read_as_text(details, expected):
    from gateway.admin_pages import audit_details

    assert audit_details(details) == expected


def test_audit_page_shows_values_readably(app, state):
    from inbox.audit import Action, record_audit

    client, _, admin = _sign_in_as(app, state, "admin")
    with state.session_factory() as session:
        record_audit(session, None, Action.TEAM_CHANGED, "team", 1, "Billing", {
            "name": {"from": "Billing", "to": "Refunds & <Returns>"},
            "members_added": [2, 3],
            "round_robin": {"from": False, "to": True},
        })
        record_audit(session, None, Action.PASSWORD_RESET, "agent", admin.id, admin.email,
                     {"method": "link", "expires_at": "2026-01-31T09:00:00+00:00"})
        record_audit(session, None, Action.AGENT_CAPACITY_CHANGED, "agent", admin.id, admin.email, {"from": None, "to": 4})
        session.commit()

    page = client.get("/admin/audit").get_data(as_text=True)

    assert "<dt>name</dt>" in page
    assert '<span class="audit-details__line">Billing → Refunds &amp; &lt;Returns&gt;</span>' in page
    assert '<span class="audit-details__line">2, 3</span>' in page
    assert '<span class="audit-details__line">No → Yes</span>' in page
    assert '<span class="audit-details__line">2026-01-31 09:00 UTC</span>' in page
    assert '<span class="audit-details__line">none</span>' in page
    assert "&#34;" not in page.split('id="events-heading"')[1]
    assert "<Returns>" not in page


def test_audit_page_never_shows_secrets(app, state, database_url, tmp_path):
    from click.testing import CliRunner

    from gateway.cli import main
    from inbox.audit import Action, record_audit

    runner = CliRunner()
    env = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}
    added = runner.invoke(main, ["channel", "add", "email", "--name", "Shop", "--address", "shop@example.com",
                                 "--imap-host", "imap.example.com", "--imap-username", "shop",
                                 "--imap-password", "first-secret-4711", "--smtp-host", "smtp.example.com"], env=env)
    changed = runner.invoke(main, ["channel", "set", "1", "imap_password=second-secret-4712", "smtp_port=465"], env=env)
    assert added.exit_code == 0, added.output
    assert changed.exit_code == 0, changed.output
    client, _, _ = _sign_in_as(app, state, "admin")
    with state.session_factory() as session:
        # A row written by other code with a secret in it still shows only that it changed.
        record_audit(session, None, Action.CHANNEL_CHANGED, "channel", 1, "Shop",
                     {"smtp_password": "third-secret-4713", "settings": {"api_token": "fourth-secret-4714"}})
        session.commit()

    page = client.get("/admin/audit").get_data(as_text=True)

    assert "secret-471" not in page
    assert page.count("changed (not shown)") == 3
    assert '<span class="audit-details__line">587 → 465</span>' in page
