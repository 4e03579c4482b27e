"""The collaboration API: internal notes, @mention notifications, canned responses, and the
stale-reply check that keeps an agent from replying over messages they have not seen."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace

import pytest
import requests

from gateway import create_app, get_state
from inbox.models import Agent, Message, Note, OutboxItem, Role
from inbox.notes import create_note
from tests.conftest import login
from tests.gateway.test_realtime import EVENT_WAIT_SECONDS, _session_cookie
from tests.gateway.test_realtime import Recorder as RealtimeRecorder
from tests.gateway.test_multiprocess import REDIS_URL, _base_settings, _require_redis, _start_web
from tests.gateway.test_workflow_api import _token
from tests.support.processes import EventClient, free_port
from tests.support.conversations import add_agent, receive

GRACE = "+15551230001"


@pytest.fixture
def headers(api_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def bob(state) -> Agent:
    return add_agent(state, "bob@example.com", "Bob Builder")


@pytest.fixture
def conversation_id(state, whatsapp_channel) -> int:
    return receive(state, whatsapp_channel.id, GRACE, "Where is my parcel?").conversation_id


def _messages(state, conversation_id: int) -> list[Message]:
    with state.session_factory() as session:
        return list(session.query(Message).filter_by(conversation_id=conversation_id).order_by(Message.id))


# ---- Notes ---------------------------------------------------------------------------------


def test_note_is_stored_and_never_queued(app, state, agent, headers, conversation_id, bob):
    client = app.test_client()

    response = client.post(
        f"/api/v1/conversations/{conversation_id}/notes", json={"text": "  Refund approved, @bob please send it. "},
        headers=headers,
    )

    assert response.status_code == 201
    assert response.json["text"] == "Refund approved, @bob please send it."
    assert response.json["author"] == {"id": agent.id, "name": "Ada Agent"}
    assert response.json["mentions"] == [{"id": bob.id, "name": "Bob Builder"}]
    with state.session_factory() as session:
        assert session.query(OutboxItem).count() == 0
        assert session.query(Note).count() == 1
    assert [m.direction for m in _messages(state, conversation_id)] == ["inbound"]
    detail = client.get(f"/api/v1/conversations/{conversation_id}", headers=headers).json
    assert [note["text"] for note in detail["notes"]] == ["Refund approved, @bob please send it."]
    assert detail["snippet"] == "Where is my parcel?"
    listed = client.get(f"/api/v1/conversations/{conversation_id}/notes", headers=headers).json
    assert [note["id"] for note in listed["items"]] == [response.json["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"text": "   "}, "text"), ({"text": 5}, "text"), ({}, "text"), ({"text": "x" * 10_001}, "text")],
)
def test_invalid_note_is_rejected(app, headers, conversation_id, body, field):
    response = app.test_client().post(f"/api/v1/conversations/{conversation_id}/notes", json=body, headers=headers)

    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_note_on_missing_conversation_is_not_found(app, headers):
    client = app.test_client()

    assert client.post("/api/v1/conversations/999/notes", json={"text": "hi"}, headers=headers).status_code == 404
    assert client.get("/api/v1/conversations/999/notes", headers=headers).status_code == 404


def test_note_with_session_needs_csrf(app, agent, conversation_id):
    client = app.test_client()
    csrf = login(client)

    refused = client.post(f"/api/v1/conversations/{conversation_id}/notes", json={"text": "hi"})
    accepted = client.post(
        f"/api/v1/conversations/{conversation_id}/notes", json={"text": "hi"}, headers={"X-CSRF-Token": csrf}
    )

    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "csrf_failed"
    assert accepted.status_code == 201


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/conversations/1/notes"),
        ("POST", "/api/v1/conversations/1/notes"),
        ("GET", "/api/v1/mentions"),
        ("POST", "/api/v1/mentions/read"),
        ("GET", "/api/v1/canned-responses"),
        ("POST", "/api/v1/canned-responses"),
        ("PATCH", "/api/v1/canned-responses/1"),
        ("DELETE", "/api/v1/canned-responses/1"),
    ],
)
def test_anonymous_requests_are_unauthorized(app, method, path):
    response = app.test_client().open(path, method=method, json={"text": "x"})

    assert response.status_code == 401


# ---- Mentions ------------------------------------------------------------------------------


def test_mentions_listed_and_marked_read(app, state, headers, conversation_id, bob):
    client = app.test_client()
    bob_headers = _token(state, bob)
    for text in ("@bob first", "@Bob Builder second", "no mention"):
        client.post(f"/api/v1/conversations/{conversation_id}/notes", json={"text": text}, headers=headers)

    listed = client.get("/api/v1/mentions", headers=bob_headers).json
    own = client.get("/api/v1/mentions", headers=headers).json

    assert listed["unread_count"] == 2
    assert [item["snippet"] for item in listed["items"]] == ["@Bob Builder second", "@bob first"]
    assert listed["items"][0]["conversation_id"] == conversation_id
    assert listed["items"][0]["author"]["name"] == "Ada Agent"
    assert own == {"items": [], "unread_count": 0}

    first_id = listed["items"][1]["id"]
    foreign = client.post("/api/v1/mentions/read", json={"mention_ids": [first_id]}, headers=headers)
    one = client.post("/api/v1/mentions/read", json={"mention_ids": [first_id]}, headers=bob_headers)
    unread = client.get("/api/v1/mentions?unread=1", headers=bob_headers).json
    rest = client.post("/api/v1/mentions/read", headers=bob_headers)

    assert foreign.status_code == 404
    assert one.json == {"marked_read": 1, "unread_count": 1}
    assert [item["snippet"] for item in unread["items"]] == ["@Bob Builder second"]
    assert rest.json == {"marked_read": 1, "unread_count": 0}


def test_mentions_limit_is_checked(app, headers):
    response = app.test_client().get("/api/v1/mentions?limit=0", headers=headers)

    assert response.status_code == 400
    assert response.json["error"]["field"] == "limit"


class Recorder(RealtimeRecorder):
    """A python-socketio client that queues every event it receives, and lists their types."""

    def types_until(self, event_type: str) -> list[str]:
        """Return the types of the events before the next ``event_type`` one."""
        types = []
        while (event := self.events.get(timeout=EVENT_WAIT_SECONDS)[0]) != event_type:
            types.append(event)
        return types

    def types_so_far(self) -> list[str]:
        types = []
        while not self.events.empty():
            types.append(self.events.get_nowait()[0])
        return types


def test_mention_event_reaches_only_mentioned(live_server, state, agent, headers, conversation_id, bob):
    carol = add_agent(state, "carol@example.com", "Carol")
    recorders = {who.id: Recorder() for who in (bob, carol)}
    for who in (bob, carol):
        recorders[who.id].client.connect(
            live_server.url, headers={"Cookie": _session_cookie(live_server.url, who.email)}, transports=["websocket"]
        )
    try:
        response = requests.post(
            f"{live_server.url}/api/v1/conversations/{conversation_id}/notes",
            json={"text": "@bob can you call Grace?"}, headers=headers, timeout=10,
        )
        assert response.status_code == 201

        bob_note = recorders[bob.id].next("note.created")
        mention = recorders[bob.id].next("mention.created")
        carol_note = recorders[carol.id].next("note.created")
        # Carol's socket got the note; a mention for her would have come before the next event.
        requests.post(
            f"{live_server.url}/api/v1/conversations/{conversation_id}/notes",
            json={"text": "marker"}, headers=headers, timeout=10,
        )
        carol_marker = recorders[carol.id].next("note.created")
    finally:
        for recorder in recorders.values():
            recorder.client.disconnect()

    assert bob_note["note"]["text"] == "@bob can you call Grace?"
    assert carol_note["note"]["id"] == bob_note["note"]["id"]
    assert mention["mention"]["note_id"] == bob_note["note"]["id"]
    assert mention["recipient_id"] == bob.id
    assert carol_marker["note"]["text"] == "marker"
    assert "mention.created" not in recorders[carol.id].types_so_far()


def test_mention_is_replayed_only_to_its_agent(live_server, state, agent, headers, conversation_id, bob):
    carol = add_agent(state, "carol@example.com", "Carol")
    requests.post(
        f"{live_server.url}/api/v1/conversations/{conversation_id}/notes",
        json={"text": "@bob and not carol"}, headers=headers, timeout=10,
    )
    replayed = {}
    for who in (bob, carol):
        recorder = Recorder()
        recorder.client.connect(
            live_server.url, headers={"Cookie": _session_cookie(live_server.url, who.email)},
            auth={"last_event_id": 0}, transports=["websocket"],
        )
        replayed[who.id] = recorder.types_until("presence.snapshot")
        recorder.client.disconnect()

    assert "mention.created" in replayed[bob.id]
    assert "note.created" in replayed[bob.id]
    assert "mention.created" not in replayed[carol.id]
    assert "note.created" in replayed[carol.id]


# ---- Stale replies -------------------------------------------------------------------------


def _reply(client, conversation_id: int, headers: dict, **body):
    return client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "On its way.", **body}, headers=headers)


def test_unseen_customer_message_holds_reply(app, state, headers, whatsapp_channel, conversation_id):
    client = app.test_client()
    seen = _messages(state, conversation_id)[-1].id
    receive(state, whatsapp_channel.id, GRACE, "Actually, cancel the order")

    held = _reply(client, conversation_id, headers, seen_message_id=seen)

    assert held.status_code == 409
    error = held.json["error"]
    assert error["code"] == "stale_reply"
    assert [m["text"] for m in error["messages"]] == ["Actually, cancel the order"]
    assert error["newest_message_id"] == error["messages"][0]["id"]
    with state.session_factory() as session:
        assert session.query(OutboxItem).count() == 0

    current = _reply(client, conversation_id, headers, seen_message_id=error["newest_message_id"])
    assert current.status_code == 201


def test_confirmed_stale_reply_is_sent(app, state, headers, whatsapp_channel, conversation_id):
    seen = _messages(state, conversation_id)[-1].id
    receive(state, whatsapp_channel.id, GRACE, "Hello again")

    sent = _reply(app.test_client(), conversation_id, headers, seen_message_id=seen, confirm_stale=True)

    assert sent.status_code == 201
    with state.session_factory() as session:
        assert session.query(OutboxItem).count() == 1


def test_only_colleagues_reply_makes_stale(app, state, headers, bob, conversation_id):
    client = app.test_client()
    seen = _messages(state, conversation_id)[-1].id

    mine = _reply(client, conversation_id, headers, seen_message_id=seen)
    again = _reply(client, conversation_id, headers, seen_message_id=seen)
    bobs = _reply(client, conversation_id, _token(state, bob), seen_message_id=seen)
    note = client.post(f"/api/v1/conversations/{conversation_id}/notes", json={"text": "FYI"}, headers=headers)
    after_bob = _reply(client, conversation_id, headers, seen_message_id=seen)

    assert mine.status_code == 201
    assert again.status_code == 201
    assert bobs.status_code == 409
    assert [m["author"]["name"] for m in bobs.json["error"]["messages"]] == ["Ada Agent", "Ada Agent"]
    assert note.status_code == 201
    assert after_bob.status_code == 201


def test_reply_without_seen_id_is_not_checked(app, state, headers, whatsapp_channel, conversation_id):
    receive(state, whatsapp_channel.id, GRACE, "More news")

    assert _reply(app.test_client(), conversation_id, headers).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [({"seen_message_id": -1}, "seen_message_id"), ({"seen_message_id": "abc"}, "seen_message_id"),
     ({"seen_message_id": True}, "seen_message_id"), ({"confirm_stale": "maybe"}, "confirm_stale")],
)
def test_bad_stale_fields_are_invalid(app, headers, conversation_id, body, field):
    response = _reply(app.test_client(), conversation_id, headers, **body)

    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_stale_check_works_for_multipart_replies(app, state, headers, whatsapp_channel, conversation_id):
    seen = _messages(state, conversation_id)[-1].id
    receive(state, whatsapp_channel.id, GRACE, "A photo follows")
    client = app.test_client()

    held = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        data={"text": "Thanks", "seen_message_id": str(seen)}, headers=headers, content_type="multipart/form-data",
    )
    sent = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        data={"text": "Thanks", "seen_message_id": str(seen), "confirm_stale": "1"}, headers=headers,
        content_type="multipart/form-data",
    )

    assert held.status_code == 409
    assert sent.status_code == 201


# ---- Canned responses ----------------------------------------------------------------------


@pytest.fixture
def manager_headers(state) -> dict[str, str]:
    return _token(state, add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value))


def test_canned_responses_by_role(app, state, headers, manager_headers, conversation_id):
    client = app.test_client()

    shared = client.post(
        "/api/v1/canned-responses",
        json={"title": "Greeting", "body": 'Hi {{ customer.first_name | default("there") }}, {{ agent.first_name }} here.', "shared": True},
        headers=manager_headers,
    )
    refused = client.post("/api/v1/canned-responses", json={"title": "X", "body": "Y", "shared": True}, headers=headers)
    personal = client.post("/api/v1/canned-responses", json={"title": "Sign-off", "body": "Best, {{ agent.name }}"}, headers=headers)
    listed = client.get(f"/api/v1/canned-responses?conversation_id={conversation_id}", headers=headers).json
    change_shared = client.patch(f"/api/v1/canned-responses/{shared.json['id']}", json={"body": "x"}, headers=headers)
    delete_shared = client.delete(f"/api/v1/canned-responses/{shared.json['id']}", headers=headers)
    manager_sees = client.get("/api/v1/canned-responses", headers=manager_headers).json
    manager_edits = client.patch(f"/api/v1/canned-responses/{personal.json['id']}", json={"body": "x"}, headers=manager_headers)
    own_edit = client.patch(f"/api/v1/canned-responses/{personal.json['id']}", json={"title": "Bye"}, headers=headers)
    own_delete = client.delete(f"/api/v1/canned-responses/{personal.json['id']}", headers=headers)

    assert shared.status_code == 201
    assert shared.json["shared"] is True
    assert refused.status_code == 403
    assert personal.status_code == 201
    assert [(item["title"], item["shared"], item["editable"]) for item in listed["items"]] == [
        ("Greeting", True, False), ("Sign-off", False, True),
    ]
    assert listed["items"][0]["rendered"] == "Hi there, Ada here."
    assert listed["items"][1]["rendered"] == "Best, Ada Agent"
    assert "customer.first_name" in [p["name"] for p in listed["placeholders"]]
    assert change_shared.status_code == 403
    assert delete_shared.status_code == 403
    assert [item["title"] for item in manager_sees["items"]] == ["Greeting"]
    assert "rendered" not in manager_sees["items"][0]
    assert manager_edits.status_code == 404
    assert own_edit.json["title"] == "Bye"
    assert own_delete.status_code == 204


def test_canned_response_errors(app, headers):
    client = app.test_client()

    bad_placeholder = client.post("/api/v1/canned-responses", json={"title": "T", "body": "{{ customer.password }}"}, headers=headers)
    missing = client.patch("/api/v1/canned-responses/999", json={"title": "T"}, headers=headers)
    bad_conversation = client.get("/api/v1/canned-responses?conversation_id=abc", headers=headers)
    no_conversation = client.get("/api/v1/canned-responses?conversation_id=999", headers=headers)
    not_object = client.post("/api/v1/canned-responses", json=["x"], headers=headers)

    assert bad_placeholder.status_code == 400
    assert bad_placeholder.json["error"]["field"] == "body"
    assert "customer.password" in bad_placeholder.json["error"]["message"]
    assert missing.status_code == 404
    assert bad_conversation.status_code == 400
    assert no_conversation.status_code == 404
    assert not_object.status_code == 400


def test_canned_response_delete_needs_csrf(app, agent):
    client = app.test_client()
    csrf = login(client)
    created = client.post("/api/v1/canned-responses", json={"title": "T", "body": "B"}, headers={"X-CSRF-Token": csrf})

    refused = client.delete(f"/api/v1/canned-responses/{created.json['id']}")
    deleted = client.delete(f"/api/v1/canned-responses/{created.json['id']}", headers={"X-CSRF-Token": csrf})

    assert refused.status_code == 403
    assert deleted.status_code == 204


def test_simultaneous_replies_send_only_one(live_server, state, headers, bob, conversation_id):
    """Two agents who saw the same message and send at the same moment: one reply goes out."""
    seen = _messages(state, conversation_id)[-1].id
    bob_headers = _token(state, bob)
    start = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def send(who: str, auth: dict[str, str]) -> None:
        start.wait()
        response = requests.post(
            f"{live_server.url}/api/v1/conversations/{conversation_id}/messages",
            json={"text": f"Answer from {who}", "seen_message_id": seen}, headers=auth, timeout=30,
        )
        statuses[who] = response.status_code

    threads = [threading.Thread(target=send, args=(who, auth)) for who, auth in (("ada", headers), ("bob", bob_headers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses.values()) == [201, 409]
    with state.session_factory() as session:
        assert session.query(OutboxItem).count() == 1


@pytest.fixture
def processes() -> Iterator[ExitStack]:
    """An exit stack that stops the web process and the clients pushed on it."""
    with ExitStack() as stack:
        yield stack


def test_mention_crosses_processes_to_its_agent(config, state, agent, bob, conversation_id, processes, tmp_path):
    """A note written by another process (over the Redis queue) notifies only the agent it names."""
    _require_redis()
    base_url = _start_web(processes, "web", free_port(), _base_settings(config), tmp_path)
    carol = add_agent(state, "carol@example.com", "Carol")
    clients = {}
    for who in (bob, carol):
        token = _token(state, who)["Authorization"].removeprefix("Bearer ")
        clients[who.id] = EventClient(base_url, token, ("note.created", "mention.created")).connect()
        processes.callback(clients[who.id].disconnect)
    sender = get_state(create_app(replace(config, redis_url=REDIS_URL)))
    processes.callback(sender.engine.dispose)

    for text in ("@bob over to you", "marker"):
        with sender.session_factory() as session:
            create_note(session, conversation_id, agent.id, text)
            session.commit()

    mention = clients[bob.id].wait_for("mention.created", lambda payload: True, 10)
    clients[carol.id].wait_for("note.created", lambda payload: payload["note"]["text"] == "marker", 10)
    assert mention["mention"]["snippet"] == "@bob over to you"
    assert [event["name"] for event in clients[carol.id].events] == ["note.created", "note.created"]
