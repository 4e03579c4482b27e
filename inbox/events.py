"""Events: rows written in the same transaction as the change, published after commit.

``record_event`` remembers an ``Event`` row on the session. When that session's transaction
commits, the remembered rows are inserted first, and once it has committed they go, in id
order, to the publishers registered on that session's factory with ``add_publisher``. On
rollback they are dropped. A client that missed events reads them back with ``events_after``.

On PostgreSQL event ids must become visible in id order, so that a client resuming "after id
N" cannot skip a lower id that commits later. The transaction that inserts events therefore
holds one advisory lock from the insert to its commit. The rows are inserted at the commit,
after every other statement of the transaction, so that the lock is never held while the
transaction waits for a row lock. Taken earlier, it made two transactions deadlock: one held
it and waited for a row, and the other held that row and waited for the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from inbox.bulk import insert_rows
from inbox.models import Event, utcnow

log = logging.getLogger(__name__)

Publisher = Callable[[list[dict[str, Any]]], None]

_PENDING_KEY = "switchboard.pending_events"
# The advisory lock that a transaction inserting events holds until it commits (PostgreSQL).
EVENT_LOCK_KEY = 7316201
_PUBLISHERS_KEY = "switchboard.publishers"


def add_publisher(session_factory: sessionmaker[Session], publisher: Publisher) -> None:
    """Register a callable that receives the events committed by sessions of this factory.

    The callable gets a list of event dicts (see ``event_message``) in id order. It runs in
    the committing thread, so it must be quick and must not use the session.
    """
    publishers = session_factory.kw.setdefault("info", {}).setdefault(_PUBLISHERS_KEY, [])
    publishers.append(publisher)


def record_event(
    session: Session, type_: str, payload: dict[str, Any], conversation_id: int | None = None
) -> Event:
    """Queue an event row for insertion at the commit of the session's transaction, and for
    publishing after it. Returns the row, whose id is set at the commit."""
    row = Event(type=type_, payload=payload, conversation_id=conversation_id, created_at=utcnow())
    session.info.setdefault(_PENDING_KEY, []).append(row)
    return row


def record_events(
    session: Session, events: Sequence[tuple[str, dict[str, Any], int | None]]
) -> list[Event]:
    """Queue many events as ``record_event`` does.

    ``events`` contains (type, payload, conversation id) in the order the changes happened; the
    ids follow that order. Returns the rows, which are not part of the session's identity map.
    """
    now = utcnow()
    rows = [
        Event(type=type_, payload=payload, conversation_id=conversation_id, created_at=now)
        for type_, payload, conversation_id in events
    ]
    session.info.setdefault(_PENDING_KEY, []).extend(rows)
    return rows


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """Run the block in a SAVEPOINT of the session's transaction.

    When the block raises, the savepoint rolls back and so do the events the block recorded:
    they are never published, while the events recorded before it still are on commit.
    """
    pending = session.info.setdefault(_PENDING_KEY, [])
    kept = len(pending)
    try:
        with session.begin_nested():
            yield
    except BaseException:
        del pending[kept:]
        raise


def event_message(row: Event) -> dict[str, Any]:
    """Return the wire form of an event: its payload plus ``event_id`` and ``type``."""
    return {**row.payload, "event_id": row.id, "type": row.type}


def events_after(session: Session, last_event_id: int, limit: int = 1000) -> list[Event]:
    """Return up to ``limit`` events with an id above ``last_event_id``, oldest first."""
    query = select(Event).where(Event.id > last_event_id).order_by(Event.id).limit(limit)
    return list(session.scalars(query))


def latest_event_id(session: Session) -> int:
    return session.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0


@sa_event.listens_for(Session, "before_commit")
def _insert_recorded(session: Session) -> None:
    # SQLAlchemy also calls this before a SAVEPOINT is released; the outermost commit inserts.
    if session.in_nested_transaction():
        return
    rows = [row for row in session.info.get(_PENDING_KEY, ()) if row.id is None]
    if not rows:
        return
    # Every other change first, with the row locks it takes, and then the event lock.
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({EVENT_LOCK_KEY})"))
    ids = insert_rows(session, Event.__table__, [
        {"type": row.type, "payload": row.payload, "conversation_id": row.conversation_id, "created_at": row.created_at}
        for row in rows
    ])
    for row, id_ in zip(rows, ids):
        row.id = id_


@sa_event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    # SQLAlchemy 2.1 also calls this when a SAVEPOINT is released, and the outer
    # transaction may still roll back, so only the outermost commit publishes.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING_KEY, None)
    if not pending:
        return
    messages = [event_message(row) for row in sorted(pending, key=lambda row: row.id)]
    for publisher in session.info.get(_PUBLISHERS_KEY, ()):
        try:
            publisher(messages)
        except Exception:
            # The change is committed; a client catches up through events_after on reconnect.
            log.exception("event publisher failed for events %s", [m["event_id"] for m in messages])


@sa_event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session: Session) -> None:
    # A rolled-back SAVEPOINT drops only its own events, which ``savepoint`` does.
    if session.in_nested_transaction():
        return
    session.info.pop(_PENDING_KEY, None)
