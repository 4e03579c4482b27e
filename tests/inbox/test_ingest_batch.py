"""Batch ingestion: one transaction per IMAP fetch batch, one savepoint per message."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sqlalchemy import func, select, text

from channels.email.parse import parse_email
from inbox.channel_config import add_channel
from inbox.events import add_publisher
from inbox.ingest import ingest_batch
from inbox.models import Conversation, Message, PayloadStatus, RawPayload

SUPPORT = "support@shop.example"
REJECTED_SUBJECT = "rejected by the database"


@pytest.fixture
def channel_id(state) -> int:
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Shop", SUPPORT, {
            "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": "x", "imap_password": "x",
            "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
        })
        session.commit()
        return channel.id


@pytest.fixture
def published(state) -> list[dict]:
    events: list[dict] = []
    add_publisher(state.session_factory, events.extend)
    return events


def _mail(index: int, subject: str = "Where is my order?", **headers: str):
    message = EmailMessage()
    message["From"] = f"customer{index}@example.com"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<batch-{index}@example.com>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(f"Message number {index}.")
    return parse_email(message.as_bytes())


def _reject_subject_in_database(state) -> None:
    """Install a trigger that makes the database refuse one message, like a constraint would."""
    with state.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text(
                "CREATE TRIGGER reject_message BEFORE INSERT ON messages "
                f"WHEN NEW.subject = '{REJECTED_SUBJECT}' "
                "BEGIN SELECT RAISE(ABORT, 'message rejected by trigger'); END"
            ))
        else:
            connection.execute(text(
                "CREATE FUNCTION reject_message() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.subject = '{REJECTED_SUBJECT}' THEN "
                "RAISE EXCEPTION 'message rejected by trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            ))
            connection.execute(text(
                "CREATE TRIGGER reject_message BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION reject_message()"
            ))


@pytest.fixture
def rejecting_database(state):
    _reject_subject_in_database(state)
    yield
    with state.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER IF EXISTS reject_message" + (
            "" if connection.dialect.name == "sqlite" else " ON messages")))
        if connection.dialect.name != "sqlite":
            connection.execute(text("DROP FUNCTION IF EXISTS reject_message()"))


def test_batch_stores_each_message(state, channel_id, published):
    with state.session_factory() as session:
        with session.begin():
            results = ingest_batch(session, channel_id, [_mail(i) for i in range(5)])
    assert [result.duplicate for result in results] == [False] * 5
    assert all(result.message_id for result in results)
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 5
    created = [event for event in published if event["type"] == "message.created"]
    assert len(created) == 5


def test_batch_threads_reply_to_earlier_message(state, channel_id):
    first = _mail(1)
    reply = _mail(1, "Re: Where is my order?", In_Reply_To="<batch-1@example.com>")
    reply = parse_email(reply.raw.replace(b"batch-1@example.com>\n", b"batch-1-reply@example.com>\n", 1))
    with state.session_factory() as session:
        with session.begin():
            results = ingest_batch(session, channel_id, [first, reply])
    assert results[1].conversation_id == results[0].conversation_id
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Conversation)) == 1


def test_batch_repeated_message_is_duplicate(state, channel_id):
    mail = _mail(1)
    with state.session_factory() as session:
        with session.begin():
            results = ingest_batch(session, channel_id, [mail, mail])
    assert results[0].message_id is not None
    assert results[1].duplicate


def test_batch_keeps_rejected_message_failed(state, channel_id, published, rejecting_database):
    batch = [_mail(1), _mail(2, REJECTED_SUBJECT), _mail(3)]
    with state.session_factory() as session:
        with session.begin():
            results = ingest_batch(session, channel_id, batch)

    assert results[0].message_id is not None
    assert results[2].message_id is not None
    assert results[1].message_id is None
    assert "rejected by trigger" in (results[1].error or "")
    with state.session_factory() as session:
        subjects = session.scalars(select(Message.subject).order_by(Message.id)).all()
        failed = session.scalars(
            select(RawPayload).where(RawPayload.status == PayloadStatus.FAILED.value)
        ).all()
    assert subjects == ["Where is my order?", "Where is my order?"]
    assert len(failed) == 1
    assert failed[0].body == batch[1].raw
    assert "rejected by trigger" in failed[0].error

    # The rejected message's events were rolled back with it and never published.
    created = [event["message"]["subject"] for event in published if event["type"] == "message.created"]
    assert created == ["Where is my order?", "Where is my order?"]
