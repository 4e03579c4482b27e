"""Search and keyset pages over the JSON API: ``q`` on the conversation list, the newest page
of a thread and older pages on demand, and pages that stay whole while rows are added."""

from __future__ import annotations

from datetime import timedelta

import pytest

from inbox.models import Conversation, utcnow
from tests.support.conversations import receive


@pytest.fixture
def headers(api_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"}


def _number(index: int) -> str:
    return f"+1555{index:07d}"


def test_q_returns_matches_with_highlighted_parts(app, state, headers, whatsapp_channel):
    expected_id = receive(state, whatsapp_channel.id, _number(1), "The <script>alert(1)</script> heater is cold").conversation_id
    receive(state, whatsapp_channel.id, _number(2), "Unrelated")
    client = app.test_client()

    response = client.get("/api/v1/conversations?q=heater", headers=headers)

    assert response.status_code == 200
    assert [item["id"] for item in response.json["items"]] == [expected_id]
    search = response.json["items"][0]["search"]
    assert search["message_id"] is not None
    assert {"text": "heater", "match": True} in search["parts"]
    assert all(set(part) == {"text", "match"} for part in search["parts"])


def test_q_combines_with_view_filters(app, state, headers, whatsapp_channel):
    first = receive(state, whatsapp_channel.id, _number(1), "heater broken").conversation_id
    second = receive(state, whatsapp_channel.id, _number(2), "heater fine").conversation_id
    with state.session_factory() as session:
        session.get(Conversation, first).priority = "high"
        session.commit()
    client = app.test_client()

    found = client.get("/api/v1/conversations?q=heater&priority=high", headers=headers).json["items"]
    both = client.get("/api/v1/conversations?q=heater", headers=headers).json["items"]

    assert [item["id"] for item in found] == [first]
    assert {item["id"] for item in both} == {first, second}


@pytest.mark.parametrize("query", ['"', "*", "-", "a:b", "((", "NOT", "日本", "%00", "\\", "'; --", "x" * 1000])
def test_hostile_q_is_not_an_error(app, state, headers, whatsapp_channel, query):
    receive(state, whatsapp_channel.id, _number(1), "heater")
    response = app.test_client().get("/api/v1/conversations", query_string={"q": query}, headers=headers)
    assert response.status_code == 200
    assert isinstance(response.json["items"], list)


def test_q_requires_authentication(app):
    assert app.test_client().get("/api/v1/conversations?q=heater").status_code == 401


def test_conversation_pages_stay_whole(app, state, headers, whatsapp_channel):
    original = [receive(state, whatsapp_channel.id, _number(index), "hello").conversation_id for index in range(30)]
    # Ties on last_message_at are ordered by id.
    with state.session_factory() as session:
        same_time = utcnow() - timedelta(hours=1)
        for conversation_id in original[10:16]:
            session.get(Conversation, conversation_id).last_message_at = same_time
        session.commit()
    client = app.test_client()

    seen: list[int] = []
    cursor = None
    added = 100
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/conversations", query_string=params, headers=headers).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # New conversations arrive between pages and sort before the cursor.
        receive(state, whatsapp_channel.id, _number(added), "new")
        added += 1

    assert len(seen) == len(set(seen))
    assert set(original) <= set(seen)


def test_search_pages_have_no_duplicates(app, state, headers, whatsapp_channel):
    original = [receive(state, whatsapp_channel.id, _number(index), "heater").conversation_id for index in range(25)]
    client = app.test_client()

    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 10, "q": "heater", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/conversations", query_string=params, headers=headers).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        receive(state, whatsapp_channel.id, _number(len(seen) + 100), "heater again")

    assert len(seen) == len(set(seen))
    assert set(original) <= set(seen)


def test_thread_pages_newest_first(app, state, headers, whatsapp_channel):
    conversation_id = None
    for index in range(500):
        conversation_id = receive(state, whatsapp_channel.id, _number(1), f"message {index}").conversation_id
    client = app.test_client()

    detail = client.get(f"/api/v1/conversations/{conversation_id}", headers=headers).json
    texts = [message["text"] for message in detail["messages"]]
    assert texts == [f"message {index}" for index in range(450, 500)]
    assert detail["messages_before"] == detail["messages"][0]["id"]

    # A message that arrives meanwhile is newer than every page still to load.
    receive(state, whatsapp_channel.id, _number(1), "late message")
    before = detail["messages_before"]
    while before is not None:
        page = client.get(
            f"/api/v1/conversations/{conversation_id}/messages", query_string={"before": before, "limit": 200},
            headers=headers,
        ).json
        texts = [message["text"] for message in page["items"]] + texts
        before = page["before"]
    assert texts == [f"message {index}" for index in range(500)]


@pytest.mark.parametrize("before", ["abc", "-1", "0", "1.5", "99999999999999999999"])
def test_invalid_before_is_rejected(app, state, headers, whatsapp_channel, before):
    conversation_id = receive(state, whatsapp_channel.id, _number(1), "hello").conversation_id
    response = app.test_client().get(
        f"/api/v1/conversations/{conversation_id}/messages", query_string={"before": before}, headers=headers
    )
    assert response.status_code == 400
    assert response.json["error"]["field"] == "before"


def test_messages_of_unknown_conversation_is_404(app, headers):
    response = app.test_client().get("/api/v1/conversations/999/messages", headers=headers)
    assert response.status_code == 404
