"""Batch ingestion of WhatsApp messages: stored in bulk where the WhatsApp threading rules
allow it, message by message where they need the per-message path."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from channels.whatsapp import parse_inbound
from gateway.simulate import build_message_form
from inbox.ingest import ingest_batch, ingest_message
from inbox.models import (
    Attachment,
    Contact,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    OutboxItem,
    OutboxStatus,
    PayloadStatus,
    RawPayload,
)
from inbox.serialize import conversation_to_dict, message_to_dict
from inbox.workflow import set_status
from tests.support.database import messages_rejected

ANN = "+15550000001"
BOB = "+15550000002"


def _message(channel, sender: str, text: str, profile_name: str | None = None, **fields: str):
    form = build_message_form(channel, sender, text, profile_name)
    form.update(fields)
    return parse_inbound(form, urlencode(form).encode())


def _store(state, channel, batch):
    with state.session_factory() as session:
        with session.begin():
            return ingest_batch(session, channel.id, batch)


@pytest.fixture
def message_inserts(state) -> list[str]:
    """Each INSERT into messages sent to the database: one for a batch stored in bulk."""
    statements: list[str] = []

    def collect(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO MESSAGES"):
            statements.append(statement)

    sa_event.listen(state.engine, "before_cursor_execute", collect)
    yield statements
    sa_event.remove(state.engine, "before_cursor_execute", collect)


def test_whatsapp_batch_stored_in_bulk(state, whatsapp_channel, published, message_inserts):
    batch = [
        _message(whatsapp_channel, ANN, "Where is my parcel?", "Ann"),
        _message(whatsapp_channel, BOB, "Hello", "Bob"),
        _message(whatsapp_channel, ANN, "It was due yesterday.", "Ann"),
    ]
    results = _store(state, whatsapp_channel, batch)

    assert len(message_inserts) == 1
    assert [result.duplicate for result in results] == [False, False, False]
    assert results[0].conversation_id == results[2].conversation_id
    assert results[1].conversation_id != results[0].conversation_id
    assert [result.created_conversation for result in results] == [True, True, False]
    with state.session_factory() as session:
        reasons = [session.get(Message, result.message_id).thread_reason for result in results]
        names = sorted(session.scalars(select(Contact.name)))
        payloads = session.scalars(select(RawPayload.status)).all()
    assert reasons == ["whatsapp_new", "whatsapp_new", "whatsapp_open"]
    assert names == ["Ann", "Bob"]
    assert payloads == [PayloadStatus.PROCESSED.value] * 3


def test_whatsapp_batch_events_show_what_was_stored(state, whatsapp_channel, published):
    with state.session_factory() as session:
        ingest_message(session, whatsapp_channel.id, _message(whatsapp_channel, ANN, "First", "Ann"))
    published.clear()
    batch = [
        _message(whatsapp_channel, ANN, "Second", "Ann"),
        _message(whatsapp_channel, BOB, "Photo attached", "Bob", NumMedia="1",
                 MediaUrl0="https://api.twilio.example/Media/ME1", MediaContentType0="image/jpeg"),
        _message(whatsapp_channel, BOB, "Did you get it?", "Bob"),
    ]
    results = _store(state, whatsapp_channel, batch)

    types = [event["type"] for event in published]
    assert types == [
        "conversation.updated", "message.created",
        "conversation.created", "message.created",
        "conversation.updated", "message.created",
    ]
    assert [event["event_id"] for event in published] == sorted(event["event_id"] for event in published)
    messages = [event for event in published if event["type"] == "message.created"]
    with state.session_factory() as session:
        for event, result in zip(messages, results):
            assert event["message"] == message_to_dict(session.get(Message, result.message_id))
        for event in (messages[0], messages[2]):
            stored = session.get(Conversation, event["conversation"]["id"])
            assert event["conversation"] == conversation_to_dict(stored)
        media = session.scalars(select(Attachment)).all()
    assert messages[0]["conversation"]["unread_count"] == 2
    assert messages[1]["conversation"]["unread_count"] == 1
    assert messages[1]["message"]["attachments"][0]["status"] == "pending"
    # The media fetcher downloads the file after the commit.
    assert [(row.source_url, row.fetch_status) for row in media] == [("https://api.twilio.example/Media/ME1", "pending")]


def test_whatsapp_batch_duplicates_and_replays(state, whatsapp_channel, message_inserts):
    stored = _message(whatsapp_channel, ANN, "Stored before")
    with state.session_factory() as session:
        ingest_message(session, whatsapp_channel.id, stored)
    message_inserts.clear()
    fresh = _message(whatsapp_channel, ANN, "Fresh")
    # The same MessageSid with other bytes: Twilio retried with other parameters.
    resent = _message(whatsapp_channel, ANN, "Stored before", SmsStatus="receiving",
                      MessageSid=stored.provider_message_id, SmsSid=stored.provider_message_id,
                      SmsMessageSid=stored.provider_message_id)
    batch = [stored, fresh, fresh, resent]
    results = _store(state, whatsapp_channel, batch)

    assert [result.duplicate for result in results] == [True, False, True, True]
    assert len(message_inserts) == 1
    replayed = _store(state, whatsapp_channel, batch)
    assert all(result.duplicate for result in replayed)
    with state.session_factory() as session:
        texts = session.scalars(select(Message.text).order_by(Message.id)).all()
    assert texts == ["Stored before", "Fresh"]


def test_whatsapp_batch_keeps_rejected_message_failed(state, whatsapp_channel, published):
    batch = [
        _message(whatsapp_channel, ANN, "one"),
        _message(whatsapp_channel, BOB, "rejected"),
        _message(whatsapp_channel, ANN, "three"),
    ]
    with messages_rejected(state.engine, "text", "rejected"):
        results = _store(state, whatsapp_channel, batch)

    assert results[1].message_id is None
    assert "rejected by trigger" in (results[1].error or "")
    assert results[0].conversation_id == results[2].conversation_id
    with state.session_factory() as session:
        texts = session.scalars(select(Message.text).order_by(Message.id)).all()
        failed = session.scalars(select(RawPayload).where(RawPayload.status == PayloadStatus.FAILED.value)).all()
    assert texts == ["one", "three"]
    assert [row.body for row in failed] == [batch[1].raw]
    created = [event["message"]["text"] for event in published if event["type"] == "message.created"]
    assert created == ["one", "three"]


def test_whatsapp_batch_resolved_contact_threads_per_message(state, whatsapp_channel):
    with state.session_factory() as session:
        first = ingest_message(session, whatsapp_channel.id, _message(whatsapp_channel, ANN, "Old question"))
        with session.begin():
            conversation = session.get(Conversation, first.conversation_id)
            set_status(session, conversation, ConversationStatus.RESOLVED.value, None)
    batch = [
        _message(whatsapp_channel, BOB, "New customer"),
        # Within the reopen window, so the per-message path reopens the resolved conversation.
        _message(whatsapp_channel, ANN, "One more thing"),
        _message(whatsapp_channel, ANN, "And another"),
    ]
    results = _store(state, whatsapp_channel, batch)

    assert results[1].conversation_id == results[2].conversation_id == first.conversation_id
    with state.session_factory() as session:
        assert session.get(Conversation, first.conversation_id).status == ConversationStatus.OPEN.value
        assert session.scalar(select(func.count()).select_from(Conversation)) == 2


def test_whatsapp_batch_applies_opt_out_and_rename(state, whatsapp_channel):
    with state.session_factory() as session:
        ingest_message(session, whatsapp_channel.id, _message(whatsapp_channel, ANN, "Hi", "Ann"))
    batch = [
        _message(whatsapp_channel, ANN, "STOP", "Ann"),
        _message(whatsapp_channel, BOB, "Hello", "Bob"),
        _message(whatsapp_channel, BOB, "Bob here again", "Robert"),
    ]
    _store(state, whatsapp_channel, batch)

    with state.session_factory() as session:
        contacts = {contact.name: contact for contact in session.scalars(select(Contact))}
    assert set(contacts) == {"Ann", "Robert"}
    assert contacts["Ann"].opted_out_keyword == "STOP"
    assert contacts["Robert"].opted_out_at is None


def test_whatsapp_batch_releases_held_replies(state, whatsapp_channel, agent):
    with state.session_factory() as session:
        first = ingest_message(session, whatsapp_channel.id, _message(whatsapp_channel, ANN, "Hi"))
        with session.begin():
            reply = Message(
                conversation_id=first.conversation_id, channel_id=whatsapp_channel.id,
                direction=Direction.OUTBOUND.value, agent_id=agent.id, text="Held for the window",
                delivery_status="held",
            )
            session.add(reply)
            session.flush()
            session.add(OutboxItem(message_id=reply.id, channel_id=whatsapp_channel.id,
                                   status=OutboxStatus.HELD.value, hold_reason="window"))
    _store(state, whatsapp_channel, [_message(whatsapp_channel, BOB, "Hello"), _message(whatsapp_channel, ANN, "Back")])

    with state.session_factory() as session:
        item = session.scalars(select(OutboxItem)).one()
        assert item.status == OutboxStatus.PENDING.value
        assert session.get(Message, item.message_id).delivery_status == "queued"
