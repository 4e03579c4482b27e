"""Several Switchboard processes share one live inbox: events cross between them through Redis.

``test_events_cross_web_and_worker_processes`` starts the deployment of docs/deployment.md
for real, through the ``switchboard`` console script. Two ``switchboard web`` processes and
one ``switchboard worker`` share one PostgreSQL database and one Redis. Dovecot is the
support mailbox and the loopback Twilio server is the WhatsApp provider. A python-socketio
client on each web process must receive the events caused through the other web process
(a customer's message, an agent's reply, a status change, a contact merge) and those the
worker causes (a reply's send status from the outbox dispatcher, an email it imported).

On the SQLite pass of the suite that test is skipped, on purpose and in CI too: several
processes are supported on PostgreSQL only (SQLite is the one-process ``switchboard run``
setup), the worker shares the outbox through PostgreSQL's row locks, and CI runs the suite
a second time on PostgreSQL, where the test runs. There, a missing Redis fails it in CI,
and a missing PostgreSQL already fails the migrated database fixture.

``test_event_from_another_process_reaches_client`` is the smaller check that runs on both
passes: an event committed in this test process reaches a client of a web process.
``test_event_batch_reaches_client_in_order`` checks that the events of one transaction
travel as one Redis message and still reach the client one by one, in id order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace

import pytest
import requests
from click.testing import CliRunner
from twilio.request_validator import RequestValidator

from channels.whatsapp import parse_inbound
from gateway import Switchboard, create_app, get_state
from gateway.cli import main
from gateway.simulate import build_message_form
from gateway.realtime import BATCH_METHOD, BatchingRedisManager
from inbox.agents import create_agent, create_api_token
from inbox.ingest import ingest_batch, ingest_message
from tests.conftest import AGENT_PASSWORD, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.gateway.conftest import SUPPORT
from tests.support.components import require
from tests.support.processes import (
    EventClient,
    ServiceProcess,
    free_port,
    redis_reachable,
    service_environment,
)
from tests.support.twilio_server import TwilioTestServer

REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
EVENT_NAMES = (
    "conversation.created", "conversation.updated", "message.created", "message.updated",
    "contact.updated", "contact.merged",
)
CUSTOMER_PHONE = "+15551230077"
CUSTOMER_EMAIL = "grace@example.org"


def _require_redis() -> None:
    require(redis_reachable(REDIS_URL), f"Redis is not reachable at {REDIS_URL}")


def _base_settings(config, **more: str | None) -> dict[str, str]:
    return service_environment(
        database_url=config.database_url,
        secret_key=config.secret_key,
        redis_url=REDIS_URL,
        instance_dir=config.instance_dir,
        log_level="WARNING",
        **more,
    )


@pytest.fixture
def processes() -> Iterator[ExitStack]:
    """An exit stack that stops every process and client pushed on it, even when a test fails."""
    with ExitStack() as stack:
        yield stack


def _start_web(stack: ExitStack, name: str, port: int, env: dict[str, str], log_dir) -> str:
    process = stack.enter_context(_stopping(ServiceProcess(name, ["web", "--port", str(port)], env, log_dir)))
    base_url = f"http://127.0.0.1:{port}"
    process.start().wait_until_serving(base_url)
    return base_url


class _stopping:
    """Context manager that stops a ServiceProcess on exit."""

    def __init__(self, process: ServiceProcess) -> None:
        self.process = process

    def __enter__(self) -> ServiceProcess:
        return self.process

    def __exit__(self, *exc_info: object) -> None:
        self.process.stop()


def _connect(stack: ExitStack, base_url: str, token: str) -> EventClient:
    client = EventClient(base_url, token, EVENT_NAMES).connect()
    stack.callback(client.disconnect)
    return client


def _web_and_sender(config, api_token, processes, tmp_path) -> tuple[EventClient, Switchboard]:
    """Start a web process with a connected client, and return that client and the state of
    an app in this process that shares the database and the Redis queue, not the server."""
    _require_redis()
    base_url = _start_web(processes, "web", free_port(), _base_settings(config), tmp_path)
    client = _connect(processes, base_url, api_token)
    state = get_state(create_app(replace(config, redis_url=REDIS_URL)))
    processes.callback(state.engine.dispose)
    return client, state


def test_event_from_another_process_reaches_client(config, agent, api_token, whatsapp_channel, processes, tmp_path):
    client, state = _web_and_sender(config, api_token, processes, tmp_path)

    form = build_message_form(whatsapp_channel, "+15551230000", "from the other process", None)
    with state.session_factory() as session:
        ingest_message(session, whatsapp_channel.id, parse_inbound(form, b"raw=from-other-process"))

    received = client.wait_for("message.created", lambda p: p["message"]["text"] == "from the other process", 10)
    assert isinstance(received["event_id"], int) and received["event_id"] >= 1


def test_event_batch_reaches_client_in_order(config, agent, api_token, whatsapp_channel, processes, tmp_path):
    client, state = _web_and_sender(config, api_token, processes, tmp_path)
    manager = state.socketio.server.manager
    assert isinstance(manager, BatchingRedisManager)
    published: list[dict] = []
    publish = manager._publish
    manager._publish = lambda data: (published.append(data), publish(data))[1]

    texts = [f"batched {index}" for index in range(4)]
    inbounds = [
        parse_inbound(build_message_form(whatsapp_channel, f"+1555123000{index}", text, None), text.encode())
        for index, text in enumerate(texts)
    ]
    with state.session_factory() as session, session.begin():
        ingest_batch(session, whatsapp_channel.id, inbounds)

    # One Redis message carried the transaction's events.
    assert len(published) == 1
    assert published[0]["method"] == BATCH_METHOD
    received = [client.wait_for("message.created", lambda p, text=text: p["message"]["text"] == text, 10)
                for text in texts]
    event_ids = [payload["event_id"] for payload in received]
    assert event_ids == sorted(event_ids)
    order = [event["payload"]["event_id"] for event in client.events]
    assert order == sorted(order)


def test_disabled_agent_disconnected_on_other_process(config, agent, api_token, state, processes, tmp_path):
    _require_redis()
    with state.session_factory() as session:
        admin = create_agent(session, "root@example.com", "Rita Root", AGENT_PASSWORD, "admin")
        admin_token = create_api_token(session, admin, "admin")
        session.commit()
    # The periodic check is an hour away, so only the recheck through Redis can close the socket.
    env = _base_settings(config, socket_check_interval="3600")
    base_url = _start_web(processes, "web", free_port(), env, tmp_path)
    ada = _connect(processes, base_url, api_token)
    root = _connect(processes, base_url, admin_token)
    other_process = create_app(replace(config, redis_url=REDIS_URL))
    processes.callback(get_state(other_process).engine.dispose)

    response = other_process.test_client().post(
        f"/api/v1/agents/{agent.id}/disable", headers={"Authorization": f"Bearer {admin_token}"}
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    deadline = time.monotonic() + 10
    while ada.client.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ada.client.connected, "the disabled agent's connection on the other web process stayed open"
    assert root.client.connected


def test_command_line_disable_closes_connection(config, agent, api_token, processes, tmp_path):
    _require_redis()
    env = _base_settings(config, socket_check_interval="3600")
    ada = _connect(processes, _start_web(processes, "web", free_port(), env, tmp_path), api_token)
    cli_env = {
        "SWITCHBOARD_DATABASE_URL": config.database_url,
        "SWITCHBOARD_INSTANCE_DIR": str(tmp_path / "cli"),
        "SWITCHBOARD_REDIS_URL": REDIS_URL,
    }

    result = CliRunner().invoke(main, ["agent", "disable", agent.email], env=cli_env, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "Their live connections close now." in result.output
    deadline = time.monotonic() + 10
    while ada.client.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ada.client.connected, "the connection of the agent disabled on the command line stayed open"


def test_command_line_disable_without_redis_explains(config, agent, tmp_path):
    cli_env = {
        "SWITCHBOARD_DATABASE_URL": config.database_url,
        "SWITCHBOARD_INSTANCE_DIR": str(tmp_path / "cli"),
        "SWITCHBOARD_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }

    result = CliRunner().invoke(main, ["agent", "disable", agent.email], env=cli_env, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "Ada Agent <ada@example.com> is disabled." in result.stdout
    assert "could not be reached, so their live connections close within 30 seconds" in result.stderr


def _same_event(first: dict, second: dict) -> dict:
    """Both clients got one stored event: the same id, the same content."""
    assert first["event_id"] == second["event_id"]
    assert first == second
    return first


def test_events_cross_web_and_worker_processes(
    config, agent, api_token, whatsapp_channel, email_channel, mailbox, processes, tmp_path
):
    if not config.database_url.startswith("postgresql"):
        pytest.skip("several processes run on PostgreSQL only; the PostgreSQL pass of the suite runs this test")
    _require_redis()
    twilio = processes.enter_context(
        TwilioTestServer(account_sid=TWILIO_ACCOUNT_SID, auth_token=TWILIO_AUTH_TOKEN, initial_status="sent")
    )

    # Step 1: two web processes and a worker. Twilio's status callbacks go to web 1.
    port_1, port_2 = free_port(), free_port()
    web_1_url = f"http://127.0.0.1:{port_1}"
    env = _base_settings(
        config,
        public_url=web_1_url,
        twilio_api_base_url=twilio.base_url,
        outbox_poll_interval="0.2",
        imap_poll_interval="1",
        whatsapp_send_rate="0",
        attachments_dir=str(tmp_path / "attachments"),
    )
    _start_web(processes, "web-1", port_1, env, tmp_path)
    web_2_url = _start_web(processes, "web-2", port_2, env, tmp_path)
    worker = processes.enter_context(_stopping(ServiceProcess("worker", ["worker"], env, tmp_path)))
    worker.start().wait_for_output("Switchboard worker running")
    on_1 = _connect(processes, web_1_url, api_token)
    on_2 = _connect(processes, web_2_url, api_token)
    api_1, api_2 = _api(web_1_url, api_token), _api(web_2_url, api_token)

    # Step 2: a customer's WhatsApp message through web 2's webhook reaches web 1's client.
    form = build_message_form(whatsapp_channel, CUSTOMER_PHONE, "Is my order on its way?", "Grace")
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    # Twilio signs the public URL, which is web 1's, whichever process the request reaches.
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(web_1_url + path, form)
    response = requests.post(web_2_url + path, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 200, response.text
    inbound = _same_event(*(
        client.wait_for("message.created", lambda p: p["message"]["text"] == "Is my order on its way?")
        for client in (on_1, on_2)
    ))
    conversation_id = inbound["message"]["conversation_id"]

    # Step 3: an agent's reply through web 1 reaches web 2's client.
    reply = api_1("POST", f"/conversations/{conversation_id}/messages", {"text": "It left the warehouse today."})
    created = _same_event(*(
        client.wait_for("message.created", lambda p: p["message"]["id"] == reply["id"]) for client in (on_2, on_1)
    ))
    assert created["message"]["author"]["type"] == "agent"

    # Step 4: the worker's outbox dispatcher sends it; its status reaches both clients.
    sent = _same_event(*(
        client.wait_for("message.updated", lambda p: p["message"]["id"] == reply["id"] and p["message"]["delivery_status"] == "sent")
        for client in (on_1, on_2)
    ))
    [resource] = twilio.wait_for_messages(1)
    assert resource["body"] == "It left the warehouse today."
    assert resource["status_callback"] == f"{web_1_url}/webhooks/twilio/{whatsapp_channel.id}/status"

    # Step 5: Twilio's delivery report to web 1 reaches web 2's client.
    assert twilio.post_status(resource["sid"], "delivered") == 204
    delivered = _same_event(*(
        client.wait_for("message.updated", lambda p: p["message"]["id"] == reply["id"] and p["message"]["delivery_status"] == "delivered")
        for client in (on_2, on_1)
    ))
    assert delivered["event_id"] > sent["event_id"]

    # Step 6: a status change through web 2 reaches web 1's client.
    api_2("PATCH", f"/conversations/{conversation_id}", {"status": "pending"})
    _same_event(*(
        client.wait_for("conversation.updated", lambda p: p["conversation"]["id"] == conversation_id and p["conversation"]["status"] == "pending")
        for client in (on_1, on_2)
    ))

    # Step 7: the worker imports a mail from Dovecot; both clients get it.
    mailbox.append(
        f"From: Grace Hopper <{CUSTOMER_EMAIL}>\r\nTo: {SUPPORT}\r\nSubject: Order 1234\r\n"
        f"Message-ID: <order-1234.{time.time_ns()}@example.org>\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\n"
        "Also, can I change the delivery address?\r\n".encode()
    )
    mail = _same_event(*(
        client.wait_for("message.created", lambda p: "change the delivery address" in p["message"]["text"], 30)
        for client in (on_1, on_2)
    ))
    assert mail["message"]["channel_kind"] == "email"

    # Step 8: merging the email contact into the WhatsApp one through web 2 reaches web 1's client.
    phone_contact = inbound["conversation"]["contact"]["id"]
    email_contact = mail["conversation"]["contact"]["id"]
    api_2("POST", f"/contacts/{phone_contact}/merge", {"other_id": email_contact})
    merged = _same_event(*(
        client.wait_for("contact.merged", lambda p: p["merged_contact_id"] == email_contact) for client in (on_1, on_2)
    ))
    assert {identity["value"] for identity in merged["contact"]["identities"]} == {CUSTOMER_PHONE, CUSTOMER_EMAIL}

    assert worker.running(), worker.output()


def _api(base_url: str, token: str):
    def call(method: str, path: str, body: dict) -> dict:
        response = requests.request(
            method, f"{base_url}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert response.ok, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    return call
