"""The webhook queue: Twilio webhooks acknowledged once stored, ingested afterwards in batches.

A webhook whose signature checks out is stored as a ``pending`` raw payload, and only
acknowledged once that is committed (``queue_payload``). A web process inserts the payloads
of concurrent webhooks with one statement (``queue_payloads``, through its group commit).
The webhook worker (``gateway.webhook_worker``) takes pending payloads in id order and
ingests a batch of them per transaction (``ingest_pending``). ``ingest_batch`` marks each
stored payload's pending row processed, in that same transaction, so the message refers to
the row its webhook was acknowledged with, and:

- a crash before the commit leaves the payloads pending, and the next run ingests them;
- a crash after it leaves nothing pending, so nothing is ingested twice;
- a payload that fails to parse or to store stays, marked ``failed`` with its error, where
  admins see failed payloads, and the rest of its batch commits.

A replay is a no-op through the unique (channel, digest) key: the same bytes insert nothing
while they are pending or processed. A replay of a payload that failed queues it again, as
the webhook path always treated a retry of a failed payload. A replay with other bytes but
the same ``MessageSid`` is queued, and ``ingest_batch`` finds the message and drops it.

Delivery-status callbacks wait in the same queue under their own format, and the worker
applies a batch of them per transaction (``apply_pending_statuses``) through the delivery
state machine (``inbox.delivery.apply_delivery_statuses``), so a late or repeated callback
never moves a message back. An applied callback's row is kept as ``processed`` for
``APPLIED_STATUS_RETENTION``, so a replay in that time is a no-op at the door: nothing is
queued and the worker does nothing. The webhook worker then deletes it
(``prune_applied_statuses``). A replay after that is applied again and changes nothing.

On PostgreSQL several workers can share the queue: each claims its batch with ``FOR UPDATE
SKIP LOCKED``. On SQLite every transaction holds the database's write lock, which does the
same.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, delete, func, literal_column, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from channels.errors import ParseError
from channels.types import DeliveryStatus, InboundMessage
from inbox.bulk import one_of
from inbox.delivery import apply_delivery_statuses
from inbox.ingest import ingest_batch, payload_digest
from inbox.models import PayloadStatus, RawPayload, utcnow

log = logging.getLogger(__name__)

# Written as a literal, not a bound parameter, so that SQLite's planner can match the
# partial index ``ix_raw_payloads_pending``, whose condition is this same text.
_IS_PENDING = RawPayload.status == literal_column(f"'{PayloadStatus.PENDING.value}'")
# Likewise for the partial index ``ix_raw_payloads_applied_statuses``.
_IS_PROCESSED = RawPayload.status == literal_column(f"'{PayloadStatus.PROCESSED.value}'")
_MAX_ERROR_LENGTH = 2000
# How long an applied status callback's row is kept, so that a replay of it is a no-op.
APPLIED_STATUS_RETENTION = timedelta(days=1)
# The PostgreSQL notification channel on which queued payloads wake the webhook workers.
WAKEUP_CHANNEL = "switchboard_webhooks"

# Turns a stored payload (its format and bytes) into the message to ingest; raises on a
# payload that cannot be parsed.
Parser = Callable[[str, bytes], InboundMessage]
# Turns a stored status callback's bytes into its report; raises on one that cannot be parsed.
StatusParser = Callable[[bytes], DeliveryStatus]


@dataclass
class QueueBatch:
    """The outcome of one ``ingest_pending`` call."""

    # Pending payloads taken from the queue.
    taken: int = 0
    # Ids of the messages stored.
    message_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    # (payload id, error) of each payload kept as failed.
    failures: list[tuple[int, str]] = field(default_factory=list)
    # Whether a stored message has media to download.
    media: bool = False


@dataclass
class StatusBatch:
    """The outcome of one ``apply_pending_statuses`` call."""

    # Pending status callbacks taken from the queue.
    taken: int = 0
    # How many of them changed their message.
    changed: int = 0
    # (payload id, error) of each callback kept as failed.
    failures: list[tuple[int, str]] = field(default_factory=list)


def queue_payload(session: Session, channel_id: int, raw: bytes, raw_format: str) -> bool:
    """Store ``raw`` as a pending payload of the channel, and commit.

    The session must have no transaction in progress. Returns True when the payload was
    queued, and False when the same bytes are already pending or processed (a replay).
    A payload with the same bytes that failed before is queued again.
    """
    with session.begin():
        return queue_payloads(session.connection(), [(channel_id, raw, raw_format)])[0]


def queue_payloads(connection: Connection, payloads: Sequence[tuple[int, bytes, str]]) -> list[bool]:
    """Insert each (channel id, raw bytes, format) as a pending payload, in one statement.

    The statement runs in the connection's transaction, and the caller commits. Returns a
    flag per payload, in the order of ``payloads``: True when it was queued, False for a
    replay. A replay is a payload whose bytes the channel has pending or processed already,
    or that comes earlier in ``payloads``. A payload whose same bytes failed before is
    queued again.
    """
    received_at = utcnow()
    keys: list[tuple[int, str]] = []
    first_index: dict[tuple[int, str], int] = {}
    rows: list[dict[str, Any]] = []
    for index, (channel_id, raw, raw_format) in enumerate(payloads):
        key = (channel_id, payload_digest(raw))
        keys.append(key)
        if key in first_index:
            # One statement cannot insert a row and then update it as a conflict.
            continue
        first_index[key] = index
        rows.append({
            "channel_id": channel_id, "format": raw_format, "digest": key[1], "body": raw, "received_at": received_at,
        })
    statement = _queue_statement(connection.dialect.name)
    inserted = {(row.channel_id, row.digest) for row in connection.execute(statement, rows)}
    return [key in inserted and first_index[key] == index for index, key in enumerate(keys)]


@functools.cache
def _queue_statement(dialect: str) -> Insert:
    """Return the insert of pending payloads, built once: it runs for every webhook."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = RawPayload.__table__
    pending = PayloadStatus.PENDING.value
    statement = insert(table).values(
        channel_id=bindparam("channel_id"),
        format=bindparam("format"),
        digest=bindparam("digest"),
        body=bindparam("body"),
        status=pending,
        received_at=bindparam("received_at"),
    )
    # The conflict clause binds no parameters, because SQLAlchemy sends a statement with
    # such parameters one row at a time instead of as one multi-row INSERT.
    return statement.on_conflict_do_update(
        index_elements=[table.c.channel_id, table.c.digest],
        set_={"status": statement.excluded.status, "error": null(), "received_at": statement.excluded.received_at},
        where=table.c.status == literal_column(f"'{PayloadStatus.FAILED.value}'"),
    ).returning(table.c.channel_id, table.c.digest)


