"""Batch ingestion: one transaction per IMAP fetch batch, stored in bulk, one message at a
time only when the batch fails."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from channels.email.parse import parse_email
from inbox.channel_config import add_channel
from inbox.events import add_publisher
from inbox.ingest import ingest_batch, ingest_message, record_failed_payload
from inbox.models import Contact, ContactIdentity, Conversation, ConversationStatus, Message, PayloadStatus, RawPayload
from inbox.serialize import conversation_to_dict, message_to_dict
from inbox.workflow import set_status
from tests.support.database import messages_rejected

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


def _mail(index: int, subject: str = "Where is my order?", sender: str | None = None, **headers: str):
    message = EmailMessage()
    message["From"] = sender or f"customer{index}@example.com"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<batch-{index}@example.com>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(f"Message number {index}.")
    return parse_email(message.as_bytes())


@pytest.fixture
def rejecting_database(state):
    with messages_rejected(state.engine, "subject", REJECTED_SUBJECT):
        yield


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


def test_batch_events_wait_for_the_outer_commit(state, channel_id, published):
    with state.session_factory() as session:
        with session.begin():
            ingest_batch(session, channel_id, [_mail(1), _mail(2)])
            # Each message was stored in a savepoint that is released by now.
            assert published == []
    assert len([event for event in published if event["type"] == "message.created"]) == 2


def test_batch_rolled_back_publishes_nothing(state, channel_id, published):
    with state.session_factory() as session:
        session.begin()
        ingest_batch(session, channel_id, [_mail(1), _mail(2)])
        session.rollback()
    assert published == []
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def _store(state, channel_id, batch):
    with state.session_factory() as session:
        with session.begin():
            return ingest_batch(session, channel_id, batch)


def test_batch_threads_by_references_within_the_batch(state, channel_id):
    first = _mail(1, sender="ann@example.com")
    second = _mail(2, sender="ann@example.com", In_Reply_To="<batch-1@example.com>")
    third = _mail(3, sender="ann@example.com", References="<batch-1@example.com> <batch-2@example.com>")
    results = _store(state, channel_id, [first, second, third])

    assert [result.created_conversation for result in results] == [True, False, False]
    assert len({result.conversation_id for result in results}) == 1
    with state.session_factory() as session:
        reasons = session.scalars(select(Message.thread_reason).order_by(Message.id)).all()
        conversation = session.get(Conversation, results[0].conversation_id)
        assert conversation.unread_count == 3
        assert conversation.snippet == "Message number 3."
    assert reasons == ["new", "in_reply_to", "references"]


def test_batch_reply_of_other_sender_is_new(state, channel_id):
    first = _mail(1)
    # Anyone can copy a Message-ID: a reply from someone else must not join the first mail.
    other = _mail(2, In_Reply_To="<batch-1@example.com>")
    results = _store(state, channel_id, [first, other])

    assert results[0].conversation_id != results[1].conversation_id
    assert results[1].created_conversation


def test_batch_reply_joins_an_open_conversation_stored_before(state, channel_id, published):
    first = _store(state, channel_id, [_mail(1)])[0]
    published.clear()
    reply = _store(state, channel_id, [_mail(2, sender="customer1@example.com", In_Reply_To="<batch-1@example.com>")])[0]

    assert reply.conversation_id == first.conversation_id
    assert not reply.created_conversation
    assert [event["type"] for event in published] == ["conversation.updated", "message.created"]
    assert published[0]["conversation"]["unread_count"] == 2


def test_batch_stores_repeated_mail_once(state, channel_id):
    mail = _mail(1)
    copy = parse_email(mail.raw)
    results = _store(state, channel_id, [mail, _mail(2), copy])

    assert [result.duplicate for result in results] == [False, False, True]
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(RawPayload)) == 2


def test_batch_message_id_of_two_senders_keeps_both(state, channel_id):
    first = _mail(1)
    forged = _mail(1, subject="Same id, other sender", sender="mallory@example.com")
    results = _store(state, channel_id, [first, forged])

    assert results[0].message_id is not None and results[1].message_id is not None
    with state.session_factory() as session:
        ids = session.scalars(select(Message.provider_message_id).order_by(Message.id)).all()
    assert ids[0] == "batch-1@example.com"
    assert ids[1].startswith("sha256:")


def test_batch_resends_are_duplicates_of_the_stored_mail(state, channel_id):
    _store(state, channel_id, [_mail(1), _mail(2)])
    results = _store(state, channel_id, [_mail(1), _mail(3), _mail(2)])

    assert [result.duplicate for result in results] == [True, False, True]


def test_batch_mixes_known_and_new_contacts(state, channel_id):
    with state.session_factory() as session:
        known = ingest_message(session, channel_id, _mail(1, sender="Ann Known <ann@example.com>"))
    batch = [
        _mail(2, sender="Ann Other Name <ann@example.com>"),
        _mail(3, sender="Bob New <bob@example.com>"),
        _mail(4, sender="bob@example.com"),
    ]
    results = _store(state, channel_id, batch)

    with state.session_factory() as session:
        contacts = {
            identity.value: identity.contact_id
            for identity in session.scalars(select(ContactIdentity))
        }
        names = {contact.id: contact.name for contact in session.scalars(select(Contact))}
        senders = [
            session.get(Message, result.message_id).contact_id for result in results
        ]
        assert session.get(Message, known.message_id).contact_id == contacts["ann@example.com"]
    assert senders == [contacts["ann@example.com"], contacts["bob@example.com"], contacts["bob@example.com"]]
    # An email display name only fills an empty name.
    assert names == {contacts["ann@example.com"]: "Ann Known", contacts["bob@example.com"]: "Bob New"}


def test_batch_events_show_what_was_stored(state, channel_id, published):
    batch = [
        _mail(1, sender="Ann <ann@example.com>"),
        _mail(2, sender="ann@example.com", In_Reply_To="<batch-1@example.com>"),
        _mail(3, sender="Bob <bob@example.com>"),
    ]
    attached = EmailMessage()
    attached["From"] = "bob@example.com"
    attached["To"] = SUPPORT
    attached["Subject"] = "Invoice"
    attached["Message-ID"] = "<batch-invoice@example.com>"
    attached["References"] = "<batch-3@example.com>"
    attached.set_content("See the attached invoice.\n\n> quoted earlier text\n")
    attached.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf")
    batch.append(parse_email(attached.as_bytes()))
    results = _store(state, channel_id, batch)

    types = [event["type"] for event in published]
    assert types == [
        "conversation.created", "message.created", "conversation.updated", "message.created",
        "conversation.created", "message.created", "conversation.updated", "message.created",
    ]
    assert [event["event_id"] for event in published] == sorted(event["event_id"] for event in published)
    messages = [event for event in published if event["type"] == "message.created"]
    with state.session_factory() as session:
        for event, result in zip(messages, results):
            assert event["message"] == message_to_dict(session.get(Message, result.message_id))
        # The last event of each conversation shows it as stored.
        for event in (messages[1], messages[3]):
            stored = session.get(Conversation, event["conversation"]["id"])
            assert event["conversation"] == conversation_to_dict(stored)
    assert messages[0]["conversation"]["unread_count"] == 1
    assert messages[3]["message"]["visible_text"] == "See the attached invoice."
    assert messages[3]["message"]["attachments"][0]["filename"] == "invoice.pdf"
    assert messages[3]["message"]["attachments"][0]["status"] == "stored"


def test_batch_reopening_reply_keeps_order(state, channel_id):
    with state.session_factory() as session:
        first = ingest_message(session, channel_id, _mail(1))
        with session.begin():
            set_status(session, session.get(Conversation, first.conversation_id), ConversationStatus.RESOLVED.value, None)
    batch = [
        _mail(2),
        # A reply to a resolved conversation reopens it, which the per-message path does.
        _mail(3, sender="customer1@example.com", In_Reply_To="<batch-1@example.com>"),
        # Stored in bulk again, after the reopened conversation's new message.
        _mail(4, sender="customer1@example.com", In_Reply_To="<batch-3@example.com>"),
    ]
    results = _store(state, channel_id, batch)

    assert results[1].conversation_id == results[2].conversation_id == first.conversation_id
    with state.session_factory() as session:
        reasons = [session.get(Message, result.message_id).thread_reason for result in results]
        assert session.get(Conversation, first.conversation_id).status == ConversationStatus.OPEN.value
    assert reasons == ["new", "reopened", "in_reply_to"]


def test_batch_stores_a_payload_that_failed_before(state, channel_id):
    mail = _mail(1)
    with state.session_factory() as session:
        record_failed_payload(session, channel_id, mail.raw, "rfc822", "a parser bug")
    result = _store(state, channel_id, [mail])[0]

    assert result.message_id is not None
    with state.session_factory() as session:
        statuses = session.scalars(select(RawPayload.status)).all()
    assert statuses == [PayloadStatus.PROCESSED.value]



def test_failed_payloads_keep_their_rows_on_either_path(state, channel_id):
    # The subject reference sends the second mail through the per-message path.
    mails = [_mail(1), _mail(2, subject="Re: your request [#4242]"), _mail(3)]
    failed_ids = []
    with state.session_factory() as session:
        for mail in mails:
            failed_ids.append(record_failed_payload(session, channel_id, mail.raw, "rfc822", "a parser bug"))

    results = _store(state, channel_id, mails)

    with state.session_factory() as session:
        for mail, result, failed_id in zip(mails, results, failed_ids):
            message = session.get(Message, result.message_id)
            assert message.raw_payload_id == failed_id, mail.subject
        rows = session.execute(select(RawPayload.id, RawPayload.status, RawPayload.error).order_by(RawPayload.id)).all()
    assert [tuple(row) for row in rows] == [(failed_id, PayloadStatus.PROCESSED.value, None) for failed_id in failed_ids]

def test_batch_hashes_message_id_long_in_bytes(state, channel_id):
    # 900 CJK characters fit in a header line of 998 characters, but they take 2,700 bytes
    # in UTF-8, more than an entry of a PostgreSQL btree index can hold with its key.
    long_id = "".join(chr(0x4E00 + (index * 7919) % 20000) for index in range(900)) + "@example.com"
    raw = (
        f"From: customer@example.com\r\nTo: {SUPPORT}\r\nSubject: Unicode id\r\n"
        f"Message-ID: <{long_id}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
    ).encode()
    with state.session_factory() as session:
        with session.begin():
            results = ingest_batch(session, channel_id, [parse_email(raw), _mail(2)])

    assert all(result.message_id is not None for result in results)
    with state.session_factory() as session:
        ids = session.scalars(select(Message.provider_message_id).order_by(Message.id)).all()
    assert ids[0].startswith("sha256:")
    assert ids[1] == "batch-2@example.com"
