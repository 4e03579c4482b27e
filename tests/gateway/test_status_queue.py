"""Twilio status callbacks: acknowledged once stored, applied by the webhook worker in batches."""

from __future__ import annotations

import random
import secrets
import threading
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import event as sa_event
from sqlalchemy import func, inspect, select, update
from twilio.request_validator import RequestValidator

from channels.delivery import STATUS_ORDER
from channels.types import DeliveryState
from channels.whatsapp import STATUS_RAW_FORMAT
from gateway.reprocess import parse_status_raw, reprocess_payload
from gateway.simulate import build_message_form
import gateway.webhook_worker as webhook_worker_module
from gateway.webhook_worker import WebhookWorker
from inbox.events import add_publisher
from inbox.models import Conversation, Direction, EarlyDeliveryReport, Message, RawPayload, utcnow
from inbox.webhook_queue import APPLIED_STATUS_RETENTION, apply_pending_statuses, count_pending, queue_payload
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.whatsapp import LOCAL, ingest_webhooks

STATES = ("sent", "delivered", "read")


def _status_form(sid: str, status: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
            "AccountSid": TWILIO_ACCOUNT_SID, "ApiVersion": "2010-04-01"}


def _post_status(client, channel, sid: str, status: str) -> None:
    form = _status_form(sid, status)
    path = f"/webhooks/twilio/{channel.id}/status"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 204, response.data


def _sent_messages(client, state, channel, count: int) -> dict[str, int]:
    """Store ``count`` queued replies with provider ids, as the dispatcher leaves them. Returns id by sid."""
    form = build_message_form(channel, "+15551230000", "Where is my parcel?", None)
    path = f"/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)
    assert client.post(path, data=form, headers={"X-Twilio-Signature": signature}).status_code == 200
    ingest_webhooks(state)
    with state.session_factory() as session:
        conversation = session.scalars(select(Conversation)).one()
        messages = {}
        for _ in range(count):
            sid = "SM" + secrets.token_hex(16)
            messages[sid] = Message(
                conversation=conversation, channel_id=channel.id, direction=Direction.OUTBOUND.value,
                text="Your parcel ships today.", provider_message_id=sid, delivery_status="queued", sent_at=utcnow(),
            )
            session.add(messages[sid])
        session.commit()
        return {sid: message.id for sid, message in messages.items()}


def _statuses(state, ids) -> dict[int, str]:
    with state.session_factory() as session:
        return dict(session.execute(select(Message.id, Message.delivery_status).where(Message.id.in_(ids))).all())


def _collect_updates(state) -> dict[int, list[str]]:
    updates: dict[int, list[str]] = {}

    def publish(messages):
        for message in messages:
            if message["type"] == "message.updated":
                updates.setdefault(message["message"]["id"], []).append(message["message"]["delivery_status"])

    add_publisher(state.session_factory, publish)
    return updates


def test_status_acknowledged_before_applied(app, state, whatsapp_channel):
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 1)
    sid, message_id = next(iter(sent.items()))

    _post_status(client, whatsapp_channel, sid, "delivered")

    assert _statuses(state, [message_id]) == {message_id: "queued"}
    with state.session_factory() as session:
        assert count_pending(session) == 1
    ingest_webhooks(state)
    assert _statuses(state, [message_id]) == {message_id: "delivered"}
    with state.session_factory() as session:
        assert count_pending(session) == 0
        # An applied callback's row is kept, as processed, until it is pruned.
        assert session.scalars(select(RawPayload.status).where(RawPayload.format == STATUS_RAW_FORMAT)).all() == [
            "processed"
        ]


def test_replayed_status_is_no_op(app, state, whatsapp_channel):
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 1)
    sid, message_id = next(iter(sent.items()))
    raw = urlencode(_status_form(sid, "read")).encode()

    with state.session_factory() as session:
        assert queue_payload(session, whatsapp_channel.id, raw, STATUS_RAW_FORMAT)
        assert not queue_payload(session, whatsapp_channel.id, raw, STATUS_RAW_FORMAT)
    updates = _collect_updates(state)
    ingest_webhooks(state)
    # A replay after it was applied finds the kept row and queues nothing.
    with state.session_factory() as session:
        assert not queue_payload(session, whatsapp_channel.id, raw, STATUS_RAW_FORMAT)
        assert count_pending(session) == 0

    assert _statuses(state, [message_id]) == {message_id: "read"}
    assert updates == {message_id: ["read"]}


