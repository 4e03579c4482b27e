"""Many-row statements: ids in row order, Python-side defaults, and conditions on a set of values,
on the test database (SQLite, or PostgreSQL's array statements with SWITCHBOARD_TEST_DATABASE_URL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from inbox.bulk import insert_rows, one_of
from inbox.models import Contact, Event, PayloadStatus, RawPayload

AWKWARD = ['plain', 'quote " and \\ backslash', "{braces}, commas", "NULL", "", "emoji 📦 and U+2028 \u2028"]


def test_insert_rows_returns_ids_in_row_order(state):
    created = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    rows = [
        {"type": f"type {index}", "payload": {"text": text, "index": index}, "conversation_id": None,
         "created_at": created + timedelta(seconds=index)}
        for index, text in enumerate(AWKWARD * 20)
    ]
    with state.session_factory() as session:
        # A row before the batch, so the batch's ids do not start at 1.
        insert_rows(session, Event.__table__, rows[:1])
        ids = insert_rows(session, Event.__table__, rows)
        session.commit()

    with state.session_factory() as session:
        stored = {event.id: event for event in session.scalars(select(Event).where(Event.id.in_(ids)))}
    assert len(set(ids)) == len(rows)
    for id_, row in zip(ids, rows):
        assert stored[id_].type == row["type"]
        assert stored[id_].payload == row["payload"]
        assert stored[id_].created_at == row["created_at"]


def test_insert_rows_defaults_nulls_and_bytes(state, whatsapp_channel):
    with state.session_factory() as session:
        contact_ids = insert_rows(session, Contact.__table__, [
            {"name": None, "name_set_by_agent": False}, {"name": None, "name_set_by_agent": False},
        ])
        payload_ids = insert_rows(session, RawPayload.__table__, [
            {"channel_id": whatsapp_channel.id, "format": "twilio-form", "digest": f"digest {index}",
             "body": body, "status": PayloadStatus.PROCESSED.value}
            for index, body in enumerate([b"\x00\xff binary", b"", "Body=caf\u00e9".encode()])
        ])
        session.commit()

    with state.session_factory() as session:
        contacts = [session.get(Contact, id_) for id_ in contact_ids]
        payloads = [session.get(RawPayload, id_) for id_ in payload_ids]
    assert [contact.name for contact in contacts] == [None, None]
    # created_at has a Python-side default, which the statement must fill in for each row.
    assert all(contact.created_at is not None for contact in contacts)
    assert [payload.body for payload in payloads] == [b"\x00\xff binary", b"", "Body=caf\u00e9".encode()]
    assert all(payload.received_at is not None for payload in payloads)


def test_insert_rows_of_nothing_inserts_nothing(state):
    with state.session_factory() as session:
        assert insert_rows(session, Event.__table__, []) == []
        assert session.scalars(select(Event)).all() == []


def test_one_of_matches_exactly_the_values(state, whatsapp_channel):
    with state.session_factory() as session:
        ids = insert_rows(session, RawPayload.__table__, [
            {"channel_id": whatsapp_channel.id, "format": "twilio-form", "digest": digest, "body": b"x",
             "status": PayloadStatus.PROCESSED.value}
            for digest in AWKWARD
        ])
        session.commit()

    with state.session_factory() as session:
        def digests_among(values) -> set[str]:
            return set(session.scalars(select(RawPayload.digest).where(one_of(session, RawPayload.digest, values))))

        assert digests_among(AWKWARD[1:3]) == set(AWKWARD[1:3])
        assert digests_among({"NULL", "nothing like it"}) == {"NULL"}
        assert digests_among([]) == set()
        found = session.scalars(select(RawPayload.id).where(one_of(session, RawPayload.id, ids[::2])))
        assert set(found) == set(ids[::2])


def test_insert_rows_rejects_text_too_long_for_column(state):
    if state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce the length of VARCHAR columns")
    name = "x" * 201  # contacts.name is VARCHAR(200)

    with state.session_factory() as session:
        # A plain INSERT raises here, and the array statement must not cut the value instead.
        with pytest.raises(DataError):
            insert_rows(session, Contact.__table__, [{"name": name, "name_set_by_agent": False}])


def test_one_of_ignores_values_longer_than_column(state, whatsapp_channel):
    stored = "a" * 64  # raw_payloads.digest is VARCHAR(64)
    with state.session_factory() as session:
        insert_rows(session, RawPayload.__table__, [
            {"channel_id": whatsapp_channel.id, "format": "twilio-form", "digest": stored, "body": b"x",
             "status": PayloadStatus.PROCESSED.value},
        ])
        session.commit()

    with state.session_factory() as session:
        longer = select(RawPayload.digest).where(one_of(session, RawPayload.digest, [stored + "b"]))
        assert session.scalars(longer).all() == []
        same = select(RawPayload.digest).where(one_of(session, RawPayload.digest, [stored]))
        assert session.scalars(same).all() == [stored]
