"""Fixtures and helpers for tests that run Switchboard live against the Cloud API test server.

Import the fixtures into a test module (``from tests.support.meta_live import ...``). The
service runs on a loopback port and sends to ``MetaTestServer``, which also plays Meta's side
of the webhooks.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
import requests

from gateway import create_app, get_state
from gateway.workers import OutboxDispatcher
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from inbox.models import Agent
from tests.support.live import LiveServer
from tests.support.meta_server import MetaTestServer, change, contact, entry, text_message, webhook_body

CUSTOMER = "15551230000"
WABA_ID = "102290129340398"


@pytest.fixture
def meta_server():
    with MetaTestServer() as server:
        yield server


@pytest.fixture
def meta_app(config, meta_server):
    app = create_app(replace(config, meta_api_base_url=meta_server.base_url))
    yield app
    get_state(app).engine.dispose()


@pytest.fixture
def service(meta_app):
    with LiveServer(meta_app) as server:
        yield server


@pytest.fixture
def meta_channel_id(meta_app, meta_server) -> int:
    """Add a Meta channel that names the test server's business account, and return its id."""
    with get_state(meta_app).session_factory() as session:
        channel = add_channel(
            session, "whatsapp", "WhatsApp Cloud", "+15550783881", meta_server.channel_settings(waba_id=WABA_ID)
        )
        session.commit()
        return channel.id


@pytest.fixture
def agent_client(meta_app, service) -> AgentClient:
    with get_state(meta_app).session_factory() as session:
        agent = create_agent(session, "ada@example.com", "Ada Agent", "a long password")
        session.commit()
        token = create_api_token(session, session.get(Agent, agent.id), "tests")
        session.commit()
    return AgentClient(service.url, token)


class AgentClient:
    """The agent's side: the JSON API of the running service, with a bearer token."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.base_url + "/api/v1" + path, headers=self.headers, timeout=15, **kwargs)

    def get(self, path: str) -> dict:
        response = self.request("GET", path)
        assert response.status_code == 200, response.text
        return response.json()

    def message(self, conversation_id: int, message_id: int) -> dict:
        messages = self.get(f"/conversations/{conversation_id}")["messages"]
        return next(m for m in messages if m["id"] == message_id)


def customer_writes(meta_server: MetaTestServer, service: LiveServer, channel_id: int, *messages: dict) -> None:
    """Post the customer's messages to the service as one signed webhook."""
    document = webhook_body(entry(change(
        meta_server.phone_number_id, messages=list(messages), contacts=[contact(CUSTOMER, "Grace")],
    )))
    response = meta_server.deliver(f"{service.url}/webhooks/meta/{channel_id}", document)
    assert response.status_code == 200, response.text


def customer_says(meta_server: MetaTestServer, service: LiveServer, channel_id: int, text: str) -> None:
    customer_writes(meta_server, service, channel_id, text_message(CUSTOMER, text))


def dispatch(meta_app) -> int:
    """Run one round of the outbox dispatcher and return how many sends it attempted."""
    return OutboxDispatcher(get_state(meta_app), threading.Event()).dispatch_due()
