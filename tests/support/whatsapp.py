"""WhatsApp test helpers: a Twilio test server wired into the app, signed webhooks, an API client.

Test modules import the fixtures they use by name, which makes them override the shared
``config`` fixture in that module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update
from twilio.request_validator import RequestValidator

from gateway import Switchboard, create_app, get_state
from gateway.simulate import build_message_form
from gateway.webhook_worker import WebhookWorker
from gateway.workers import OutboxDispatcher
from inbox.agents import create_agent, create_api_token
from inbox.models import Agent, Conversation, utcnow
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.twilio_server import TwilioTestServer

CUSTOMER = "+15551230000"
LOCAL = "http://localhost"


@pytest.fixture
def twilio():
    with TwilioTestServer(account_sid=TWILIO_ACCOUNT_SID, auth_token=TWILIO_AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def config(config, twilio):
    return replace(config, twilio_api_base_url=twilio.base_url)


@pytest.fixture
def client(app, api_token):
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
    return test_client


def post_inbound(client, channel, text: str, form: dict[str, str] | None = None):
    """Post a customer's WhatsApp message as Twilio would, signed with the channel's token,
    and ingest it as the webhook worker does."""
    form = queue_inbound(client, channel, text, form)
    ingest_webhooks(get_state(client.application))
    return form


def queue_inbound(client, channel, text: str, form: dict[str, str] | None = None):
    """Post a customer's WhatsApp message as ``post_inbound`` does, and leave it for the
    webhook worker. Returns the form."""
    form = form or build_message_form(channel, CUSTOMER, text, "Grace")
    path = f"/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200, response.data
    return form


def ingest_webhooks(state) -> int:
    """Ingest every stored webhook, as one pass of the webhook worker. Returns the messages stored."""
    return WebhookWorker(state, threading.Event()).ingest_all()


def post_status(client, channel, sid: str, status: str, error_code: str | None = None):
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": TWILIO_ACCOUNT_SID}
    if error_code:
        form.update(ErrorCode=error_code, ErrorMessage="Message failed to send")
    path = f"/webhooks/twilio/{channel.id}/status"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 204, response.data
    ingest_webhooks(get_state(client.application))


def close_window(state, hours: float = 25) -> None:
    """Move the customer's last message ``hours`` into the past."""
    with state.session_factory() as session:
        session.execute(update(Conversation).values(last_inbound_at=utcnow() - timedelta(hours=hours)))
        session.commit()


def dispatch(state) -> int:
    return OutboxDispatcher(state, threading.Event()).dispatch_due()


@contextmanager
def app_with(config, **changes) -> Iterator[tuple[Switchboard, FlaskClient, int]]:
    """Build a second app whose config has ``changes``, with an agent and an API client.

    Yields the app's state, a test client that sends the agent's API token, and the agent's id.
    """
    app = create_app(replace(config, **changes))
    state = get_state(app)
    with state.session_factory() as session:
        agent = create_agent(session, "rita@example.com", "Rita", "a long password")
        token = create_api_token(session, session.get(Agent, agent.id), "tests")
        session.commit()
        agent_id = agent.id
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    try:
        yield state, client, agent_id
    finally:
        state.engine.dispose()
