"""The webhook queue: Twilio webhooks acknowledged once stored, then ingested by the webhook worker."""

from __future__ import annotations

import queue
import threading
import time
from urllib.parse import urlencode

import pytest
import requests
import socketio
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from twilio.request_validator import RequestValidator

import gateway.webhook_worker
import inbox.ingest
from gateway import create_app, get_state
from gateway.reprocess import MESSAGE_FORMATS, parse_raw
from gateway.simulate import build_message_form
from gateway.webhook_worker import WebhookWorker, wake_webhook_workers
from inbox.events import add_publisher
from inbox.models import Message, RawPayload
from inbox.webhook_queue import count_pending, ingest_pending, queue_payload
from tests.conftest import TWILIO_AUTH_TOKEN
from tests.support.database import messages_rejected
from tests.support.whatsapp import ingest_webhooks

LOCAL = "http://localhost"


def _post(client, channel, text: str, sender: str = "+15551230000", base_url: str = LOCAL):
    form = build_message_form(channel, sender, text, None)
    path = f"/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(base_url + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200, response.data
    return form


def _texts(state) -> list[str]:
    with state.session_factory() as session:
        return list(session.scalars(select(Message.text).order_by(Message.id)))


def _payloads(state) -> list[tuple[str, str | None]]:
    with state.session_factory() as session:
        return [tuple(row) for row in session.execute(select(RawPayload.status, RawPayload.error).order_by(RawPayload.id))]


def _wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.02)
    return True


def test_webhook_acknowledged_before_ingestion(app, state, whatsapp_channel):
    client = app.test_client()

    _post(client, whatsapp_channel, "where is my parcel?")

    assert _texts(state) == []
    assert _payloads(state) == [("pending", None)]

    stop = threading.Event()
    worker = WebhookWorker(state, stop)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert _wait_until(lambda: _texts(state) == ["where is my parcel?"])
    finally:
        stop.set()
        worker.wakeup.set()
        thread.join(10)
    assert _payloads(state) == [("processed", None)]


def test_replay_before_ingestion_is_no_op(app, state, whatsapp_channel):
    client = app.test_client()
    form = _post(client, whatsapp_channel, "hello")
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)

    replay = client.post(path, data=form, headers={"X-Twilio-Signature": signature})

    assert replay.status_code == 200
    assert _payloads(state) == [("pending", None)]
    assert ingest_webhooks(state) == 1
    after_ingest = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert after_ingest.status_code == 200
    assert ingest_webhooks(state) == 0
    assert _texts(state) == ["hello"]
    assert _payloads(state) == [("processed", None)]


def test_ingested_payload_keeps_its_row(app, state, whatsapp_channel):
    _post(app.test_client(), whatsapp_channel, "kept as received")
    with state.session_factory() as session:
        pending_id, received_at = session.execute(select(RawPayload.id, RawPayload.received_at)).one()

    assert ingest_webhooks(state) == 1

    with state.session_factory() as session:
        rows = [tuple(row) for row in session.execute(select(RawPayload.id, RawPayload.status, RawPayload.received_at))]
        message_payload_id = session.scalar(select(Message.raw_payload_id))
    assert rows == [(pending_id, "processed", received_at)]
    assert message_payload_id == pending_id


def test_same_sid_other_bytes_dropped(app, state, whatsapp_channel):
    client = app.test_client()
    form = _post(client, whatsapp_channel, "first copy")
    ingest_webhooks(state)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    changed = {**form, "ProfileName": "Grace"}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, changed)

    assert client.post(path, data=changed, headers={"X-Twilio-Signature": signature}).status_code == 200

    assert ingest_webhooks(state) == 0
    assert _texts(state) == ["first copy"]
    assert _payloads(state) == [("processed", None)]


def test_restarted_worker_ingests_once(app, config, state, whatsapp_channel):
    client = app.test_client()
    for text in ("one", "two", "three"):
        _post(client, whatsapp_channel, text)

    def crash_after_first(raw_format: str, body: bytes):
        # The process dies in the middle of the batch, before its commit.
        if b"two" in body:
            raise SystemExit("killed")
        return parse_raw(raw_format, body)

    with state.session_factory() as session:
        with pytest.raises(SystemExit):
            ingest_pending(session, crash_after_first, limit=10, formats=MESSAGE_FORMATS)
    assert _texts(state) == []

    restarted = get_state(create_app(config))
    try:
        assert ingest_webhooks(restarted) == 3
        assert ingest_webhooks(restarted) == 0
    finally:
        restarted.engine.dispose()
    assert _texts(state) == ["one", "two", "three"]
    with state.session_factory() as session:
        assert count_pending(session) == 0


def test_failed_ingestion_keeps_error(app, state, whatsapp_channel):
    client = app.test_client()
    for index in (1, 2, 3):
        _post(client, whatsapp_channel, f"message {index}", sender=f"+1555000000{index}")

    with messages_rejected(state.engine, "text", "message 2"):
        assert ingest_webhooks(state) == 2

    assert _texts(state) == ["message 1", "message 3"]
    statuses = _payloads(state)
    failed = [error for status, error in statuses if status == "failed"]
    assert len(failed) == 1
    assert "rejected by trigger" in failed[0]
    assert sorted(status for status, _ in statuses) == ["failed", "processed", "processed"]


