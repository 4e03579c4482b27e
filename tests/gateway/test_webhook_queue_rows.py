"""The webhook queue's payload rows: each ends processed and referenced by its one message,
pending, or failed with its error, whichever path of ingestion stored it."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from urllib.parse import urlencode

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from gateway import create_app, get_state
from gateway.reprocess import MESSAGE_FORMATS, parse_raw
from gateway.simulate import build_message_form
from inbox.ingest import record_failed_payload
from inbox.models import Conversation, ConversationStatus, Direction, Message, PayloadStatus, RawPayload
from inbox.webhook_queue import count_pending, ingest_pending, queue_payload
from inbox.workflow import set_status
from tests.support.whatsapp import ingest_webhooks

# The text of a message whose insert fails as a lost connection or a lock would.
FAULT_TEXT = "the database fails here"


def _queue(state, channel, sender: str, body: str, **fields: str) -> tuple[int, dict[str, str]]:
    """Queue a Twilio message form and return its payload id and the form."""
    form = {**build_message_form(channel, sender, body, None), **fields}
    raw = urlencode(form).encode()
    with state.session_factory() as session:
        assert queue_payload(session, channel.id, raw, "twilio-form")
        payload_id = session.scalar(select(RawPayload.id).where(RawPayload.body == raw))
    return payload_id, form


def _requeue(state, channel, form: dict[str, str]) -> bool:
    with state.session_factory() as session:
        return queue_payload(session, channel.id, urlencode(form).encode(), "twilio-form")


def _assert_rows_consistent(state) -> None:
    """Check that every inbound message refers to one processed payload of its own, and that
    every payload is processed and referenced, pending, or failed with its error."""
    with state.session_factory() as session:
        payloads = session.execute(
            select(RawPayload.id, RawPayload.status, RawPayload.error).where(RawPayload.format.in_(MESSAGE_FORMATS))
        ).all()
        references = Counter(session.scalars(
            select(Message.raw_payload_id).where(Message.direction == Direction.INBOUND.value)
        ))
    statuses = {payload.id: payload.status for payload in payloads}
    for payload_id, count in references.items():
        assert statuses.get(payload_id) == PayloadStatus.PROCESSED.value, f"message refers to payload {payload_id}"
        assert count == 1, f"payload {payload_id} is referenced by {count} messages"
    for payload in payloads:
        if payload.status == PayloadStatus.PROCESSED.value:
            assert references[payload.id] == 1, f"processed payload {payload.id} has no message"
            assert payload.error is None
        elif payload.status == PayloadStatus.PENDING.value:
            assert references[payload.id] == 0
            assert payload.error is None
        else:
            assert payload.status == PayloadStatus.FAILED.value
            assert references[payload.id] == 0
            assert payload.error


def _texts(state) -> Counter[str]:
    with state.session_factory() as session:
        return Counter(session.scalars(select(Message.text).where(Message.direction == Direction.INBOUND.value)))


def _payload_of(state, sid: str) -> int | None:
    with state.session_factory() as session:
        return session.scalar(select(Message.raw_payload_id).where(Message.provider_message_id == sid))


def test_mixed_batch_keeps_every_queued_row(state, whatsapp_channel):
    # Earlier conversations: one to reply to, one resolved.
    _, earlier = _queue(state, whatsapp_channel, "+15550000001", "my order is late")
    _queue(state, whatsapp_channel, "+15550000002", "thanks, all good")
    assert ingest_webhooks(state) == 2
    with state.session_factory() as session:
        resolved = session.scalars(select(Conversation).order_by(Conversation.id)).all()[1]
        set_status(session, resolved, ConversationStatus.RESOLVED.value, None)
        session.commit()

    # Plain messages for the bulk path, mixed with those the per-message path stores.
    queued = [
        _queue(state, whatsapp_channel, "+15550000010", "plain one"),
        _queue(state, whatsapp_channel, "+15550000011", "STOP"),
        _queue(state, whatsapp_channel, "+15550000012", "plain two"),
        _queue(state, whatsapp_channel, "+15550000001", "replying", OriginalRepliedMessageSid=earlier["MessageSid"]),
        _queue(state, whatsapp_channel, "+15550000002", "one more question"),
        _queue(state, whatsapp_channel, "+15550000013", "plain three"),
    ]
    # The same MessageSid with other bytes, from the same sender: a duplicate.
    first_sid = queued[0][1]["MessageSid"]
    duplicate_id, _ = _queue(state, whatsapp_channel, "+15550000010", "plain one", MessageSid=first_sid, NumSegments="2")

    assert ingest_webhooks(state) == len(queued)

    texts = _texts(state)
    for _, form in queued:
        assert texts[form["Body"]] == 1
    for payload_id, form in queued:
        # Each message refers to the row its webhook was acknowledged with.
        assert _payload_of(state, form["MessageSid"]) == payload_id, form["Body"]
    with state.session_factory() as session:
        assert session.get(RawPayload, duplicate_id) is None
        assert count_pending(session) == 0
    _assert_rows_consistent(state)


def test_replays_around_ingestion_store_once(state, whatsapp_channel):
    payload_id, form = _queue(state, whatsapp_channel, "+15550000020", "replayed")
    assert not _requeue(state, whatsapp_channel, form)

    assert ingest_webhooks(state) == 1
    assert not _requeue(state, whatsapp_channel, form)
    assert ingest_webhooks(state) == 0

    assert _texts(state) == Counter({"replayed": 1})
    assert _payload_of(state, form["MessageSid"]) == payload_id
    _assert_rows_consistent(state)



@pytest.mark.parametrize("body", ["plain", "STOP"])
def test_replay_during_ingestion_is_no_op(state, whatsapp_channel, body):
    payload_id, form = _queue(state, whatsapp_channel, "+15550000021", body)
    replays: list[bool] = []
    threads: list[threading.Thread] = []

    def parse_and_replay(raw_format: str, raw: bytes):
        # The replay arrives while the batch's transaction has the claimed row locked.
        thread = threading.Thread(target=lambda: replays.append(_requeue(state, whatsapp_channel, form)))
        thread.start()
        thread.join(0.5)
        threads.append(thread)
        return parse_raw(raw_format, raw)

    with state.session_factory() as session:
        batch = ingest_pending(session, parse_and_replay, limit=10, formats=MESSAGE_FORMATS)
    for thread in threads:
        thread.join(10)

    assert len(batch.message_ids) == 1
    assert replays == [False]
    assert ingest_webhooks(state) == 0
    assert _texts(state) == Counter({body: 1})
    assert _payload_of(state, form["MessageSid"]) == payload_id
    _assert_rows_consistent(state)

def test_failed_payload_queued_again_keeps_its_row(state, whatsapp_channel):
    plain = build_message_form(whatsapp_channel, "+15550000030", "failed once", None)
    stop = build_message_form(whatsapp_channel, "+15550000031", "STOP", None)
    failed_ids = []
    for form in (plain, stop):
        with state.session_factory() as session:
            failed_ids.append(record_failed_payload(
                session, whatsapp_channel.id, urlencode(form).encode(), "twilio-form", "a parser bug"
            ))
        assert _requeue(state, whatsapp_channel, form)

    assert ingest_webhooks(state) == 2

    assert _payload_of(state, plain["MessageSid"]) == failed_ids[0]
    assert _payload_of(state, stop["MessageSid"]) == failed_ids[1]
    _assert_rows_consistent(state)


@pytest.fixture
def database_fault(state):
    """Make the database fail the insert of a message with ``FAULT_TEXT`` as a fault of its
    own (an OperationalError), not a constraint of the message, until the test ends."""
    engine = state.engine
    if engine.dialect.name == "sqlite":

        def fail(value):
            raise sqlite3.OperationalError("disk I/O error")

        # Every connection needs the function, because the trigger calls it.
        def register(connection, _record):
            connection.create_function("switchboard_test_fault", 1, fail)

        engine.dispose()
        sa_event.listen(engine, "connect", register)
        create = [
            "CREATE TRIGGER fail_message BEFORE INSERT ON messages "
            f"WHEN NEW.text = '{FAULT_TEXT}' BEGIN SELECT switchboard_test_fault(NEW.text); END"
        ]
        drop = ["DROP TRIGGER fail_message"]
    else:
        create = [
            "CREATE FUNCTION fail_message() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.text = '{FAULT_TEXT}' THEN RAISE EXCEPTION 'could not obtain lock' "
            "USING ERRCODE = 'lock_not_available'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fail_message BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION fail_message()",
        ]
        drop = ["DROP TRIGGER fail_message ON messages", "DROP FUNCTION fail_message()"]
    with engine.begin() as connection:
        for statement in create:
            connection.execute(text(statement))
    yield
    with engine.begin() as connection:
        for statement in drop:
            connection.execute(text(statement))


@pytest.mark.parametrize("position", ["bulk", "per-message"])
def test_database_fault_leaves_batch_pending(state, whatsapp_channel, database_fault, position):
    _, earlier = _queue(state, whatsapp_channel, "+15550000040", "earlier")
    assert ingest_webhooks(state) == 1
    extra = {"OriginalRepliedMessageSid": earlier["MessageSid"]} if position == "per-message" else {}
    queued = [
        _queue(state, whatsapp_channel, "+15550000041", "before the fault"),
        _queue(state, whatsapp_channel, "+15550000042", "STOP"),
        _queue(state, whatsapp_channel, "+15550000040", FAULT_TEXT, **extra),
        _queue(state, whatsapp_channel, "+15550000043", "after the fault"),
    ]

    with state.session_factory() as session:
        with pytest.raises(OperationalError):
            ingest_pending(session, parse_raw, limit=10, formats=MESSAGE_FORMATS)

    assert _texts(state) == Counter({"earlier": 1})
    with state.session_factory() as session:
        rows = dict(session.execute(select(RawPayload.id, RawPayload.status)).all())
    for payload_id, _ in queued:
        assert rows[payload_id] == PayloadStatus.PENDING.value
    _assert_rows_consistent(state)


def test_two_workers_store_each_message_once(config, state, whatsapp_channel):
    if state.engine.dialect.name != "postgresql":
        pytest.skip("workers share the queue with FOR UPDATE SKIP LOCKED on PostgreSQL; its pass runs this test")
    _, earlier = _queue(state, whatsapp_channel, "+15550000050", "earlier")
    assert ingest_webhooks(state) == 1
    forms = []
    for index in range(60):
        sender = f"+155500001{index % 7:02d}"
        body = "STOP" if index % 11 == 5 else f"message {index}"
        extra = {"OriginalRepliedMessageSid": earlier["MessageSid"]} if index % 13 == 6 else {}
        forms.append(_queue(state, whatsapp_channel, sender, body, **extra)[1])
        if index % 9 == 4:
            # The same MessageSid again with other bytes.
            _queue(state, whatsapp_channel, sender, body, MessageSid=forms[-1]["MessageSid"], NumSegments="2")

    workers = [get_state(create_app(config)) for _ in range(2)]
    errors: list[BaseException] = []

    def work(worker_state) -> None:
        try:
            for _ in range(200):
                try:
                    with worker_state.session_factory() as session:
                        batch = ingest_pending(session, parse_raw, limit=4, formats=MESSAGE_FORMATS)
                except OperationalError:
                    continue  # a deadlock between the two workers: the batch is retried
                if not batch.taken:
                    return
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for worker in workers:
        worker.engine.dispose()

    assert errors == []
    with state.session_factory() as session:
        assert count_pending(session) == 0
        sids = Counter(session.scalars(select(Message.provider_message_id).where(
            Message.direction == Direction.INBOUND.value
        )))
    for form in forms:
        assert sids[form["MessageSid"]] == 1
    _assert_rows_consistent(state)
