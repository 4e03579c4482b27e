"""A Meta WhatsApp conversation end to end: webhook in, agent reply out through the outbox, status back.

Switchboard runs on a loopback port and sends to the Cloud API-compatible test server, which
also plays Meta's side of the webhooks: it signs them with the app secret and posts them.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import gateway.workers
from gateway import get_state
from gateway.workers import OutboxDispatcher
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from inbox.models import Agent, OutboxItem, utcnow
from inbox.outbox import UNKNOWN_OUTCOME_ERROR
from tests.support.meta_live import meta_app, meta_server, service  # noqa: F401 - pytest fixtures
from tests.support.meta_server import (
    change,
    contact,
    entry,
    status,
    status_error,
    text_message,
    webhook_body,
)

CUSTOMER = "15551230000"


@pytest.fixture
def channel_and_token(meta_app, meta_server):
    """Add the Meta channel and an agent with an API token; return the channel id and the token."""
    state = get_state(meta_app)
    with state.session_factory() as session:
        channel = add_channel(session, "whatsapp", "WhatsApp Cloud", "+15550783881", meta_server.channel_settings())
        agent = create_agent(session, "ada@example.com", "Ada Agent", "a long password")
        session.commit()
        token = create_api_token(session, session.get(Agent, agent.id), "tests")
        session.commit()
        return channel.id, token


class AgentClient:
    """The agent's side: the JSON API of the running service, with a bearer token."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> dict:
        response = requests.get(self.base_url + "/api/v1" + path, headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def reply(self, conversation_id: int, text: str) -> dict:
        response = requests.post(
            f"{self.base_url}/api/v1/conversations/{conversation_id}/messages",
            json={"text": text}, headers=self.headers, timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()


def _customer_writes(meta_server, service, channel_id: int, text: str) -> None:
    document = webhook_body(entry(change(
        meta_server.phone_number_id,
        messages=[text_message(CUSTOMER, text)], contacts=[contact(CUSTOMER, "Grace")],
    )))
    response = meta_server.deliver(f"{service.url}/webhooks/meta/{channel_id}", document)
    assert response.status_code == 200, response.text


def _report(meta_server, service, channel_id: int, *reports: dict) -> None:
    document = webhook_body(entry(change(meta_server.phone_number_id, statuses=list(reports))))
    response = meta_server.deliver(f"{service.url}/webhooks/meta/{channel_id}", document)
    assert response.status_code == 200, response.text


def _dispatch(meta_app) -> int:
    return OutboxDispatcher(get_state(meta_app), threading.Event()).dispatch_due()


def _make_due(meta_app) -> None:
    with get_state(meta_app).session_factory() as session:
        for item in session.scalars(select(OutboxItem)):
            item.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.commit()


def _reply_to_new_customer(meta_server, service, channel_id: int, agent: AgentClient, text: str) -> tuple[int, int]:
    """Post a customer's message and the agent's reply ``text``. Returns the conversation and reply ids."""
    _customer_writes(meta_server, service, channel_id, "Hello?")
    (conversation,) = agent.get("/conversations")["items"]
    return conversation["id"], agent.reply(conversation["id"], text)["id"]


def _message(agent: AgentClient, conversation_id: int, message_id: int) -> dict:
    messages = agent.get(f"/conversations/{conversation_id}")["messages"]
    return next(m for m in messages if m["id"] == message_id)


def test_inbound_reply_and_delivery_status(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)

    # The customer writes, and a new conversation is listed for the agent.
    _customer_writes(meta_server, service, channel_id, "Has my parcel left?")
    (conversation,) = agent.get("/conversations")["items"]
    assert conversation["channel"]["kind"] == "whatsapp"
    assert conversation["contact"]["name"] == "Grace"
    assert conversation["contact"]["address"] == "+15551230000"
    assert conversation["snippet"] == "Has my parcel left?"

    # The agent replies, and the outbox sends it to the Cloud API.
    reply = agent.reply(conversation["id"], "It left this morning.")
    conversation_id, reply_id = conversation["id"], reply["id"]
    assert reply["delivery_status"] == "queued"
    assert _dispatch(meta_app) == 1
    (sent,) = meta_server.wait_for_messages(1)
    assert sent["to"] == "+15551230000"
    assert sent["text"]["body"] == "It left this morning."
    assert sent["phone_number_id"] == meta_server.phone_number_id

    # Meta reports the progress, and a late "sent" after "delivered" changes nothing.
    _report(meta_server, service, channel_id, status(sent["id"], "sent", CUSTOMER))
    assert _message(agent, conversation_id, reply_id)["delivery_status"] == "sent"
    _report(meta_server, service, channel_id,
            status(sent["id"], "delivered", CUSTOMER), status(sent["id"], "sent", CUSTOMER))
    assert _message(agent, conversation_id, reply_id)["delivery_status"] == "delivered"


def test_server_error_is_retried_and_sent_once(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, "Hello Grace!")
    meta_server.fail_next(500, 131000, "Something went wrong")

    _dispatch(meta_app)
    waiting = _message(agent, conversation_id, reply_id)
    _make_due(meta_app)
    _dispatch(meta_app)
    _dispatch(meta_app)

    assert waiting["retry"]["attempts"] == 1
    assert "131000" in waiting["retry"]["last_error"]
    assert len(meta_server.requests) == 2
    assert len(meta_server.messages) == 1
    sent = _message(agent, conversation_id, reply_id)
    assert sent["delivery_status"] == "queued"
    assert sent["retry"] is None


def test_rejected_reply_shows_meta_code(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, "Sorry for the wait.")
    meta_server.fail_next(400, 131030, "Recipient phone number not in allowed list",
                          "Add the recipient phone number to the recipient list and try again.")

    _dispatch(meta_app)

    failed = _message(agent, conversation_id, reply_id)
    assert failed["delivery_status"] == "failed"
    assert "131030" in failed["error"]
    assert "Recipient phone number not in allowed list" in failed["error"]
    assert "Add the recipient phone number" in failed["error"]
    assert meta_server.messages == []


def test_window_error_holds_reply(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, "It ships today.")
    meta_server.fail_next(400, 131047, "Re-engagement message",
                          "Message failed to send because more than 24 hours have passed.")

    _dispatch(meta_app)
    held_reply = _message(agent, conversation_id, reply_id)
    _customer_writes(meta_server, service, channel_id, "Any news?")
    _dispatch(meta_app)

    assert held_reply["held"]["reason"] == "window_error"
    assert "131047" in held_reply["error"]
    assert held_reply["delivery_status"] is None
    assert [m["text"]["body"] for m in meta_server.messages] == ["It ships today."]
    assert len(meta_server.requests) == 2
    assert _message(agent, conversation_id, reply_id)["held"] is None


def test_window_error_status_holds_reply(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, "It ships today.")
    _dispatch(meta_app)
    (first,) = meta_server.wait_for_messages(1)

    error = status_error(131047, "Re-engagement message", "More than 24 hours have passed.")
    _report(meta_server, service, channel_id, status(first["id"], "failed", CUSTOMER, [error]))
    held_reply = _message(agent, conversation_id, reply_id)
    _customer_writes(meta_server, service, channel_id, "Hello again")
    _dispatch(meta_app)

    assert held_reply["held"]["reason"] == "window_error"
    (_, second) = meta_server.wait_for_messages(2)
    assert second["text"]["body"] == "It ships today."
    assert second["id"] != first["id"]


def test_template_reply_needs_business_account(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    _customer_writes(meta_server, service, channel_id, "Hello?")
    (conversation,) = agent.get("/conversations")["items"]
    template = {"name": "order_update", "language": "en_US", "variables": {}}

    sent = requests.post(f"{service.url}/api/v1/conversations/{conversation['id']}/messages",
                         json={"template": template}, headers=agent.headers, timeout=10)
    listed = requests.get(f"{service.url}/api/v1/channels/{channel_id}/templates", headers=agent.headers, timeout=10)

    for response in (sent, listed):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "waba_id_missing"
        assert f"switchboard channel set {channel_id} waba_id=" in response.json()["error"]["message"]
    assert meta_server.template_listings == []


def test_failure_reported_by_webhook_reaches_the_agent(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, "Here is your invoice.")
    _dispatch(meta_app)
    (sent,) = meta_server.wait_for_messages(1)

    error = status_error(131026, "Message undeliverable", "The recipient has blocked this number.")
    _report(meta_server, service, channel_id, status(sent["id"], "failed", CUSTOMER, [error]))

    failed = _message(agent, conversation_id, reply_id)
    assert failed["delivery_status"] == "failed"
    assert failed["error"] == "Message undeliverable: The recipient has blocked this number. (error 131026)"


def test_abandoned_send_fails_with_unknown_outcome(meta_app, meta_server, service, channel_and_token, monkeypatch):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, "Hello Grace!")

    def database_down(*args, **kwargs):
        raise OperationalError("UPDATE outbox_items", {}, sqlite3.OperationalError("database is locked"))

    # The dispatcher sends, then cannot record the send, as if it died before the commit.
    monkeypatch.setattr(gateway.workers, "mark_sent", database_down)
    dying = OutboxDispatcher(get_state(meta_app), threading.Event())
    dying.RECORD_BACKOFF_SECONDS = 0
    dying.dispatch_due()
    monkeypatch.undo()
    lease = dying.attempt_lease("whatsapp", {"provider": "meta"}, looks_up_first=False)
    after_lease = OutboxDispatcher(
        get_state(meta_app), threading.Event(), clock=lambda: utcnow() + lease + timedelta(seconds=1)
    )
    after_lease.dispatch_due()
    after_lease.dispatch_due()

    # The Cloud API has no lookup of earlier sends, so the reply is not sent again.
    assert len(meta_server.requests) == 1
    failed = _message(agent, conversation_id, reply_id)
    assert failed["delivery_status"] == "failed"
    assert failed["error"] == UNKNOWN_OUTCOME_ERROR
