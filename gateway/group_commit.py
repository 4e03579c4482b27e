"""Group commit of webhook payloads: concurrent requests share one INSERT and one COMMIT.

A webhook view must not respond to Twilio before its payload is committed. Committing every
payload in a transaction of its own costs each request a pool checkout with a ping, an
INSERT and a COMMIT, three round trips to the database, and the database a commit each.
Here a request hands its verified payload to ``GroupCommitter.store`` and waits. One
request thread at a time, the leader, takes every payload that is waiting (up to
``MAX_BATCH``), inserts them in one statement, commits, and wakes their requests. Payloads
that arrive meanwhile wait for the next leader: the leader hands the role to the oldest
of them, and then returns to its own request. The connection passes on with the role, so a
steady stream of webhooks skips the pool's ping. It also stays through short pauses, which
keep-alive clients make between a batch's responses and their next requests: a thread of the
committer returns it to the pool after ``CONNECTION_IDLE_SECONDS`` without a payload.

Each request still learns the outcome of its own payload. When a batch fails, it is
written again one payload per transaction on a fresh connection, so a payload that the
database rejects fails alone, and a connection that went stale while it was held costs
no error. A payload whose own transaction failed raises in its request, which responds
with a 5xx, so Twilio sends it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Connection

from gateway import Switchboard
from gateway.webhook_worker import writer_turn
from inbox.webhook_queue import queue_payloads

log = logging.getLogger(__name__)

# Payloads per statement at most. A batch contains the payloads of the requests that arrived
# while the previous one was written, so it stays far smaller unless the database stalls.
MAX_BATCH = 100
# How long the connection stays checked out without a payload before it goes back to the pool.
CONNECTION_IDLE_SECONDS = 2.0

_COMMITTER_KEY = "_payload_committer"


class _Pending:
    """One request's payload while it waits for its commit."""

    __slots__ = ("channel_id", "raw", "raw_format", "_asleep", "_woken", "lead", "written", "queued", "error")

    def __init__(self, channel_id: int, raw: bytes, raw_format: str) -> None:
        self.channel_id = channel_id
        self.raw = raw
        self.raw_format = raw_format
        # Held until the payload's outcome is known, or until this request becomes the leader.
        # A plain lock, because a threading.Event's set() took about 9% of a web process's
        # time in a status-callback storm.
        self._asleep = threading.Lock()
        self._asleep.acquire()
        self._woken = False
        self.lead = False
        # Set with ``queued`` once the payload's transaction committed.
        self.written = False
        self.queued = False
        self.error: BaseException | None = None

    def wait(self) -> None:
        """Block until ``wake`` is called."""
        self._asleep.acquire()

    def wake(self) -> None:
        """Let ``wait`` return; calls after the first do nothing."""
        # Only one thread at a time wakes a request: its leader, and later the request itself.
        if not self._woken:
            self._woken = True
            self._asleep.release()


