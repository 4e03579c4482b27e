"""The JSON API: authentication on every route, CSRF, pagination, replies."""

from __future__ import annotations

import re

import pytest
from twilio.request_validator import RequestValidator

from gateway import get_state
from gateway.openapi import OPENAPI, ROUTE_ROLES
from gateway.simulate import build_message_form
from tests.conftest import TWILIO_AUTH_TOKEN, login
from tests.support.whatsapp import ingest_webhooks


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _routes() -> list[tuple[str, str]]:
    return [
        (method.upper(), "/api/v1" + _concrete(path))
        for path, operations in OPENAPI["paths"].items()
        for method in operations
    ]


@pytest.mark.parametrize(("method", "path"), _routes())
def test_every_documented_route_requires_credentials(app, method, path):
    response = app.test_client().open(path, method=method, json={})

    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


def test_every_documented_route_has_a_role():
    documented = {(path, method) for path, operations in OPENAPI["paths"].items() for method in operations}
    in_table = {(path, method) for path, operations in ROUTE_ROLES.items() for method in operations}
    assert documented == in_table
    assert {role for operations in ROUTE_ROLES.values() for role in operations.values()} <= {"agent", "manager", "admin"}


def _routes_above(role: str) -> list[tuple[str, str, str]]:
    rank = {"agent": 0, "manager": 1, "admin": 2}
    return [
        (method.upper(), "/api/v1" + _concrete(path), needed)
        for path, operations in ROUTE_ROLES.items()
        for method, needed in operations.items()
        if rank[needed] > rank[role]
    ]


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_routes_above_a_role_refuse_it(app, state, role):
    from inbox.agents import create_agent, create_api_token

    with state.session_factory() as session:
        created = create_agent(session, f"{role}@example.com", role.title(), "correct horse battery", role)
        token = create_api_token(session, created, "tests")
        session.commit()
    client = app.test_client()

    routes = _routes_above(role)
    refused = []
    for method, path, needed in routes:
        response = client.open(path, method=method, json={}, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 403 and response.json["error"]["code"] == "forbidden":
            refused.append((method, path))
        assert f"the {needed} role" in response.json["error"]["message"], (method, path, response.json)

    assert refused == [(method, path) for method, path, _ in routes]
    assert len(routes) >= (6 if role == "manager" else 14)


def test_every_api_rule_is_documented(app):
    documented = {"/api/v1" + path for path in OPENAPI["paths"]}
    rules = {
        re.sub(r"<(?:\w+:)?([^>]+)>", r"{\1}", rule.rule).replace("{conversation_id}", "{id}")
        .replace("{attachment_id}", "{id}").replace("{payload_id}", "{id}").replace("{contact_id}", "{id}")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
    }
    assert rules == documented


def test_invalid_bearer_token_is_refused(app, agent):
    response = app.test_client().get("/api/v1/conversations", headers={"Authorization": "Bearer sbt_wrong"})
    assert response.status_code == 401


def test_inbox_page_redirects_anonymous_to_login(app):
    response = app.test_client().get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_wrong_password_is_refused(app, agent):
    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as flask_session:
        token = flask_session["csrf_token"]
    response = client.post("/login", data={"email": agent.email, "password": "wrong password", "csrf_token": token})
    assert response.status_code == 200
    assert b"The email or password is wrong." in response.data
    assert client.get("/api/v1/me").status_code == 401


def test_login_without_csrf_token_is_refused(app, agent):
    from tests.conftest import AGENT_PASSWORD

    response = app.test_client().post("/login", data={"email": agent.email, "password": AGENT_PASSWORD})
    assert response.status_code == 400


def test_login_does_not_redirect_off_site(app, agent):
    from tests.conftest import AGENT_PASSWORD

    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as flask_session:
        token = flask_session["csrf_token"]
    response = client.post(
        "/login",
        data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": token, "next": "//evil.example/"},
    )
    assert response.headers["Location"] == "/"


def _inbound(app, channel, sender="+15551230000", text="hello"):
    form = build_message_form(channel, sender, text, None)
    path = f"/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature("http://localhost" + path, form)
    assert app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature}).status_code == 200
    ingest_webhooks(get_state(app))


def test_session_write_without_csrf_header_is_refused(app, agent, whatsapp_channel):
    _inbound(app, whatsapp_channel)
    client = app.test_client()
    login(client)

    response = client.post("/api/v1/conversations/1/messages", json={"text": "hi"})

    assert response.status_code == 403
    assert response.json["error"]["code"] == "csrf_failed"


def test_non_ascii_csrf_token_is_refused(app, agent, whatsapp_channel):
    _inbound(app, whatsapp_channel)
    client = app.test_client()
    login(client)

    response = client.post("/api/v1/conversations/1/messages", json={"text": "hi"}, headers={"X-CSRF-Token": "jeton-é"})

    assert response.status_code == 403
    assert response.json["error"]["code"] == "csrf_failed"


def test_login_with_non_ascii_csrf_token_is_refused(app, agent):
    from tests.conftest import AGENT_PASSWORD

    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": "jeton-€"})

    assert response.status_code == 400
    assert client.get("/api/v1/me").status_code == 401