def notify_workers(connection: Connection) -> None:
    """Wake the webhook workers of every process that listens on ``WAKEUP_CHANNEL``.

    ``connection`` must be in autocommit mode, because PostgreSQL delivers a notification
    when its transaction commits. Call it after the payload's own commit: PostgreSQL
    serializes the commits of transactions that notify, so a notification in the
    transaction that inserts would make every webhook wait for the commits before it.
    Does nothing on other databases.
    """
    if connection.dialect.name != "postgresql":
        return
    connection.execute(select(func.pg_notify(WAKEUP_CHANNEL, "")))


def count_pending(session: Session) -> int:
    """Return how many payloads wait for the webhook worker."""
    return session.scalar(select(func.count()).select_from(RawPayload).where(_IS_PENDING)) or 0


def ingest_pending(session: Session, parse: Parser, limit: int, *, formats: Collection[str]) -> QueueBatch:
    """Ingest up to ``limit`` pending payloads of ``formats``, oldest first, in one transaction, and commit.

    The session must have no transaction in progress. A payload that ``parse`` rejects, or
    that ``ingest_batch`` cannot store, is marked failed with the error, and the others
    still commit. Database errors propagate and roll the whole batch back, leaving every
    payload of it pending. Returns what the batch did.
    """
    batch = QueueBatch()
    with session.begin():
        rows = _claim(session, formats, limit)
        batch.taken = len(rows)

        by_channel: dict[int, list[tuple[int, InboundMessage]]] = {}
        for payload_id, channel_id, raw_format, body, received_at in rows:
            try:
                inbound = parse(raw_format, body)
            except Exception as error:  # noqa: BLE001 - one bad payload must not stop the queue
                batch.failures.append((payload_id, _parse_error(error)))
                continue
            if inbound.sent_at is None:
                # Twilio's webhook carries no time, and the worker may store it long after it
                # arrived: the arrival is the closest known time of the customer's message.
                inbound = dataclasses.replace(inbound, sent_at=received_at)
            by_channel.setdefault(channel_id, []).append((payload_id, inbound))

        done: list[int] = []
        for channel_id, items in by_channel.items():
            results = ingest_batch(session, channel_id, [inbound for _, inbound in items])
            for (payload_id, inbound), result in zip(items, results):
                if result.error:
                    batch.failures.append((payload_id, result.error))
                    continue
                done.append(payload_id)
                if result.duplicate:
                    batch.duplicates += 1
                elif result.message_id is not None:
                    batch.message_ids.append(result.message_id)
                    batch.media = batch.media or bool(inbound.media)

        _finish(session, done, batch.failures)
    return batch