class GroupCommitter:
    """Stores webhook payloads as pending, many requests' payloads per transaction."""

    def __init__(self, state: Switchboard, max_batch: int = MAX_BATCH) -> None:
        self.state = state
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        # True while a request thread is the leader; only the leader writes.
        self._leading = False
        # The connection that the leader passes to its successor, None when it is in the pool.
        self._connection: Connection | None = None
        # When the last leader finished, and the thread that returns an idle connection to the pool.
        self._idle_since = 0.0
        self._releaser: threading.Thread | None = None

    def store(self, channel_id: int, raw: bytes, raw_format: str) -> bool:
        """Store ``raw`` as a pending payload of the channel, committed when this returns.

        Returns True when the payload was queued, and False for a replay (see
        ``inbox.webhook_queue.queue_payloads``). Raises the database's error when the
        payload could not be stored; nothing of it is then stored.
        """
        pending = _Pending(channel_id, raw, raw_format)
        with self._lock:
            self._waiting.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.wait()
            lead = pending.lead
        if lead:
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.queued

    def _lead(self) -> None:
        """Write one batch, which contains this thread's own payload, then pass the role on."""
        with self._lock:
            # The leader's payload is the oldest waiting one, so it is in this batch.
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
        try:
            self._write(batch)
        finally:
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.wake()
                else:
                    self._leading = False
                    self._idle_since = time.monotonic()
            for pending in batch:
                if not pending.written and pending.error is None:
                    # Only an exception that is not an Exception (an interrupt) gets here.
                    pending.error = RuntimeError("storing the webhook payload was interrupted")
                pending.wake()

    def _write(self, batch: Sequence[_Pending]) -> None:
        """Commit the batch in one transaction, or else each payload in its own."""
        payloads = [(pending.channel_id, pending.raw, pending.raw_format) for pending in batch]
        try:
            with writer_turn(self.state):
                flags = self._commit(payloads)
        except Exception as error:  # noqa: BLE001 - each payload is written again below
            self._discard_connection()
            if len(batch) == 1 and not getattr(error, "connection_invalidated", False):
                batch[0].error = error
                return
            log.warning("storing %d webhook payload(s) in one transaction failed, storing them one at a time: %s",
                        len(batch), error)
            self._write_each(batch)
            return
        for pending, queued in zip(batch, flags):
            pending.queued = queued
            pending.written = True

    def _connect(self) -> Connection:
        connection = self.state.engine.connect()
        if connection.dialect.name == "postgresql":
            # The batch is one INSERT, which PostgreSQL runs as a transaction of its own in
            # autocommit mode, committed when it returns. That spares the BEGIN and COMMIT
            # round trips. SQLite keeps its BEGIN IMMEDIATE, which takes the write lock.
            connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    def _commit(self, payloads: list[tuple[int, bytes, str]]) -> list[bool]:
        if self._connection is None:
            self._connection = self._connect()
            with self._lock:
                if self._releaser is None:
                    self._releaser = threading.Thread(
                        target=self._release_when_idle, name="webhook-payload-connection", daemon=True,
                    )
                    self._releaser.start()
        with self._connection.begin():
            return queue_payloads(self._connection, payloads)

    def _release_when_idle(self) -> None:
        """Return the connection to the pool once no payload came for ``CONNECTION_IDLE_SECONDS``, then end."""
        while True:
            time.sleep(CONNECTION_IDLE_SECONDS / 2)
            with self._lock:
                if self._connection is not None and (
                    self._leading or time.monotonic() - self._idle_since < CONNECTION_IDLE_SECONDS
                ):
                    continue
                # A leader that comes later connects again and starts a new thread.
                idle_connection, self._connection = self._connection, None
                self._releaser = None
            _close_quietly(idle_connection)
            return

    def _write_each(self, batch: Sequence[_Pending]) -> None:
        for pending in batch:
            try:
                with writer_turn(self.state), self._connect() as connection, connection.begin():
                    payload = (pending.channel_id, pending.raw, pending.raw_format)
                    pending.queued = queue_payloads(connection, [payload])[0]
                pending.written = True
            except Exception as error:  # noqa: BLE001 - reported to the payload's own request
                pending.error = error

    def _discard_connection(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        _close_quietly(connection)


def _close_quietly(connection: Connection | None) -> None:
    """Close ``connection`` when there is one; the payloads' outcomes are known already."""
    if connection is None:
        return
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - the connection is abandoned either way
        log.warning("closing a webhook payload connection failed", exc_info=True)


def payload_committer(state: Switchboard) -> GroupCommitter:
    """Return the process's group committer of webhook payloads."""
    # NOTE: kept on the instance until Switchboard has a field for it, as for media_wakeup.
    committer = state.__dict__.get(_COMMITTER_KEY)
    if committer is None:
        committer = state.__dict__.setdefault(_COMMITTER_KEY, GroupCommitter(state))
    return committer