def test_reply_with_session_and_csrf_is_queued(app, agent, whatsapp_channel):
    _inbound(app, whatsapp_channel)
    client = app.test_client()
    csrf = login(client)

    response = client.post("/api/v1/conversations/1/messages", json={"text": "On it!"}, headers={"X-CSRF-Token": csrf})

    assert response.status_code == 201
    assert response.json["delivery_status"] == "queued"
    assert response.json["author"] == {"type": "agent", "id": agent.id, "name": agent.name}
    thread = client.get("/api/v1/conversations/1").json
    assert [m["text"] for m in thread["messages"]] == ["hello", "On it!"]


def test_empty_reply_is_invalid(app, api_token, whatsapp_channel):
    _inbound(app, whatsapp_channel)
    response = app.test_client().post(
        "/api/v1/conversations/1/messages", json={"text": "   "}, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert response.status_code == 400
    assert response.json["error"] == {"code": "invalid", "message": "The reply is empty.", "field": "text"}


def test_conversations_page_newest_first_with_cursor(app, api_token, whatsapp_channel):
    for index in range(5):
        _inbound(app, whatsapp_channel, sender=f"+1555123000{index}", text=f"message {index}")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}

    first = client.get("/api/v1/conversations?limit=2", headers=headers).json
    second = client.get(f"/api/v1/conversations?limit=2&cursor={first['next_cursor']}", headers=headers).json
    third = client.get(f"/api/v1/conversations?limit=2&cursor={second['next_cursor']}", headers=headers).json

    assert first["last_event_id"] == 10  # two events for each of the five inbound messages
    snippets = [c["snippet"] for page in (first, second, third) for c in page["items"]]
    assert snippets == [f"message {i}" for i in (4, 3, 2, 1, 0)]
    assert third["next_cursor"] is None


def test_bad_cursor_and_limit_are_invalid(app, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    client = app.test_client()
    assert client.get("/api/v1/conversations?cursor=!!!", headers=headers).json["error"]["field"] == "cursor"
    assert client.get("/api/v1/conversations?limit=0", headers=headers).json["error"]["field"] == "limit"
    assert client.get("/api/v1/conversations?limit=x", headers=headers).status_code == 400


def test_missing_conversation_is_not_found(app, api_token):
    response = app.test_client().get("/api/v1/conversations/404", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_payloads_need_admin_role(app, api_token):
    response = app.test_client().get("/api/v1/payloads", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 403


def test_read_resets_unread_count(app, api_token, whatsapp_channel):
    _inbound(app, whatsapp_channel)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}
    assert client.get("/api/v1/conversations/1", headers=headers).json["unread_count"] == 1

    assert client.post("/api/v1/conversations/1/read", headers=headers).status_code == 204

    assert client.get("/api/v1/conversations/1", headers=headers).json["unread_count"] == 0


def test_message_schema_names_every_field_the_api_returns(app, api_token, whatsapp_channel):
    _inbound(app, whatsapp_channel)
    headers = {"Authorization": f"Bearer {api_token}"}
    message = app.test_client().get("/api/v1/conversations/1", headers=headers).json["messages"][0]

    assert set(message) == set(OPENAPI["components"]["schemas"]["Message"]["properties"])


def test_unknown_api_route_answers_json(app, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    client = app.test_client()

    missing = client.get("/api/v1/nothing-here", headers=headers)
    wrong_method = client.delete("/api/v1/conversations", headers=headers)

    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json["error"]["code"] == "method_not_allowed"


def test_out_of_range_ids_and_limits_are_rejected(app, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    client = app.test_client()

    assert client.get(f"/api/v1/conversations/{2**64}", headers=headers).status_code == 404
    assert client.get("/api/v1/conversations?limit=100000000000000000000000", headers=headers).status_code == 400
    assert client.post(f"/webhooks/twilio/{2**64}/messages", data={}).status_code == 404


def test_lowercase_bearer_scheme_is_accepted(app, api_token):
    response = app.test_client().get("/api/v1/me", headers={"Authorization": f"bearer {api_token}"})
    assert response.status_code == 200


def test_pages_carry_security_headers(app):
    response = app.test_client().get("/login")

    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_parallel_guesses_hit_the_login_throttle(app, agent):
    from concurrent.futures import ThreadPoolExecutor

    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as flask_session:
        token = flask_session["csrf_token"]
    cookie = client.get_cookie("switchboard_session").value

    def guess(index: int) -> int:
        guesser = app.test_client()
        guesser.set_cookie("switchboard_session", cookie)
        form = {"email": agent.email, "password": f"guess number {index}", "csrf_token": token}
        return guesser.post("/login", data=form).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(guess, range(30)))

    assert statuses.count(200) == 10
    assert statuses.count(429) == 20


def test_logout_ends_the_session_for_good(app, agent):
    client = app.test_client()
    csrf = login(client)
    with client.session_transaction() as flask_session:
        copied_cookie = dict(flask_session)

    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 302

    replayed = app.test_client()
    with replayed.session_transaction() as flask_session:
        flask_session.update(copied_cookie)
    assert replayed.get("/api/v1/me").status_code == 401


def test_password_change_ends_other_sessions(app, state, agent):
    from inbox.agents import set_password

    client = app.test_client()
    login(client)
    assert client.get("/api/v1/me").status_code == 200

    with state.session_factory() as session:
        set_password(session, agent.email, "a brand new password")
        session.commit()

    assert client.get("/api/v1/me").status_code == 401
