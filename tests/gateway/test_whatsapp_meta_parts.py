"""Long replies on a Meta Cloud API channel go out in parts of Meta's 4,096-character limit,
and attachments there are rejected when the reply is written."""

from __future__ import annotations

import requests

from channels.whatsapp.parts import utf16_length
from tests.gateway.test_meta_flow import (  # noqa: F401 - fixtures
    CUSTOMER,
    AgentClient,
    _dispatch,
    _message,
    _reply_to_new_customer,
    _report,
    channel_and_token,
    meta_app,
    meta_server,
    service,
)
from tests.support.meta_server import status

LONG_TEXT = " ".join(f"Step {n}: check the parcel 📦 and its label." for n in range(200))


def test_long_meta_reply_goes_in_parts(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, LONG_TEXT)

    sent_count = _dispatch(meta_app)

    sent = meta_server.wait_for_messages(sent_count)
    bodies = [message["text"]["body"] for message in sent]
    assert len(bodies) >= 2
    assert all(utf16_length(body) <= 4096 for body in bodies)
    assert " ".join(bodies).split() == LONG_TEXT.split()
    for message in sent:
        _report(meta_server, service, channel_id, status(message["id"], "delivered", CUSTOMER))
    reply = _message(agent, conversation_id, reply_id)
    assert [part["provider_message_id"] for part in reply["parts"]] == [message["id"] for message in sent]
    assert reply["delivery_status"] == "delivered"


def test_meta_reply_with_file_is_rejected(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, _ = _reply_to_new_customer(meta_server, service, channel_id, agent, "Hello")

    response = requests.post(
        f"{service.url}/api/v1/conversations/{conversation_id}/messages",
        data={"text": "the label"}, files={"attachments": ("label.png", b"\x89PNG", "image/png")},
        headers=agent.headers, timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "attachments"
