"""The update template API: roles, CSRF, validation errors, previews, and the conversation estimate."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from inbox.models import Agent, AuditEvent, Channel, Conversation, Role, UpdateTemplate, utcnow
from tests.conftest import login
from tests.gateway.test_workflow_api import _token
from tests.support.contacts import add_email_channel, receive_mail
from tests.support.conversations import add_agent, receive

GRACE = "+15551230001"
BASE = "/api/v1/update-templates"

TEMPLATE = {
    "name": "Still working on it",
    "trigger": "no_agent_reply",
    "trigger_params": {"hours": 4, "business_hours": True},
    "conditions": {"channels": ["whatsapp"], "priorities": ["normal", "high"]},
    "email_subject": "Update on {{ reference }}",
    "email_body": "Hello {{ customer_name }},\nYou are number {{ queue_position }} in line.",
    "whatsapp_body": "Hi {{ customer_name }}, {{ reference }} is {{ status }}.",
    "whatsapp_content_sid": "HX" + "a" * 32,
    "whatsapp_variables": {"1": "customer_name", "2": "reference"},
}


@pytest.fixture
def manager(state) -> Agent:
    return add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)


@pytest.fixture
def manager_headers(state, manager) -> dict[str, str]:
    return _token(state, manager)


@pytest.fixture
def agent_headers(state, agent) -> dict[str, str]:
    return _token(state, agent)


def _create(client, headers, **changes) -> dict:
    response = client.post(BASE, json={**TEMPLATE, **changes}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# ---- Roles, authentication and CSRF -------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", BASE),
    ("POST", BASE),
    ("GET", f"{BASE}/catalogue"),
    ("GET", f"{BASE}/1"),
    ("PATCH", f"{BASE}/1"),
    ("DELETE", f"{BASE}/1"),
    ("POST", f"{BASE}/1/enable"),
    ("POST", f"{BASE}/1/disable"),
    ("POST", f"{BASE}/validate"),
    ("POST", f"{BASE}/preview"),
    ("POST", f"{BASE}/1/preview"),
    ("GET", "/updates"),
])
def test_agent_gets_403_and_anonymous_401(app, agent_headers, method, path):
    client = app.test_client()

    anonymous = client.open(path, method=method, json={}, headers={"Accept": "application/json"})
    as_agent = client.open(path, method=method, json=TEMPLATE, headers=agent_headers)

    assert anonymous.status_code == 401
    assert as_agent.status_code == 403
    assert as_agent.get_json()["error"]["code"] == "forbidden"


def test_updates_page_redirects_anonymous_to_login(app):
    response = app.test_client().get("/updates")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_cookie_writes_need_csrf(app, state, manager):
    client = app.test_client()
    csrf = login(client, manager.email)

    refused = client.post(BASE, json=TEMPLATE)
    wrong = client.post(BASE, json=TEMPLATE, headers={"X-CSRF-Token": "not-the-token"})
    accepted = client.post(BASE, json=TEMPLATE, headers={"X-CSRF-Token": csrf})

    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    assert wrong.status_code == 403
    assert accepted.status_code == 201
    assert client.get(BASE).get_json()["items"][0]["name"] == TEMPLATE["name"]


def test_manager_page_renders_for_manager(app, manager):
    client = app.test_client()
    login(client, manager.email)

    response = client.get("/updates")

    assert response.status_code == 200
    assert b'id="updates-app"' in response.data
    assert b"/updates/log" in response.data


def test_admin_may_manage_templates(app, state):
    admin = add_agent(state, "ada.admin@example.com", "Ada Admin", Role.ADMIN.value)

    response = app.test_client().post(BASE, json=TEMPLATE, headers=_token(state, admin))

    assert response.status_code == 201


# ---- Create, read, update, delete ---------------------------------------------------------


def test_create_returns_disabled_template(app, manager, manager_headers):
    client = app.test_client()

    created = _create(client, manager_headers)

    assert created["enabled"] is False
    assert created["created_by"] == {"id": manager.id, "name": "Mia Manager"}
    assert created["whatsapp_variables"] == {"1": "customer_name", "2": "reference"}
    assert client.get(f"{BASE}/{created['id']}", headers=manager_headers).get_json() == created


def test_invalid_template_gets_422_with_problems(app, state, manager_headers):
    body = {**TEMPLATE, "email_body": "Hello {{ customer_name }},\n{{ custmer_name }}\n{% if status %}"}

    response = app.test_client().post(BASE, json=body, headers=manager_headers)

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_template"
    assert error["field"] == "email_body"
    assert error["problems"] == [{
        "field": "email_body", "line": 3,
        "reason": "Unexpected end of template. Jinja was looking for the following tags: 'elif' or 'else' or "
                  "'endif'. The innermost block that needs to be closed is 'if'.",
    }]
    with state.session_factory() as session:
        assert session.query(UpdateTemplate).count() == 0


def test_empty_required_fields_named_by_api_field(app, state, manager_headers):
    # The editor words these problems with its own labels; the API keeps its field names.
    body = {"name": " ", "trigger": "no_agent_reply", "trigger_params": {}, "email_subject": "", "email_body": ""}

    response = app.test_client().post(BASE, json=body, headers=manager_headers)

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_template"
    assert error["field"] == "name"
    assert error["message"] == "The template is invalid: name: a name is required (and 2 more)"
    assert error["problems"] == [
        {"field": "name", "line": None, "reason": "a name is required"},
        {"field": "trigger_params", "line": None, "reason": "hours is required for no_agent_reply"},
        {"field": "email_body", "line": None,
         "reason": "write an email body, a WhatsApp body or a WhatsApp content SID"},
    ]
    with state.session_factory() as session:
        assert session.query(UpdateTemplate).count() == 0


def test_unknown_placeholder_rejected_on_save(app, manager_headers):
    response = app.test_client().post(BASE, json={**TEMPLATE, "whatsapp_body": "Hi\n{{ custmer_name }}"},
                                      headers=manager_headers)

    assert response.status_code == 422
    assert response.get_json()["error"]["problems"] == [{
        "field": "whatsapp_body", "line": 2,
        "reason": "unknown placeholder 'custmer_name': did you mean 'customer_name'?",
    }]


@pytest.mark.parametrize("body", [[], "text", None])
def test_non_object_body_gets_400(app, manager_headers, body):
    response = app.test_client().post(BASE, json=body, headers=manager_headers)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid"


def test_duplicate_name_gets_422(app, manager_headers):
    client = app.test_client()
    _create(client, manager_headers)

    response = client.post(BASE, json=TEMPLATE, headers=manager_headers)

    assert response.status_code == 422
    assert response.get_json()["error"]["problems"][0]["reason"] == "a template named 'Still working on it' already exists"


def test_patch_changes_only_given_fields(app, manager_headers):
    client = app.test_client()
    created = _create(client, manager_headers)

    response = client.patch(f"{BASE}/{created['id']}", json={"trigger_params": {"hours": 8}}, headers=manager_headers)
    renamed_to_itself = client.patch(f"{BASE}/{created['id']}", json={"name": TEMPLATE["name"]}, headers=manager_headers)

    assert response.status_code == 200
    assert response.get_json()["trigger_params"] == {"hours": 8}
    assert response.get_json()["email_body"] == TEMPLATE["email_body"]
    assert renamed_to_itself.status_code == 200


def test_patch_invalid_leaves_template_unchanged(app, manager_headers):
    client = app.test_client()
    created = _create(client, manager_headers)

    response = client.patch(f"{BASE}/{created['id']}", json={"trigger": "whenever"}, headers=manager_headers)
    after = client.get(f"{BASE}/{created['id']}", headers=manager_headers).get_json()

    assert response.status_code == 422
    assert response.get_json()["error"]["problems"][0]["field"] == "trigger"
    assert after["trigger"] == "no_agent_reply"


def test_enable_and_disable(app, manager_headers):
    client = app.test_client()
    created = _create(client, manager_headers)

    enabled = client.post(f"{BASE}/{created['id']}/enable", headers=manager_headers)
    disabled = client.post(f"{BASE}/{created['id']}/disable", headers=manager_headers)

    assert enabled.status_code == 200
    assert enabled.get_json()["enabled"] is True
    assert disabled.get_json()["enabled"] is False


def test_template_changes_in_audit_log(app, state, manager, manager_headers):
    client = app.test_client()
    created = _create(client, manager_headers)
    path = f"{BASE}/{created['id']}"

    client.patch(path, json={"email_body": "Hi {{ customer_name }}, still on it.", "name": "Renamed"},
                 headers=manager_headers)
    client.patch(path, json={"name": "Renamed"}, headers=manager_headers)  # no change: no row
    client.post(f"{path}/enable", headers=manager_headers)
    client.post(f"{path}/enable", headers=manager_headers)  # already enabled: no row
    client.post(f"{path}/disable", headers=manager_headers)
    client.delete(path, headers=manager_headers)

    with state.session_factory() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [row.action for row in rows] == [
        "update_template.created", "update_template.changed", "update_template.enabled",
        "update_template.disabled", "update_template.deleted",
    ]
    assert {row.actor_id for row in rows} == {manager.id}
    assert {(row.target_type, row.target_id) for row in rows} == {("update_template", created["id"])}
    assert rows[0].target_label == TEMPLATE["name"]
    assert rows[1].details == {"fields": ["email_body", "name"]}
    assert rows[4].target_label == "Renamed"
    logged = json.dumps([row.details for row in rows])
    assert "customer_name" not in logged
    assert "still on it" not in logged

    filtered = client.get("/api/v1/audit?action=update_template.&target=update_template", headers=_admin(state))
    assert filtered.status_code == 200
    assert len(filtered.get_json()["items"]) == 5


def _admin(state) -> dict[str, str]:
    return _token(state, add_agent(state, "ada@example.com", "Ada Admin", Role.ADMIN.value))


def test_enable_rejects_stored_invalid_template(app, state, manager_headers):
    client = app.test_client()
    created = _create(client, manager_headers)
    with state.session_factory() as session:
        session.get(UpdateTemplate, created["id"]).email_body = "{{ broken"
        session.commit()

    response = client.post(f"{BASE}/{created['id']}/enable", headers=manager_headers)

    assert response.status_code == 422
    assert response.get_json()["error"]["problems"][0]["field"] == "email_body"


def test_delete_then_404(app, manager_headers):
    client = app.test_client()
    created = _create(client, manager_headers)

    deleted = client.delete(f"{BASE}/{created['id']}", headers=manager_headers)
    again = client.get(f"{BASE}/{created['id']}", headers=manager_headers)

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert again.get_json()["error"]["code"] == "not_found"


def test_deleted_template_id_not_reused(app, manager_headers):
    client = app.test_client()
    first = _create(client, manager_headers, name="First")
    second = _create(client, manager_headers, name="Second")

    client.delete(f"{BASE}/{second['id']}", headers=manager_headers)
    third = _create(client, manager_headers, name="Third")

    assert third["id"] > second["id"] > first["id"]


def test_catalogue_lists_placeholders_and_triggers(app, manager_headers):
    data = app.test_client().get(f"{BASE}/catalogue", headers=manager_headers).get_json()

    assert [placeholder["name"] for placeholder in data["placeholders"]] == [
        "customer_name", "reference", "status", "agent_first_name", "queue_position",
        "first_response_estimate", "resolution_estimate", "reply_to",
    ]
    assert [trigger["name"] for trigger in data["triggers"]] == [
        "status_changed", "assigned", "no_agent_reply", "queue_wait", "first_response_at_risk", "periodic", "resolved",
    ]
    assert data["conditions"] == ["channels", "team_ids", "priorities", "labels", "statuses"]


# ---- Validate and preview -----------------------------------------------------------------


def test_validate_only_saves_nothing(app, state, manager_headers):
    client = app.test_client()

    valid = client.post(f"{BASE}/validate", json=TEMPLATE, headers=manager_headers)
    invalid = client.post(f"{BASE}/validate", json={**TEMPLATE, "conditions": {"channels": ["sms"]}},
                          headers=manager_headers)

    assert valid.status_code == 200
    assert valid.get_json() == {"valid": True, "problems": []}
    assert invalid.status_code == 422
    assert invalid.get_json()["error"]["problems"][0]["field"] == "conditions"
    with state.session_factory() as session:
        assert session.query(UpdateTemplate).count() == 0


def test_preview_with_sample_data(app, manager_headers):
    response = app.test_client().post(f"{BASE}/preview", json={"template": TEMPLATE}, headers=manager_headers)

    data = response.get_json()
    assert response.status_code == 200
    assert data["conversation"] is None
    assert data["applies"] is None
    # As sent: the reference that {{ reference }} printed becomes the one that threads replies.
    assert data["rendered"]["subject"] == "Update on [#1042]"
    assert data["rendered"]["email_body"] == "Hello Maria,\nYou are number 3 in line."
    assert data["rendered"]["whatsapp_variables"] == {"1": "Maria", "2": "#1042"}


@pytest.mark.parametrize("pick", ["id", "#id", "# id", "text id"])
def test_preview_against_real_conversation(app, state, manager_headers, whatsapp_channel, pick):
    conversation_id = receive(state, whatsapp_channel.id, GRACE, "Where is my parcel?").conversation_id
    with state.session_factory() as session:
        session.get(Conversation, conversation_id).contact.name = "Grace Hopper"
        session.commit()
    chosen = {"id": conversation_id, "#id": f"#{conversation_id}", "# id": f"# {conversation_id}",
              "text id": str(conversation_id)}[pick]

    response = app.test_client().post(
        f"{BASE}/preview", json={"template": TEMPLATE, "conversation": chosen}, headers=manager_headers,
    )

    data = response.get_json()
    assert response.status_code == 200, data
    assert data["conversation"]["id"] == conversation_id
    assert data["applies"] is True
    assert data["context"]["customer_name"] == "Grace Hopper"
    assert data["rendered"]["whatsapp_body"] == f"Hi Grace Hopper, #{conversation_id} is being worked on."
    assert data["rendered"]["email_body"] == "Hello Grace Hopper,\nYou are number 1 in line."


def test_preview_names_version_sent(app, state, manager_headers, whatsapp_channel):
    client = app.test_client()
    whatsapp_id = receive(state, whatsapp_channel.id, GRACE, "Where is my parcel?").conversation_id
    email_id = receive_mail(state, add_email_channel(state).id, "ada@customer.example", "Refund?").conversation_id
    without_sid = {**TEMPLATE, "whatsapp_content_sid": None}

    def sends(template: dict, conversation: int | None) -> str | None:
        response = client.post(f"{BASE}/preview", json={"template": template, "conversation": conversation},
                               headers=manager_headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["sends"]

    assert sends(TEMPLATE, None) is None
    assert sends(TEMPLATE, email_id) == "email"
    assert sends({**TEMPLATE, "email_subject": "", "email_body": ""}, email_id) is None
    assert sends(TEMPLATE, whatsapp_id) == "whatsapp_body"
    # The customer's last message is over 24 hours old: only the approved template may go.
    with state.session_factory() as session:
        session.get(Conversation, whatsapp_id).last_inbound_at = utcnow() - timedelta(hours=25)
        session.commit()
    assert sends(TEMPLATE, whatsapp_id) == "whatsapp_template"
    assert sends(without_sid, whatsapp_id) is None


def test_preview_says_why_nothing_is_sent(app, state, manager_headers, whatsapp_channel):
    client = app.test_client()
    whatsapp_id = receive(state, whatsapp_channel.id, GRACE, "Where is my parcel?").conversation_id
    email_id = receive_mail(state, add_email_channel(state).id, "ada@customer.example", "Refund?").conversation_id
    email_only = {**TEMPLATE, "whatsapp_body": "", "whatsapp_content_sid": None, "whatsapp_variables": {}}
    whatsapp_only = {**TEMPLATE, "email_subject": "", "email_body": ""}
    without_sid = {**TEMPLATE, "whatsapp_content_sid": None}
    any_channel = {"channels": ["email", "whatsapp"]}

    def preview(template: dict, conversation: int | None) -> dict:
        response = client.post(f"{BASE}/preview", json={"template": template, "conversation": conversation},
                               headers=manager_headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def code(template: dict, conversation: int | None) -> str | None:
        reason = preview(template, conversation)["nothing_reason"]
        return reason["code"] if reason else None

    # No reason when an update goes or no conversation was picked.
    assert code(TEMPLATE, None) is None
    assert code(TEMPLATE, whatsapp_id) is None
    assert code({**TEMPLATE, "conditions": any_channel}, email_id) is None

    # The customer wrote minutes ago, but the template has nothing for WhatsApp.
    answer = preview(email_only, whatsapp_id)
    assert answer["sends"] is None
    assert answer["nothing_reason"] == {
        "code": "no_content",
        "message": "The template has no WhatsApp body and no approved template (Content SID).",
    }
    answer = preview({**whatsapp_only, "conditions": any_channel}, email_id)
    assert answer["nothing_reason"] == {"code": "no_content", "message": "The template has no email body."}

    # Conditions that leave the conversation out come first, even when a version would go.
    answer = preview({**TEMPLATE, "conditions": {"channels": ["email"]}}, whatsapp_id)
    assert answer["sends"] == "whatsapp_body"
    assert answer["nothing_reason"]["code"] == "conditions_not_met"
    assert answer["nothing_reason"]["message"] == "The conversation does not meet the template's conditions."
    assert code({**email_only, "conditions": {"channels": ["email"]}}, whatsapp_id) == "conditions_not_met"

    # The customer's last message is over 24 hours old, and only the approved template may go.
    with state.session_factory() as session:
        session.get(Conversation, whatsapp_id).last_inbound_at = utcnow() - timedelta(hours=25)
        session.commit()
    assert code(TEMPLATE, whatsapp_id) is None
    answer = preview(without_sid, whatsapp_id)
    assert answer["sends"] is None
    assert answer["nothing_reason"]["code"] == "outside_window"
    assert "24-hour window is closed" in answer["nothing_reason"]["message"]

    # A channel on Meta's API cannot send a Twilio Content SID.
    with state.session_factory() as session:
        channel = session.get(Channel, whatsapp_channel.id)
        channel.settings = {**(channel.settings or {}), "provider": "meta"}
        session.commit()
    assert code(TEMPLATE, whatsapp_id) == "outside_window"
    answer = preview({**TEMPLATE, "whatsapp_body": ""}, whatsapp_id)
    assert answer["nothing_reason"]["code"] == "no_content"
    assert "cannot send an approved template by its Content SID" in answer["nothing_reason"]["message"]


def _zone_at_local_hour(hour: int) -> str:
    """Return a fixed-offset IANA zone whose local time now is within the given hour."""
    offset = (hour - utcnow().hour) % 24
    if offset > 14:
        offset -= 24
    # The Etc/GMT names count the other way: Etc/GMT-3 is three hours ahead of UTC.
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def test_preview_says_when_quiet_hours_hold(app, state, manager_headers):
    client = app.test_client()
    email_id = receive_mail(state, add_email_channel(state).id, "ada@customer.example", "Refund?").conversation_id
    template = {**TEMPLATE, "conditions": {"channels": ["email"]}}

    def preview_for_zone(zone: str) -> dict:
        with state.session_factory() as session:
            session.get(Conversation, email_id).contact.time_zone = zone
            session.commit()
        response = client.post(f"{BASE}/preview", json={"template": template, "conversation": email_id},
                               headers=manager_headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    night_zone = _zone_at_local_hour(2)
    night = preview_for_zone(night_zone)
    assert night["sends"] == "email"
    assert night["nothing_reason"] is None
    assert night["deferred"]["code"] == "quiet_hours"
    assert night["deferred"]["message"].startswith(f"Held until 08:00 ({night_zone})")
    assert "quiet hours (21:00–08:00)" in night["deferred"]["message"]
    until = datetime.fromisoformat(night["deferred"]["until"].replace("Z", "+00:00"))
    assert until.astimezone(ZoneInfo(night_zone)).strftime("%H:%M") == "08:00"
    assert timedelta(hours=5) < until - utcnow() <= timedelta(hours=6)

    day = preview_for_zone(_zone_at_local_hour(12))
    assert day["sends"] == "email"
    assert day["deferred"] is None

    # Nothing is deferred when nothing would be sent.
    with state.session_factory() as session:
        session.get(Conversation, email_id).contact.time_zone = night_zone
        session.commit()
    response = client.post(f"{BASE}/preview", json={"template": {**template, "email_body": "", "email_subject": ""},
                                                    "conversation": email_id}, headers=manager_headers)
    assert response.get_json()["deferred"] is None


def test_preview_reports_conditions_not_met(app, state, manager_headers, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    body = {"template": {**TEMPLATE, "conditions": {"channels": ["email"]}}, "conversation": conversation_id}

    response = app.test_client().post(f"{BASE}/preview", json=body, headers=manager_headers)

    assert response.get_json()["applies"] is False


def test_preview_of_saved_template(app, state, manager_headers, whatsapp_channel):
    client = app.test_client()
    created = _create(client, manager_headers)
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id

    response = client.post(f"{BASE}/{created['id']}/preview", json={"conversation": conversation_id},
                           headers=manager_headers)
    sample = client.post(f"{BASE}/{created['id']}/preview", headers=manager_headers)

    assert response.status_code == 200
    assert response.get_json()["rendered"]["subject"] == f"Update on [#{conversation_id}]"
    assert sample.status_code == 200
    assert sample.get_json()["rendered"]["subject"] == "Update on [#1042]"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"template": TEMPLATE, "conversation": 999999}, 404, "not_found"),
    ({"template": TEMPLATE, "conversation": "latest"}, 400, "invalid"),
    ({"template": TEMPLATE, "conversation": True}, 400, "invalid"),
    ({"template": "Hello"}, 400, "invalid"),
    ({"template": {**TEMPLATE, "email_body": "{{ ''.__class__ }}"}}, 422, "invalid_template"),
])
def test_preview_bad_input(app, manager_headers, body, status, code):
    response = app.test_client().post(f"{BASE}/preview", json=body, headers=manager_headers)

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


# ---- The estimate -------------------------------------------------------------------------


def test_agent_reads_conversation_estimate(app, state, agent_headers, whatsapp_channel):
    first = receive(state, whatsapp_channel.id, GRACE).conversation_id
    second = receive(state, whatsapp_channel.id, "+15551230002").conversation_id
    client = app.test_client()

    estimate = client.get(f"/api/v1/conversations/{second}/estimate", headers=agent_headers)
    missing = client.get("/api/v1/conversations/999999/estimate", headers=agent_headers)
    anonymous = client.get(f"/api/v1/conversations/{first}/estimate")

    assert estimate.status_code == 200
    assert estimate.get_json() == {
        "queue_position": 2, "first_response": None, "resolution": None, "basis": None, "samples": 0,
    }
    assert missing.status_code == 404
    assert anonymous.status_code == 401
