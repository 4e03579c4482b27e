"""The workflow API: conversation changes, bulk changes, merge, views, teams, labels, agents,
and automatic assignment to the agents whose browsers are connected."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
import socketio

from inbox.agents import create_api_token
from inbox.models import Agent, Conversation, Role, utcnow
from tests.conftest import login
from tests.support.conversations import add_agent, receive

GRACE = "+15551230001"
HEIDI = "+15551230002"
PRESENCE_WAIT_SECONDS = 10


def _token(state, agent: Agent) -> dict[str, str]:
    with state.session_factory() as session:
        token = create_api_token(session, session.get(Agent, agent.id), "tests")
        session.commit()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def headers(api_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def manager_headers(state) -> dict[str, str]:
    return _token(state, add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value))


def test_patch_changes_conversation_with_session_and_csrf(app, state, agent, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    client = app.test_client()
    csrf = login(client)
    until = (utcnow() + timedelta(hours=4)).replace(microsecond=0)

    refused = client.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "pending"})
    response = client.patch(
        f"/api/v1/conversations/{conversation_id}",
        json={"status": "snoozed", "snoozed_until": until.isoformat(), "priority": "high", "assignee_id": agent.id},
        headers={"X-CSRF-Token": csrf},
    )

    assert refused.status_code == 403
    assert response.status_code == 200
    assert response.json["status"] == "snoozed"
    assert response.json["snoozed_until"] == until.isoformat().replace("+00:00", "Z")
    assert response.json["priority"] == "high"
    assert response.json["assignee"] == {"id": agent.id, "name": "Ada Agent"}
    detail = client.get(f"/api/v1/conversations/{conversation_id}").json
    assert [activity["action"] for activity in detail["activities"]] == ["status", "priority", "assignee"]
    assert detail["activities"][0]["agent"] == {"id": agent.id, "name": "Ada Agent"}


def test_patch_errors_are_json_with_field(app, state, agent, headers, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    client = app.test_client()

    invalid = client.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "done"}, headers=headers)
    missing = client.patch("/api/v1/conversations/999", json={"status": "open"}, headers=headers)
    not_object = client.patch(f"/api/v1/conversations/{conversation_id}", json=["open"], headers=headers)

    assert (invalid.status_code, invalid.json["error"]["field"]) == (400, "status")
    assert missing.status_code == 404
    assert not_object.status_code == 400


def test_colleagues_conversation_is_forbidden(app, state, agent, headers, whatsapp_channel):
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    client = app.test_client()
    client.patch(f"/api/v1/conversations/{conversation_id}", json={"assignee_id": bob.id}, headers=headers)

    response = client.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=headers)

    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"
    assert "Bob Builder" in response.json["error"]["message"]


def test_bulk_rejection_lists_every_failing_conversation(app, state, agent, headers, whatsapp_channel):
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    ids = [receive(state, whatsapp_channel.id, number).conversation_id for number in (GRACE, HEIDI)]
    client = app.test_client()
    client.patch(f"/api/v1/conversations/{ids[1]}", json={"assignee_id": bob.id}, headers=headers)

    response = client.post(
        "/api/v1/conversations/bulk",
        json={"conversation_ids": [*ids, 999], "changes": {"status": "resolved"}},
        headers=headers,
    )

    assert response.status_code == 403
    error = response.json["error"]
    assert error["field"] == "conversation_ids"
    assert error["message"].startswith("Nothing was changed: 2 of 3 conversations")
    assert [(item["conversation_id"], item["code"]) for item in error["items"]] == [
        (ids[1], "forbidden"), (999, "not_found"),
    ]
    statuses = [client.get(f"/api/v1/conversations/{i}", headers=headers).json["status"] for i in ids]
    assert statuses == ["open", "open"]


def test_bulk_change_applies_labels_and_assignee(app, state, agent, headers, manager_headers, whatsapp_channel):
    ids = [receive(state, whatsapp_channel.id, number).conversation_id for number in (GRACE, HEIDI)]
    client = app.test_client()
    assert client.post("/api/v1/labels", json={"name": "Returns"}, headers=manager_headers).status_code == 201

    response = client.post(
        "/api/v1/conversations/bulk",
        json={"conversation_ids": ids, "changes": {"add_labels": ["returns"], "assignee_id": agent.id}},
        headers=headers,
    )

    assert response.status_code == 200
    assert [item["labels"] for item in response.json["items"]] == [[{"id": 1, "name": "Returns"}]] * 2
    assert {item["assignee"]["id"] for item in response.json["items"]} == {agent.id}


@pytest.mark.parametrize(
    "body",
    [{"changes": {"status": "open"}}, {"conversation_ids": [1]}, {"conversation_ids": [1], "changes": "open"}],
)
def test_bulk_request_shape_is_checked(app, agent, headers, body):
    response = app.test_client().post("/api/v1/conversations/bulk", json=body, headers=headers)
    assert response.status_code == 400


def test_merge_route_moves_messages(app, state, agent, headers, whatsapp_channel):
    first = receive(state, whatsapp_channel.id, GRACE, "first").conversation_id
    client = app.test_client()
    client.patch(f"/api/v1/conversations/{first}", json={"status": "resolved"}, headers=headers)
    with state.session_factory() as session:
        session.get(Conversation, first).last_message_at = utcnow() - timedelta(days=30)
        session.commit()
    second = receive(state, whatsapp_channel.id, GRACE, "second").conversation_id

    response = client.post(f"/api/v1/conversations/{second}/merge", json={"target_id": first}, headers=headers)
    bad = client.post(f"/api/v1/conversations/{first}/merge", json={"target_id": "x"}, headers=headers)
    again = client.post(f"/api/v1/conversations/{second}/merge", json={"target_id": first}, headers=headers)

    assert response.status_code == 200
    assert response.json["id"] == first
    thread = client.get(f"/api/v1/conversations/{first}", headers=headers).json
    assert [message["text"] for message in thread["messages"]] == ["first", "second"]
    closed = client.get(f"/api/v1/conversations/{second}", headers=headers).json
    assert (closed["status"], closed["merged_into_id"], closed["messages"]) == ("closed", first, [])
    assert bad.status_code == 400
    assert again.status_code == 409


def test_list_filters_and_counts(app, state, agent, headers, whatsapp_channel):
    mine = receive(state, whatsapp_channel.id, GRACE).conversation_id
    receive(state, whatsapp_channel.id, HEIDI)
    client = app.test_client()
    client.patch(f"/api/v1/conversations/{mine}", json={"assignee_id": agent.id}, headers=headers)

    listed = client.get("/api/v1/conversations?assignee=me&status=open", headers=headers).json
    bad = client.get("/api/v1/conversations?assignee=nobody", headers=headers)
    counts = client.get("/api/v1/conversations/counts", headers=headers).json

    assert [item["id"] for item in listed["items"]] == [mine]
    assert (bad.status_code, bad.json["error"]["field"]) == (400, "assignee")
    by_key = {view["key"]: view for view in counts["views"]}
    assert by_key["mine"]["count"] == 1
    assert by_key["unassigned"]["count"] == 1
    assert by_key["all"]["count"] == 2
    assert by_key["mine"]["params"] == {"assignee": "me", "status": "open"}
    assert counts["last_event_id"] > 0


def test_teams_and_labels_need_a_manager(app, state, agent, headers, manager_headers):
    client = app.test_client()

    assert client.post("/api/v1/teams", json={"name": "Support"}, headers=headers).status_code == 403
    assert client.post("/api/v1/labels", json={"name": "VIP"}, headers=headers).status_code == 403

    team = client.post("/api/v1/teams", json={"name": "Support", "agent_ids": [agent.id]}, headers=manager_headers)
    duplicate = client.post("/api/v1/teams", json={"name": "support"}, headers=manager_headers)
    renamed = client.patch(f"/api/v1/teams/{team.json['id']}", json={"name": "Tier 1"}, headers=manager_headers)
    label = client.post("/api/v1/labels", json={"name": "VIP"}, headers=manager_headers)
    invalid_label = client.post("/api/v1/labels", json={"name": "!!"}, headers=manager_headers)

    assert team.status_code == 201
    assert team.json["members"] == [{"id": agent.id, "name": "Ada Agent"}]
    assert duplicate.status_code == 409
    assert renamed.json["name"] == "Tier 1"
    assert label.status_code == 201
    assert invalid_label.json["error"]["field"] == "label"
    assert client.get("/api/v1/teams", headers=headers).json["items"][0]["name"] == "Tier 1"
    assert client.get("/api/v1/labels", headers=headers).json["items"] == [{"id": 1, "name": "VIP"}]


def test_agent_capacity_and_channel_team_need_a_manager(app, state, agent, headers, manager_headers, whatsapp_channel):
    client = app.test_client()
    team_id = client.post("/api/v1/teams", json={"name": "Support"}, headers=manager_headers).json["id"]

    assert client.patch(f"/api/v1/agents/{agent.id}", json={"max_open_conversations": 3}, headers=headers).status_code == 403
    capacity = client.patch(f"/api/v1/agents/{agent.id}", json={"max_open_conversations": 3}, headers=manager_headers)
    negative = client.patch(f"/api/v1/agents/{agent.id}", json={"max_open_conversations": -1}, headers=manager_headers)
    channel = client.put(f"/api/v1/channels/{whatsapp_channel.id}/default-team", json={"default_team_id": team_id},
                           headers=manager_headers)

    assert capacity.json["max_open_conversations"] == 3
    assert negative.status_code == 400
    assert channel.json["default_team"] == {"id": team_id, "name": "Support"}
    agents = client.get("/api/v1/agents", headers=headers).json["items"]
    assert {item["email"]: item["max_open_conversations"] for item in agents}["ada@example.com"] == 3


def _wait_for_online(base_url: str, headers: dict[str, str], agent_id: int, online: bool) -> None:
    deadline = time.monotonic() + PRESENCE_WAIT_SECONDS
    while time.monotonic() < deadline:
        items = requests.get(f"{base_url}/api/v1/agents", headers=headers, timeout=10).json()["items"]
        if {item["id"]: item["online"] for item in items}.get(agent_id) == online:
            return
        time.sleep(0.05)
    raise AssertionError(f"agent {agent_id} never became {'online' if online else 'offline'}")


def test_new_conversation_goes_to_connected_team_member(
    live_server, state, agent, api_token, manager_headers, whatsapp_channel
):
    base = live_server.url
    headers = {"Authorization": f"Bearer {api_token}"}
    team = requests.post(f"{base}/api/v1/teams", json={"name": "Support", "agent_ids": [agent.id]},
                         headers=manager_headers, timeout=10).json()
    requests.put(f"{base}/api/v1/channels/{whatsapp_channel.id}/default-team", json={"default_team_id": team["id"]},
                   headers=manager_headers, timeout=10)

    client = socketio.Client(reconnection=False)
    client.connect(base, auth={"token": api_token}, transports=["websocket"])
    try:
        _wait_for_online(base, headers, agent.id, True)
        assigned = receive(state, whatsapp_channel.id, GRACE).conversation_id
    finally:
        client.disconnect()
    _wait_for_online(base, headers, agent.id, False)
    queued = receive(state, whatsapp_channel.id, HEIDI).conversation_id

    first = requests.get(f"{base}/api/v1/conversations/{assigned}", headers=headers, timeout=10).json()
    second = requests.get(f"{base}/api/v1/conversations/{queued}", headers=headers, timeout=10).json()
    assert first["assignee"] == {"id": agent.id, "name": "Ada Agent"}
    assert second["assignee"] is None
    assert second["team"] == {"id": team["id"], "name": "Support"}
