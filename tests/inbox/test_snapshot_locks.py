"""Events carry a whole conversation, so a transaction that publishes one must read it under the
row lock. Each test leaves an assignment uncommitted in one transaction, starts another change
in a second one, commits the assignment once the second waits, and checks that the second's event
still shows the assignee. On SQLite every transaction takes the write lock at BEGIN, so the
interleaving cannot happen there; these tests run on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from inbox.contacts import rename_contact
from inbox.conversations import mark_conversation_read
from inbox.models import Agent, Conversation, utcnow
from inbox.workflow import change_conversation, parse_changes
from tests.support.conversations import receive

GRACE = "+15551230001"
LOCK_WAIT_LIMIT_SECONDS = 10


@pytest.fixture(autouse=True)
def _postgres_only(state) -> None:
    if state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes writers at BEGIN; the PostgreSQL pass runs these tests")


def _wait_for_lock_waiter(state, thread: threading.Thread, failures: list[BaseException]) -> None:
    """Return once another connection of this database waits for a lock."""
    deadline = time.monotonic() + LOCK_WAIT_LIMIT_SECONDS
    with state.engine.connect() as connection:
        while time.monotonic() < deadline:
            assert thread.is_alive(), f"the second transaction ended without waiting: {failures}"
            waiting = connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ))
            if waiting:
                return
            # PostgreSQL keeps one snapshot of the activity view per transaction.
            connection.rollback()
            time.sleep(0.01)
    raise AssertionError("the second transaction never waited for the first one's lock")


def _run_during_assignment(state, agent: Agent, conversation_id: int, change: Callable[[Session], None]) -> None:
    """Assign the conversation in one transaction while ``change`` runs and commits in another."""
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with state.session_factory() as session:
                change(session)
                session.commit()
        except BaseException as error:  # noqa: BLE001 - reported by the test thread below
            failures.append(error)

    with state.session_factory() as session:
        actor = session.get(Agent, agent.id)
        change_conversation(session, actor, conversation_id, parse_changes({"assignee_id": agent.id}, utcnow()))
        thread = threading.Thread(target=second)
        thread.start()
        _wait_for_lock_waiter(state, thread, failures)
        session.commit()
    thread.join(LOCK_WAIT_LIMIT_SECONDS)
    assert not thread.is_alive()
    assert failures == []


def _last_snapshot(published: list[dict], conversation_id: int) -> dict:
    updates = [
        event["conversation"] for event in published
        if event["type"] == "conversation.updated" and event["conversation"]["id"] == conversation_id
    ]
    return updates[-1]


def test_read_mark_keeps_concurrent_assignment(state, agent, whatsapp_channel, published):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id

    _run_during_assignment(state, agent, conversation_id, lambda session: mark_conversation_read(session, conversation_id))

    snapshot = _last_snapshot(published, conversation_id)
    assert snapshot["unread_count"] == 0
    assert (snapshot["assignee"] or {}).get("id") == agent.id


def test_contact_rename_keeps_concurrent_assignment(state, agent, whatsapp_channel, published):
    conversation_id = receive(state, whatsapp_channel.id, GRACE).conversation_id
    with state.session_factory() as session:
        contact_id = session.get(Conversation, conversation_id).contact_id

    _run_during_assignment(state, agent, conversation_id, lambda session: rename_contact(session, contact_id, "Grace Hopper"))

    snapshot = _last_snapshot(published, conversation_id)
    assert snapshot["contact"]["name"] == "Grace Hopper"
    assert (snapshot["assignee"] or {}).get("id") == agent.id
