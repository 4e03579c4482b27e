"""Channel health on the sending side: the last send failure and the 24-hour count.

Each provider's failures come from its real test component: the Twilio-compatible server,
the Cloud API-compatible server (at send time and by status webhook) and an SMTP server.
The API, `switchboard channel list` and the channels page show the same figures.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from channels.email.parse import parse_email
from gateway import get_state
from gateway.cli import main
from inbox.agents import create_agent
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import Channel, Conversation, OutboxItem, SendFailure, utcnow
from inbox.send_failures import RETENTION, record_send_failure, send_failure_summaries
from tests.conftest import AGENT_PASSWORD, login
from tests.support.meta_live import (  # noqa: F401 - pytest fixtures
    CUSTOMER as META_CUSTOMER,
    agent_client,
    customer_says,
    dispatch as meta_dispatch,
    meta_app,
    meta_channel_id,
    meta_server,
    service,
)
from tests.support.meta_server import change, entry, status, status_error, webhook_body
from tests.support.smtp_server import SmtpTestServer
from tests.support.whatsapp import client, config, dispatch, post_inbound, twilio  # noqa: F401 - fixtures

SUPPORT = "support@shop.example"


def _sends(items: list[dict], channel_id: int) -> dict:
    return next(item for item in items if item["id"] == channel_id)["sends"]


def _reply(client, state, text: str) -> int:
    with state.session_factory() as session:
        conversation_id = session.scalar(select(Conversation.id).order_by(Conversation.id.desc()))
    response = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": text})
    assert response.status_code == 201, response.data
    return response.json["id"]


def test_healthy_channel_has_no_send_failures(client, whatsapp_channel):
    items = client.get("/api/v1/channels").json["items"]

    assert _sends(items, whatsapp_channel.id) == {"last_failure": None, "failed_last_24h": 0}


def test_twilio_failures_counted_with_code(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Hello?")
    _reply(client, state, "First answer")
    twilio.fail_next(500, 20500, "Internal Server Error")
    dispatch(state)  # a transient failure, retried later
    _reply(client, state, "Second answer")
    twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    with state.session_factory() as session:
        session.execute(SendFailure.__table__.update().values(failed_at=utcnow() - timedelta(minutes=5)))
        # The retry of the first answer is due now, and the second answer waits for it.
        session.execute(OutboxItem.__table__.update().values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    dispatch(state)

    sends = _sends(client.get("/api/v1/channels").json["items"], whatsapp_channel.id)

    assert sends["failed_last_24h"] == 2
    assert sends["last_failure"]["code"] == "21211"
    assert "not a valid phone number" in sends["last_failure"]["message"]
    assert sends["last_failure"]["at"] > (utcnow() - timedelta(minutes=1)).isoformat()[:19]


def test_meta_failures_at_send_and_by_webhook(meta_app, meta_server, service, meta_channel_id, agent_client):
    customer_says(meta_server, service, meta_channel_id, "Hello?")
    (conversation,) = agent_client.get("/conversations")["items"]
    path = f"/conversations/{conversation['id']}/messages"
    agent_client.request("POST", path, json={"text": "Sorry for the wait."})
    meta_server.fail_next(400, 131030, "Recipient phone number not in allowed list")
    meta_dispatch(meta_app)
    after_send = _sends(agent_client.get("/channels")["items"], meta_channel_id)

    agent_client.request("POST", path, json={"text": "Here is your invoice."})
    meta_dispatch(meta_app)
    (sent,) = meta_server.wait_for_messages(1)
    error = status_error(131026, "Message undeliverable", "The recipient has blocked this number.")
    document = webhook_body(entry(change(meta_server.phone_number_id,
                                         statuses=[status(sent["id"], "failed", META_CUSTOMER, [error])])))
    assert meta_server.deliver(f"{service.url}/webhooks/meta/{meta_channel_id}", document).status_code == 200
    after_webhook = _sends(agent_client.get("/channels")["items"], meta_channel_id)

    assert after_send["failed_last_24h"] == 1
    assert after_send["last_failure"]["code"] == "131030"
    assert "Recipient phone number not in allowed list" in after_send["last_failure"]["message"]
    assert after_webhook["failed_last_24h"] == 2
    assert after_webhook["last_failure"]["code"] == "131026"
    assert "blocked this number" in after_webhook["last_failure"]["message"]


def test_meta_window_error_is_a_send_failure(meta_app, meta_server, service, meta_channel_id, agent_client):
    customer_says(meta_server, service, meta_channel_id, "Hello?")
    (conversation,) = agent_client.get("/conversations")["items"]
    agent_client.request("POST", f"/conversations/{conversation['id']}/messages", json={"text": "It ships today."})
    meta_server.fail_next(400, 131047, "Re-engagement message")

    meta_dispatch(meta_app)

    sends = _sends(agent_client.get("/channels")["items"], meta_channel_id)
    assert sends["failed_last_24h"] == 1
    assert sends["last_failure"]["code"] == "131047"


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def email_channel(state, smtp) -> Channel:
    """An email channel whose mailbox is never read here: only its SMTP side is used."""
    settings = {
        "imap_host": "127.0.0.1", "imap_port": 9, "imap_username": SUPPORT, "imap_password": "unused",
        "imap_ssl": False, "smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_security": "none",
    }
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Shop Support", SUPPORT, settings)
        session.commit()
        return channel


def test_email_failure_carries_smtp_code(client, state, email_channel, smtp):
    raw = (
        b"From: Olga <olga@customer.example>\r\nTo: support@shop.example\r\nSubject: Refund\r\n"
        b"Message-ID: <refund-1@customer.example>\r\n\r\nWhere is my refund?\r\n"
    )
    with state.session_factory() as session:
        ingest_message(session, email_channel.id, parse_email(raw))
    smtp.reject_recipient("olga@customer.example", "550 5.1.1 Mailbox unavailable")
    _reply(client, state, "It went out yesterday.")

    dispatch(state)

    sends = _sends(client.get("/api/v1/channels").json["items"], email_channel.id)
    assert sends["failed_last_24h"] == 1
    assert sends["last_failure"]["code"] == "550"
    assert "Mailbox unavailable" in sends["last_failure"]["message"]


def test_summary_counts_24_hours_and_keeps_30_days(state, whatsapp_channel):
    now = utcnow()
    with state.session_factory() as session:
        for age, code in ((timedelta(days=40), "1"), (timedelta(hours=30), "2"), (timedelta(hours=2), "3")):
            record_send_failure(session, whatsapp_channel.id, f"failure {code}", error_code=code, now=now - age)
        session.commit()
        summary = send_failure_summaries(session, [whatsapp_channel.id], now)[whatsapp_channel.id]
        kept = session.scalar(select(func.count()).select_from(SendFailure))

    assert summary.failed_last_24h == 1
    assert summary.last_error_code == "3"
    assert summary.last_error_message == "failure 3"
    assert kept == 2  # the 40-day-old row fell out of the RETENTION window
    assert RETENTION == timedelta(days=30)


def test_cli_channel_list_shows_send_failures(state, database_url, tmp_path, whatsapp_channel):
    with state.session_factory() as session:
        record_send_failure(session, whatsapp_channel.id, "Message undeliverable:\nblocked", error_code="131026")
        session.commit()
    environment = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}

    result = CliRunner().invoke(main, ["channel", "list"], env=environment, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.endswith("\tMAILBOX\tFAILED SEND ATTEMPTS 24H\tLAST SEND FAILURE")
    columns = row.split("\t")
    # A WhatsApp channel has no mailbox to check.
    assert columns[6] == "-"
    assert columns[7] == "1"
    assert columns[8].endswith(" error 131026: Message undeliverable: blocked")
    assert columns[8][:4].isdigit()


def test_channels_page_shows_send_failures(app, state, whatsapp_channel):
    with state.session_factory() as session:
        create_agent(session, "root@example.com", "Root Admin", AGENT_PASSWORD, role="admin")
        record_send_failure(session, whatsapp_channel.id, "Twilio error 21211: invalid number", error_code="21211")
        session.commit()
    client = app.test_client()
    login(client, "root@example.com")

    page = client.get("/channels").get_data(as_text=True)

    assert "Failed send attempts in the last 24 hours (a retried reply counts once per attempt): <strong>1</strong>" in page
    assert "provider error 21211" in page
    assert "Twilio error 21211: invalid number" in page


def test_disabled_channel_keeps_send_failures(meta_app, meta_channel_id, agent_client):
    with get_state(meta_app).session_factory() as session:
        record_send_failure(session, meta_channel_id, "Something went wrong", error_code="131000")
        session.get(Channel, meta_channel_id).is_active = False
        session.commit()

    sends = _sends(agent_client.get("/channels")["items"], meta_channel_id)

    assert sends["failed_last_24h"] == 1
    assert sends["last_failure"]["code"] == "131000"
