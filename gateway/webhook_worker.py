"""The webhook worker: ingests the Twilio webhooks acknowledged once stored.

The webhook views store a signed message or status callback as a pending raw payload and
respond to Twilio at once (see ``inbox.webhook_queue``). This worker ingests the pending
messages a batch per transaction, and applies the pending status callbacks a batch per
transaction. In the process that stored a payload it wakes at once (``webhook_wakeup``).
On PostgreSQL a worker in another process (``switchboard worker`` beside ``switchboard
web``) wakes on the notification that a web process sends on ``WAKEUP_CHANNEL`` after it
stored a payload (``wake_webhook_workers``), and waits ``GATHER_SECONDS`` for more before
its round. Besides, every worker polls every
``POLL_SECONDS``, which also covers the time a lost listening connection takes to come back.
Each process runs one worker; on PostgreSQL several share the queue without taking the same
payload.

On SQLite one transaction writes at a time, and a thread that finds the database locked
sleeps in SQLite's busy handler for up to 100 ms at a step. So the webhook views and this
worker take turns on a mutex of the process (``writer_turn``), and a view waiting to store
a webhook goes before the worker's next batch: the response to Twilio waits for one batch at most.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from gateway import Switchboard
from channels.whatsapp import STATUS_RAW_FORMAT
from gateway.reprocess import MESSAGE_FORMATS, parse_raw, parse_status_raw
from inbox.webhook_queue import (
    WAKEUP_CHANNEL,
    QueueBatch,
    StatusBatch,
    apply_pending_statuses,
    ingest_pending,
    notify_workers,
    prune_applied_statuses,
)

log = logging.getLogger(__name__)

# How often a worker looks for payloads that another process stored.
POLL_SECONDS = 0.5
# Payloads per transaction. On SQLite the response to a webhook may wait for one batch, so the
# batch stays small there. PostgreSQL lets the views store webhooks beside it. Every
# transaction that records an event takes one advisory lock at its commit (inbox.events), so
# a batch holds it only for the insert of its events and the commit itself.
SQLITE_BATCH_SIZE = 4
BATCH_SIZE = 100
# Status callbacks per transaction. Applying one costs a few row updates, far less than
# storing a message, so the batches are larger (sizes chosen by estimate, as above).
SQLITE_STATUS_BATCH_SIZE = 20
STATUS_BATCH_SIZE = 200
# How long a woken worker on PostgreSQL waits for more webhooks before its round. It adds up
# to this much to a message's latency and spares a transaction per webhook in a burst.
GATHER_SECONDS = 0.1
# How long the listening connection waits for a notification before it checks for a stop.
LISTEN_SECONDS = 1.0
# After a database error the worker waits this long, doubling up to the maximum.
RETRY_SECONDS = 1.0
# How often a worker deletes the applied status callbacks that are past their retention.
PRUNE_SECONDS = 60.0
# Applied status callbacks deleted per transaction.
PRUNE_BATCH_SIZE = 5000
RETRY_SECONDS_MAX = 30.0

# A web process sends at most one notification to the other processes' workers per this many
# seconds, from a thread of its own (_WorkerNotifier).
NOTIFY_INTERVAL_SECONDS = 0.05
# The notifying thread ends after this long without a webhook, and starts again on the next.
NOTIFIER_IDLE_SECONDS = 60.0
# The notifying thread closes its connection after this long without a webhook, so that a
# burst does not keep a database connection for the thread's whole idle time.
NOTIFIER_CONNECTION_IDLE_SECONDS = 2.0

_WAKEUP_KEY = "_webhook_wakeup"
_NOTIFIER_KEY = "_webhook_notifier"
_TURN_KEY = "_sqlite_writer_turn"


def webhook_wakeup(state: Switchboard) -> threading.Event:
    """Return the event that wakes this process's webhook worker, set when a webhook is stored."""
    # NOTE: kept on the instance until Switchboard has a field for it, as for media_wakeup.
    return state.__dict__.setdefault(_WAKEUP_KEY, threading.Event())