def apply_pending_statuses(session: Session, parse: StatusParser, status_format: str, limit: int) -> StatusBatch:
    """Apply up to ``limit`` pending status callbacks, oldest first, in one transaction, and commit.

    The session must have no transaction in progress. A callback that ``parse`` rejects is
    marked failed with the error. The applied ones are marked processed. Database errors propagate
    and roll the whole batch back, leaving every callback of it pending. Returns what the
    batch did.
    """
    batch = StatusBatch()
    with session.begin():
        rows = _claim(session, [status_format], limit)
        batch.taken = len(rows)
        parsed: list[int] = []
        reports: list[tuple[int, DeliveryStatus]] = []
        for payload_id, channel_id, _, body, _ in rows:
            try:
                reports.append((channel_id, parse(body)))
            except Exception as error:  # noqa: BLE001 - one bad callback must not stop the queue
                batch.failures.append((payload_id, _parse_error(error)))
                continue
            parsed.append(payload_id)
        batch.changed = sum(apply_delivery_statuses(session, reports))
        _finish(session, parsed, batch.failures, keep_done=True)
    return batch


def prune_applied_statuses(session: Session, status_format: str, limit: int = 5000) -> int:
    """Delete up to ``limit`` applied status callbacks older than ``APPLIED_STATUS_RETENTION``, and commit.

    The session must have no transaction in progress. Returns how many were deleted.
    """
    cutoff = utcnow() - APPLIED_STATUS_RETENTION
    with session.begin():
        expired = (
            select(RawPayload.id)
            .where(_IS_PROCESSED, RawPayload.format == status_format, RawPayload.received_at < cutoff)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = session.execute(
            delete(RawPayload).where(RawPayload.id.in_(expired)).execution_options(synchronize_session=False)
        )
    return result.rowcount


def _claim(session: Session, formats: Collection[str], limit: int) -> Sequence[Any]:
    """Lock and return up to ``limit`` pending payloads of ``formats`` (id, channel id,
    format, body, received time), oldest first, skipping those another worker has claimed."""
    return session.execute(
        select(RawPayload.id, RawPayload.channel_id, RawPayload.format, RawPayload.body, RawPayload.received_at)
        .where(_IS_PENDING, RawPayload.format.in_(formats))
        .order_by(RawPayload.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def _finish(
    session: Session, done: Sequence[int], failures: Sequence[tuple[int, str]], *, keep_done: bool = False
) -> None:
    """Drop, or with ``keep_done`` mark processed, what is left pending of the done payloads,
    and mark the failed ones."""
    if done and keep_done:
        session.execute(
            update(RawPayload)
            .where(one_of(session, RawPayload.id, done), _IS_PENDING)
            .values(status=PayloadStatus.PROCESSED.value)
            .execution_options(synchronize_session=False)
        )
    elif done:
        # ingest_batch marked each stored payload's row processed already, so a row still
        # pending is a duplicate's, whose message is stored, and it is deleted.
        session.execute(
            delete(RawPayload).where(one_of(session, RawPayload.id, done), _IS_PENDING).execution_options(synchronize_session=False)
        )
    for payload_id, error in failures:
        session.execute(
            update(RawPayload)
            .where(RawPayload.id == payload_id)
            .values(status=PayloadStatus.FAILED.value, error=error[:_MAX_ERROR_LENGTH])
            .execution_options(synchronize_session=False)
        )


def _parse_error(error: Exception) -> str:
    if isinstance(error, ParseError):
        return str(error)
    return f"parsing failed: {type(error).__name__}: {error}"