def test_applied_statuses_pruned_after_retention(app, state, whatsapp_channel):
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 3)
    sids = list(sent)
    for sid in sids:
        _post_status(client, whatsapp_channel, sid, "delivered")
    ingest_webhooks(state)
    with state.session_factory() as session:
        rows = session.scalars(select(RawPayload).where(RawPayload.format == STATUS_RAW_FORMAT)).all()
        # Two were applied more than a day ago, one just now.
        for row in rows[:2]:
            row.received_at = utcnow() - APPLIED_STATUS_RETENTION - timedelta(minutes=1)
        kept_id = rows[2].id
        session.commit()
    worker = WebhookWorker(state, threading.Event())

    assert worker.prune_applied_statuses() == 2

    with state.session_factory() as session:
        assert session.scalars(select(RawPayload.id).where(RawPayload.format == STATUS_RAW_FORMAT)).all() == [kept_id]
        # The inbound message's payload is never pruned.
        assert session.scalar(select(func.count()).select_from(RawPayload).where(RawPayload.format != STATUS_RAW_FORMAT)) == 1
    # A replay after the pruning is queued again and changes nothing.
    updates = _collect_updates(state)
    _post_status(client, whatsapp_channel, sids[0], "delivered")
    ingest_webhooks(state)
    assert _statuses(state, [sent[sids[0]]]) == {sent[sids[0]]: "delivered"}
    assert updates == {}


def test_pruning_works_in_batches(app, state, whatsapp_channel, monkeypatch):
    monkeypatch.setattr(webhook_worker_module, "PRUNE_BATCH_SIZE", 2)
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 5)
    for sid in sent:
        _post_status(client, whatsapp_channel, sid, "read")
    ingest_webhooks(state)
    with state.session_factory() as session:
        session.execute(
            update(RawPayload).where(RawPayload.format == STATUS_RAW_FORMAT)
            .values(received_at=utcnow() - timedelta(days=2))
        )
        session.commit()

    assert WebhookWorker(state, threading.Event()).prune_applied_statuses() == 5


def test_status_storm_never_regresses(app, state, whatsapp_channel):
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 30)
    callbacks = [(sid, status) for sid in sent for status in STATES] * 2
    random.Random(3).shuffle(callbacks)
    updates = _collect_updates(state)
    worker = WebhookWorker(state, threading.Event())
    worker.status_batch_size = 7

    # Posted in three rounds, so that later batches meet messages that earlier ones moved on.
    for start in range(0, len(callbacks), 60):
        for sid, status in callbacks[start:start + 60]:
            _post_status(client, whatsapp_channel, sid, status)
        worker.ingest_all()

    assert set(_statuses(state, sent.values()).values()) == {"read"}
    for message_id in sent.values():
        ranks = [STATUS_ORDER[DeliveryState(status)] for status in updates[message_id]]
        assert ranks == sorted(ranks), updates[message_id]
        assert updates[message_id][-1] == "read"


def test_batch_events_after_commit_one_per_message(app, state, whatsapp_channel):
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 2)
    first, second = sent
    for sid, status in [(first, "sent"), (second, "delivered"), (first, "read"), (second, "sent")]:
        _post_status(client, whatsapp_channel, sid, status)
    published: list[dict] = []
    add_publisher(state.session_factory, published.extend)

    with state.session_factory() as session:
        batch = apply_pending_statuses(session, parse_status_raw, STATUS_RAW_FORMAT, 10)

    assert batch.taken == 4
    assert batch.changed == 3
    assert [(event["message"]["id"], event["message"]["delivery_status"]) for event in published] == [
        (sent[first], "read"), (sent[second], "delivered"),
    ]
    assert [event["event_id"] for event in published] == sorted(event["event_id"] for event in published)


def test_bad_status_payload_kept_failed(app, state, whatsapp_channel):
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 1)
    sid, message_id = next(iter(sent.items()))
    broken = urlencode({"MessageSid": sid, "MessageStatus": "no-such-status"}).encode()
    with state.session_factory() as session:
        assert queue_payload(session, whatsapp_channel.id, broken, STATUS_RAW_FORMAT)
    _post_status(client, whatsapp_channel, sid, "delivered")

    ingest_webhooks(state)

    assert _statuses(state, [message_id]) == {message_id: "delivered"}
    with state.session_factory() as session:
        rows = session.execute(select(RawPayload.status, RawPayload.error, RawPayload.body)
                               .where(RawPayload.format == STATUS_RAW_FORMAT, RawPayload.status == "failed")).all()
    assert len(rows) == 1
    assert "no-such-status" in rows[0].error
    assert rows[0].body == broken