class _WorkerNotifier:
    """Sends the notification that wakes the other processes' webhook workers.

    A thread of its own sends it, so that no response to Twilio waits for it. Every request
    is followed by a notification that starts after the request was made, and so after the
    payload's commit. Requests made while one is being sent, or within
    ``NOTIFY_INTERVAL_SECONDS`` after it, share the next notification.
    """

    def __init__(self, state: Switchboard) -> None:
        self._state = state
        self._requested = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        self._requested.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-notifier", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        # One autocommit connection while webhooks keep coming: a notification is then one
        # round trip, with no pool checkout, ping or separate COMMIT.
        connection: Connection | None = None
        try:
            while True:
                idle_limit = NOTIFIER_CONNECTION_IDLE_SECONDS if connection is not None else NOTIFIER_IDLE_SECONDS
                if not self._requested.wait(idle_limit):
                    if connection is not None:
                        _close_quietly(connection)
                        connection = None
                        continue
                    with self._lock:
                        # A request made after the wait timed out still finds this thread running.
                        if not self._requested.is_set():
                            self._thread = None
                            return
                    continue
                self._requested.clear()
                try:
                    if connection is None:
                        connection = self._state.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    notify_workers(connection)
                except SQLAlchemyError as error:
                    # The payloads are stored, and the workers' polling finds them.
                    log.warning("notifying the webhook workers failed; they find new payloads by polling: %s", error)
                    _close_quietly(connection)
                    connection = None
                time.sleep(NOTIFY_INTERVAL_SECONDS)
        finally:
            _close_quietly(connection)


def _close_quietly(connection: Connection | None) -> None:
    if connection is not None:
        try:
            connection.close()
        except SQLAlchemyError:
            log.debug("closing the notifying connection failed", exc_info=True)


def wake_webhook_workers(state: Switchboard) -> None:
    """Wake this process's webhook worker and, on PostgreSQL, those of the other processes.

    Call it after the payload's commit. The notification to other processes goes out from a
    thread of its own (see ``_WorkerNotifier``), so this returns without waiting for it.
    """
    webhook_wakeup(state).set()
    if state.engine.dialect.name != "postgresql":
        return
    notifier = state.__dict__.get(_NOTIFIER_KEY)
    if notifier is None:
        notifier = state.__dict__.setdefault(_NOTIFIER_KEY, _WorkerNotifier(state))
    notifier.request()


class WriterTurn:
    """One writer at a time, and the webhook views before the worker.

    A plain mutex does not hand over: the worker that releases it takes it back for its next
    batch before a waiting view runs. Here the worker waits while a view waits, and until
    the views have been quiet for ``quiet`` seconds, so that during a burst of webhooks it
    does not hold the interpreter and the database while Twilio waits for responses. It waits
    ``max_defer`` seconds at most, so a steady stream of webhooks still gets ingested.
    """

    def __init__(self, quiet: float = 0.005, max_defer: float = 0.25) -> None:
        self._condition = threading.Condition()
        self._busy = False
        self._waiting = 0
        self._last_foreground = 0.0
        self.quiet = quiet
        self.max_defer = max_defer

    @contextlib.contextmanager
    def foreground(self) -> Iterator[None]:
        with self._condition:
            self._waiting += 1
            while self._busy:
                self._condition.wait()
            self._waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release(foreground=True)

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        deadline = time.monotonic() + self.max_defer
        with self._condition:
            while True:
                now = time.monotonic()
                quiet_at = self._last_foreground + self.quiet
                if not self._busy and not self._waiting and (now >= quiet_at or now >= deadline):
                    break
                self._condition.wait(max(min(quiet_at, deadline) - now, 0.001))
            self._busy = True
        try:
            yield
        finally:
            self._release(foreground=False)

    def _release(self, *, foreground: bool) -> None:
        with self._condition:
            self._busy = False
            if foreground:
                self._last_foreground = time.monotonic()
            self._condition.notify_all()


def writer_turn(state: Switchboard, *, background: bool = False) -> Any:
    """Return a context in which this thread is the process's only webhook writer on SQLite.

    PostgreSQL needs no turn: it writes concurrently and locks only the rows involved.
    """
    if state.engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    turn = state.__dict__.setdefault(_TURN_KEY, WriterTurn())
    return turn.background() if background else turn.foreground()