def test_unparseable_payload_marked_failed(app, state, whatsapp_channel):
    broken = urlencode({"MessageSid": "SM" + "a" * 32, "Body": "no sender"}).encode()
    with state.session_factory() as session:
        assert queue_payload(session, whatsapp_channel.id, broken, "twilio-form")
    _post(app.test_client(), whatsapp_channel, "after the broken one")

    assert ingest_webhooks(state) == 1

    assert _texts(state) == ["after the broken one"]
    statuses = _payloads(state)
    assert statuses[0][0] == "failed"
    assert "From" in statuses[0][1]
    assert statuses[1] == ("processed", None)


def test_failed_payload_replay_requeued(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "try again", None)
    raw = urlencode(form).encode()
    with state.session_factory() as session:
        inbox.ingest.record_failed_payload(session, whatsapp_channel.id, raw, "twilio-form", "database was down")
        assert queue_payload(session, whatsapp_channel.id, raw, "twilio-form")
        assert not queue_payload(session, whatsapp_channel.id, raw, "twilio-form")

    assert ingest_webhooks(state) == 1
    assert _texts(state) == ["try again"]
    assert _payloads(state) == [("processed", None)]


def test_batch_events_follow_commit(app, state, whatsapp_channel):
    client = app.test_client()
    for text in ("first", "second"):
        _post(client, whatsapp_channel, text)
    order: list[str] = []
    add_publisher(state.session_factory, lambda messages: order.extend(m["type"] for m in messages))
    sa_event.listen(state.engine, "commit", lambda connection: order.append("commit"))

    assert ingest_webhooks(state) == 2

    assert "message.created" in order
    assert order[0] == "commit"


def test_message_created_reaches_socket_client(live_server, api_token, whatsapp_channel, state):
    events: queue.Queue[dict] = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("message.created", events.put)
    client.connect(live_server.url, auth={"token": api_token}, transports=["websocket"])
    try:
        form = build_message_form(whatsapp_channel, "+15551230000", "live through the queue", None)
        url = f"{live_server.url}/webhooks/twilio/{whatsapp_channel.id}/messages"
        signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
        response = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
        assert response.status_code == 200

        event = events.get(timeout=10)
    finally:
        client.disconnect()
    assert event["message"]["text"] == "live through the queue"
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(RawPayload).where(RawPayload.status == "pending")) == 0


@pytest.fixture
def size_limited_database(state):
    """Make PostgreSQL refuse one message text with program_limit_exceeded (SQLSTATE 54000),
    the error of an index entry too large, which psycopg raises as an OperationalError."""
    if state.engine.dialect.name != "postgresql":
        pytest.skip("SQLSTATE classes are PostgreSQL's; the PostgreSQL pass runs this test")
    with state.engine.begin() as connection:
        connection.execute(text(
            "CREATE FUNCTION refuse_message() RETURNS trigger AS $$ BEGIN "
            "IF NEW.text = 'too large' THEN RAISE EXCEPTION 'index row size exceeds maximum' "
            "USING ERRCODE = 'program_limit_exceeded'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        ))
        connection.execute(text(
            "CREATE TRIGGER refuse_message BEFORE INSERT ON messages "
            "FOR EACH ROW EXECUTE FUNCTION refuse_message()"
        ))
    yield
    with state.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER refuse_message ON messages"))
        connection.execute(text("DROP FUNCTION refuse_message()"))


def test_payload_over_database_limit_fails_alone(app, state, whatsapp_channel, size_limited_database):
    client = app.test_client()
    for index, body in enumerate(("before", "too large", "after")):
        _post(client, whatsapp_channel, body, sender=f"+1555000000{index}")

    assert ingest_webhooks(state) == 2

    assert _texts(state) == ["before", "after"]
    statuses = _payloads(state)
    assert sorted(status for status, _ in statuses) == ["failed", "processed", "processed"]
    assert any("index row size" in (error or "") for _, error in statuses)
    with state.session_factory() as session:
        assert count_pending(session) == 0


def test_queued_webhook_wakes_other_process_worker(config, state, whatsapp_channel, monkeypatch):
    if not config.database_url.startswith("postgresql"):
        pytest.skip("notifications are PostgreSQL's; the PostgreSQL pass of the suite runs this test")
    # A poll this long would leave the payload pending for the whole test.
    monkeypatch.setattr(gateway.webhook_worker, "POLL_SECONDS", 600.0)
    # The worker of another process: its own app, so the view's in-process wakeup misses it.
    other = get_state(create_app(config))
    stop = threading.Event()
    worker = WebhookWorker(other, stop)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        # Once it listens and its round after that is over, only a notification can wake it.
        assert worker.listening.wait(15)
        assert _wait_until(lambda: not worker.wakeup.is_set())
        form = build_message_form(whatsapp_channel, "+15551230000", "wake up", None)
        with state.session_factory() as session:
            assert queue_payload(session, whatsapp_channel.id, urlencode(form).encode(), "twilio-form")
        wake_webhook_workers(state)

        assert _wait_until(lambda: _texts(state) == ["wake up"])
    finally:
        stop.set()
        worker.wakeup.set()
        thread.join(10)
        other.engine.dispose()