def test_status_before_send_kept_for_later(app, state, whatsapp_channel):
    client = app.test_client()
    _sent_messages(client, state, whatsapp_channel, 1)
    _post_status(client, whatsapp_channel, "SM" + "e" * 32, "delivered")

    ingest_webhooks(state)

    with state.session_factory() as session:
        assert count_pending(session) == 0
    with state.session_factory() as session:
        reports = session.execute(select(EarlyDeliveryReport.provider_message_id, EarlyDeliveryReport.state)).all()
    assert [tuple(report) for report in reports] == [("SM" + "e" * 32, "delivered")]


def test_concurrent_status_batches_finish(app, state, whatsapp_channel):
    # On PostgreSQL two workers take disjoint batches; callbacks of one message in both
    # batches wait for each other's locks, which both take in one order.
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 20)
    callbacks = [(sid, status) for sid in sent for status in STATES]
    random.Random(5).shuffle(callbacks)
    for sid, status in callbacks:
        _post_status(client, whatsapp_channel, sid, status)
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            while True:
                with state.session_factory() as session:
                    if apply_pending_statuses(session, parse_status_raw, STATUS_RAW_FORMAT, 5).taken == 0:
                        return
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert set(_statuses(state, sent.values()).values()) == {"read"}


def test_failed_status_reprocessed_through_queue(app, state, whatsapp_channel):
    client = app.test_client()
    sent = _sent_messages(client, state, whatsapp_channel, 1)
    sid, message_id = next(iter(sent.items()))
    with state.session_factory() as session:
        queue_payload(session, whatsapp_channel.id, urlencode(_status_form(sid, "read")).encode(), STATUS_RAW_FORMAT)
        payload = session.scalars(select(RawPayload).where(RawPayload.format == STATUS_RAW_FORMAT)).one()
        # Failed, as a callback that an earlier version could not parse is left.
        payload.status, payload.error = "failed", "applying failed"
        session.commit()
        payload_id = payload.id

    reprocess_payload(state.session_factory, payload_id)
    ingest_webhooks(state)

    assert _statuses(state, [message_id]) == {message_id: "read"}
    with state.session_factory() as session:
        assert session.get(RawPayload, payload_id).status == "processed"


def test_payload_foreign_keys_are_indexed(state):
    # Applied status payloads are deleted after a day, and each delete checks every foreign key to
    # raw_payloads. Without an index on the referencing column that check reads the whole table.
    inspector = inspect(state.engine)
    unindexed = []
    for table in inspector.get_table_names():
        leading = {tuple(index["column_names"][:1]) for index in inspector.get_indexes(table)}
        leading |= {tuple(unique["column_names"][:1]) for unique in inspector.get_unique_constraints(table)}
        for key in inspector.get_foreign_keys(table):
            if key["referred_table"] == "raw_payloads" and tuple(key["constrained_columns"][:1]) not in leading:
                unindexed.append(f"{table}.{key['constrained_columns'][0]}")
    assert unindexed == []


def _statements_to_apply(state, client, channel, count: int) -> int:
    """Return how many SQL statements applying one batch of ``count`` changing callbacks takes."""
    sent = _sent_messages(client, state, channel, count)
    for sid in sent:
        _post_status(client, channel, sid, "delivered")
    statements: list[str] = []
    this_thread = threading.get_ident()

    def record(connection, cursor, statement, *args) -> None:
        # Other threads of the app (the presence heartbeat, the webhook notifier) use the engine too.
        if threading.get_ident() == this_thread:
            statements.append(statement)

    sa_event.listen(state.engine, "before_cursor_execute", record)
    try:
        with state.session_factory() as session:
            batch = apply_pending_statuses(session, parse_status_raw, STATUS_RAW_FORMAT, 100)
    finally:
        sa_event.remove(state.engine, "before_cursor_execute", record)
    assert batch.changed == count
    return len(statements)


def test_batch_statements_do_not_grow_with_messages(app, state, whatsapp_channel):
    # The events serialize each message with its related rows; loading those one message at
    # a time would add statements per message.
    client = app.test_client()
    assert _statements_to_apply(state, client, whatsapp_channel, 2) == _statements_to_apply(
        state, client, whatsapp_channel, 12
    )
