"""Requests whose text contains NUL characters, which PostgreSQL text columns cannot store."""

from __future__ import annotations

import io

import pytest

from tests.support.conversations import receive

GRACE = "+15551230002"


@pytest.fixture
def headers(api_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def conversation_id(state, whatsapp_channel) -> int:
    return receive(state, whatsapp_channel.id, GRACE, "Where is my parcel?").conversation_id


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/conversations/{id}/messages", {"text": "a\x00b"}, "text"),
        ("POST", "/api/v1/conversations/{id}/notes", {"text": "a\x00b"}, "text"),
        ("POST", "/api/v1/canned-responses", {"title": "t\x00", "body": "b"}, "title"),
        ("PATCH", "/api/v1/contacts/1", {"name": "Grace", "notes": "x\x00"}, "notes"),
        (
            "POST", "/api/v1/conversations/bulk",
            {"conversation_ids": [1], "changes": {"add_labels": ["v\x00"]}}, "changes",
        ),
    ],
)
def test_json_with_nul_is_rejected(app, headers, conversation_id, method, path, body, field):
    client = app.test_client()

    response = client.open(path.format(id=conversation_id), method=method, json=body, headers=headers)

    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid"
    assert response.json["error"]["field"] == field


def test_query_with_nul_is_rejected(app, headers):
    response = app.test_client().get("/api/v1/contacts?q=a%00b", headers=headers)

    assert response.status_code == 400
    assert response.json["error"]["field"] == "q"


def test_form_with_nul_is_rejected(app, headers, conversation_id):
    form = {"text": "a\x00b"}

    response = app.test_client().post(f"/api/v1/conversations/{conversation_id}/messages", data=form, headers=headers)

    assert response.status_code == 400
    assert response.json["error"]["field"] == "text"


def test_file_name_with_nul_is_rejected(app, headers, conversation_id):
    form = {"text": "see file", "attachments": (io.BytesIO(b"data"), "a\x00.txt")}

    response = app.test_client().post(
        f"/api/v1/conversations/{conversation_id}/messages", data=form, headers=headers,
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    assert response.json["error"]["field"] == "attachments"


def test_webhook_with_nul_is_not_checked(app, whatsapp_channel):
    # Webhooks keep their raw payload, and the parsers replace NUL themselves.
    response = app.test_client().post(f"/webhooks/twilio/{whatsapp_channel.id}/messages", data={"Body": "a\x00b"})

    assert response.status_code == 403
