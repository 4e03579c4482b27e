"""Concurrent contact merges through the API on PostgreSQL: no deadlock, no 500.

A connection of the test holds a row lock so the merges queue up in a known order, and the
test waits until PostgreSQL reports them as waiting for a lock. SQLite locks the whole
database per write transaction, so these orders cannot happen there.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select, text

from gateway import contacts_api
from inbox.contact_merge import merge_contacts
from inbox.models import Agent, Contact
from tests.support.contacts import add_email_channel, contact_of, receive_mail
from tests.support.conversations import receive

ON_POSTGRES = (os.environ.get("SWITCHBOARD_TEST_DATABASE_URL") or "").startswith("postgresql")
pytestmark = pytest.mark.skipif(
    not ON_POSTGRES, reason="row locks and deadlocks need PostgreSQL (SWITCHBOARD_TEST_DATABASE_URL)"
)

WAIT_LIMIT = 30.0


@pytest.fixture
def bearer(api_token):
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def contacts(state, agent, whatsapp_channel):
    """Three contacts in id order: a walk-in merged into the phone contact, email, phone."""
    with state.session_factory() as session:
        walk_in = Contact(name="Walk-in")
        session.add(walk_in)
        session.commit()
        walk_in_id = walk_in.id
    email = contact_of(state, receive_mail(state, add_email_channel(state).id, "g@example.org", "hi").conversation_id)
    phone = contact_of(state, receive(state, whatsapp_channel.id, "+15551230042", "hi").conversation_id)
    with state.session_factory() as session:
        merge_contacts(session, session.get(Agent, agent.id), phone, walk_in_id)
        session.commit()
    assert walk_in_id < email < phone
    return {"walk_in": walk_in_id, "email": email, "phone": phone}


def lock_waiters(state) -> int:
    with state.engine.connect() as connection:
        return connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the merges to queue on the row lock"
        time.sleep(0.02)


def post_merge(app, bearer, kept: int, merged: int, results: dict) -> threading.Thread:
    def run() -> None:
        try:
            response = app.test_client().post(
                f"/api/v1/contacts/{kept}/merge", json={"other_id": merged}, headers=bearer
            )
        except Exception as error:  # noqa: BLE001 - the testing app raises what would be a 500
            results[(kept, merged)] = (500, repr(error))
            return
        results[(kept, merged)] = (response.status_code, response.get_json())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_merges_touching_earlier_merge_do_not_deadlock(app, state, bearer, contacts, caplog):
    walk_in, email, phone = contacts["walk_in"], contacts["email"], contacts["phone"]
    results: dict = {}

    with caplog.at_level(logging.WARNING, logger=contacts_api.__name__), state.engine.connect() as blocker:
        blocker.begin()
        blocker.execute(select(Contact.id).where(Contact.id == phone).with_for_update())
        # The phone contact, which once took in the walk-in, goes into the email contact.
        first = post_merge(app, bearer, email, phone, results)
        wait_for(lambda: lock_waiters(state) == 1)
        # The same phone contact into the walk-in, which was merged away already.
        second = post_merge(app, bearer, walk_in, phone, results)
        wait_for(lambda: lock_waiters(state) == 2)
        blocker.rollback()
    first.join(WAIT_LIMIT)
    second.join(WAIT_LIMIT)

    status, body = results[(email, phone)]
    assert status == 200, body
    status, body = results[(walk_in, phone)]
    assert status == 409, body
    assert body["error"]["code"] in ("already_merged", "contact_merged")
    # Both went through on the first attempt: neither was aborted as a deadlock and retried.
    assert "lock conflict" not in caplog.text
    with state.session_factory() as session:
        assert session.get(Contact, phone).merged_into_id == email
        # The walk-in follows the contact it was merged into.
        assert session.get(Contact, walk_in).merged_into_id == email


@pytest.mark.parametrize(("attempts", "expected_status"), [(3, 200), (1, 409)])
def test_merge_deadlock_is_retried_or_409(app, state, bearer, contacts, caplog, monkeypatch, attempts, expected_status):
    monkeypatch.setattr(contacts_api, "MERGE_ATTEMPTS", attempts)
    email, phone = contacts["email"], contacts["phone"]
    results: dict = {}

    with caplog.at_level(logging.WARNING, logger=contacts_api.__name__), state.engine.connect() as blocker:
        blocker.begin()
        # PostgreSQL checks for a deadlock after deadlock_timeout (1 s by default) of waiting.
        # This connection waits longer, so the merge's check finds the cycle and aborts the merge.
        blocker.execute(text("SET LOCAL deadlock_timeout = '60s'"))
        blocker.execute(select(Contact.id).where(Contact.id == phone).with_for_update())
        merge = post_merge(app, bearer, email, phone, results)
        wait_for(lambda: lock_waiters(state) == 1)
        # The merge holds the email contact and waits for the phone contact: close the cycle.
        blocker.execute(select(Contact.id).where(Contact.id == email).with_for_update())
        blocker.commit()
    merge.join(WAIT_LIMIT)

    status, body = results[(email, phone)]
    assert status == expected_status, body
    assert "lock conflict" in caplog.text
    with state.session_factory() as session:
        merged_into = session.get(Contact, phone).merged_into_id
    if expected_status == 200:
        assert merged_into == email
    else:
        assert body["error"]["code"] == "merge_busy"
        assert merged_into is None