class WebhookWorker:
    """Ingests pending webhook payloads until stopped: woken by a stored webhook, else polling."""

    def __init__(self, state: Switchboard, stop: threading.Event, *, batch_size: int | None = None):
        self.state = state
        self.stop = stop
        sqlite = state.engine.dialect.name == "sqlite"
        if batch_size is None:
            batch_size = SQLITE_BATCH_SIZE if sqlite else BATCH_SIZE
        self.batch_size = batch_size
        self.status_batch_size = SQLITE_STATUS_BATCH_SIZE if sqlite else STATUS_BATCH_SIZE
        # On SQLite the views and the worker take turns (WriterTurn), which gathers bursts.
        self.gather_seconds = 0.0 if sqlite else GATHER_SECONDS
        self.wakeup = webhook_wakeup(state)
        # Set while the PostgreSQL listening connection is up.
        self.listening = threading.Event()

    def run(self) -> None:
        log.info("webhook worker started")
        if self.state.engine.dialect.name == "postgresql":
            threading.Thread(target=self.listen, name="webhook-listener", daemon=True).start()
        retry = RETRY_SECONDS
        pruned_at = 0.0
        while not self.stop.is_set():
            # Cleared before the queue is read, so a webhook stored meanwhile wakes the next round.
            self.wakeup.clear()
            try:
                self.ingest_all()
                if time.monotonic() - pruned_at >= PRUNE_SECONDS:
                    self.prune_applied_statuses()
                    pruned_at = time.monotonic()
                retry = RETRY_SECONDS
            except (OperationalError, InterfaceError) as error:
                log.warning("webhook worker: database error, retrying in %.0f s: %s", retry, error)
                self.stop.wait(retry)
                retry = min(retry * 2, RETRY_SECONDS_MAX)
                continue
            except Exception:
                log.exception("webhook worker: ingest round failed; retrying in %.0f s", retry)
                self.stop.wait(retry)
                retry = min(retry * 2, RETRY_SECONDS_MAX)
                continue
            if self.wakeup.wait(POLL_SECONDS) and self.gather_seconds:
                # Let a burst gather into one batch: a round per webhook would spend the CPU
                # that the web processes need to acknowledge the next ones.
                self.stop.wait(self.gather_seconds)
        log.info("webhook worker stopped")

    def listen(self) -> None:
        """Wake the worker on each payload that any process queues, until stopped (PostgreSQL)."""
        # Imported here, because psycopg comes only with the postgres extra and SQLite never listens.
        import psycopg

        url = self.state.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        retry = RETRY_SECONDS
        while not self.stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {WAKEUP_CHANNEL}")
                    log.info("webhook worker listening for queued webhooks")
                    # Whatever was queued before the LISTEN took effect is found by this round.
                    self.wakeup.set()
                    self.listening.set()
                    retry = RETRY_SECONDS
                    while not self.stop.is_set():
                        for _ in connection.notifies(timeout=LISTEN_SECONDS):
                            self.wakeup.set()
            except psycopg.Error as error:
                self.listening.clear()
                log.warning("webhook worker: listening failed, polling until it listens again in %.0f s: %s",
                            retry, error)
                self.stop.wait(retry)
                retry = min(retry * 2, RETRY_SECONDS_MAX)

    def ingest_all(self) -> int:
        """Ingest messages and apply status callbacks, a batch of each in turn, until none is
        pending or the worker stops. Returns the messages stored."""
        stored = 0
        while not self.stop.is_set():
            batch = self.ingest_batch()
            stored += len(batch.message_ids)
            statuses = self.apply_status_batch()
            if batch.taken < self.batch_size and statuses.taken < self.status_batch_size:
                break
        return stored

    def ingest_batch(self) -> QueueBatch:
        """Ingest one batch of pending payloads in one transaction. Returns what it did."""
        started = time.perf_counter()
        with self.state.session_factory() as session:
            with writer_turn(self.state, background=True):
                batch = ingest_pending(session, parse_raw, self.batch_size, formats=MESSAGE_FORMATS)
        if batch.media:
            self.state.media_wakeup.set()  # downloads run in the media fetcher, after the commit
        for payload_id, error in batch.failures:
            log.warning("webhook payload %s kept as failed: %s", payload_id, error)
        if batch.taken:
            log.debug(
                "webhook worker: %s payloads, %s stored, %s duplicates, %s failed in %.0f ms",
                batch.taken, len(batch.message_ids), batch.duplicates, len(batch.failures),
                (time.perf_counter() - started) * 1000,
            )
        return batch

    def prune_applied_statuses(self) -> int:
        """Delete the applied status callbacks past their retention, a batch per transaction. Returns how many."""
        deleted = 0
        while not self.stop.is_set():
            with self.state.session_factory() as session:
                with writer_turn(self.state, background=True):
                    batch = prune_applied_statuses(session, STATUS_RAW_FORMAT, PRUNE_BATCH_SIZE)
            deleted += batch
            if batch < PRUNE_BATCH_SIZE:
                break
        if deleted:
            log.info("webhook worker: deleted %s applied status callbacks older than a day", deleted)
        return deleted

    def apply_status_batch(self) -> StatusBatch:
        """Apply one batch of pending status callbacks in one transaction. Returns what it did."""
        started = time.perf_counter()
        with self.state.session_factory() as session:
            with writer_turn(self.state, background=True):
                batch = apply_pending_statuses(session, parse_status_raw, STATUS_RAW_FORMAT, self.status_batch_size)
        for payload_id, error in batch.failures:
            log.warning("status callback payload %s kept as failed: %s", payload_id, error)
        if batch.taken:
            log.debug(
                "webhook worker: %s status callbacks, %s changed a message, %s failed in %.0f ms",
                batch.taken, batch.changed, len(batch.failures), (time.perf_counter() - started) * 1000,
            )
        return batch
