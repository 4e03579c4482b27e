"""Delivery reports: provider status callbacks applied to the messages we sent.

A callback can arrive before the dispatcher has recorded the send it describes, for
example when Twilio posts ``sent`` while ``mark_sent`` still waits for the database. Such a
report is kept as an ``EarlyDeliveryReport`` and applied, through the same state machine,
when ``mark_sent`` stores the provider message id (``apply_early_reports``).

A reply sent as several provider messages has a ``MessagePart`` per provider message. A
report about a part moves that part through the same state machine, and the message then
shows the combined status of its parts (``refresh_parts_status``): the least advanced one,
or the failure of a part.

On PostgreSQL both paths take a transaction-level advisory lock on (channel, provider
message id) before they look at the other's rows, so a report stored just as the send is
recorded cannot be missed by both. On SQLite every transaction already holds the database's
write lock (``BEGIN IMMEDIATE``), which serializes them.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from channels.delivery import FINAL_STATES, STATUS_ORDER, advances
from channels.types import DeliveryState, DeliveryStatus
from inbox.bulk import one_of
from inbox.events import record_events
from inbox.held import react_to_failed_delivery
from inbox.models import Direction, EarlyDeliveryReport, Message, MessagePart, utcnow
from inbox.serialize import message_to_dict
from inbox.window import is_window_error

log = logging.getLogger(__name__)

# First key of the two-key advisory locks on (channel, provider message id). PostgreSQL keeps
# two-key locks apart from the one-key lock that inbox.events takes.
_REPORT_LOCK_NAMESPACE = 7316202
# The length of Message.provider_message_id, in UTF-8 bytes. A longer id cannot belong to a
# message we sent. Storing it as an early report would also fail, because an entry of the
# report's unique index (a PostgreSQL btree) can be at most 2,704 bytes long.
_MAX_PROVIDER_ID_BYTES = 998
# How long a report waits for its send to be recorded. Meta posts the statuses of every
# message sent from the app's numbers, also those of other tools, and those never match.
EARLY_REPORT_LIFETIME = timedelta(days=1)


def record_delivery_status(session: Session, channel_id: int, status: DeliveryStatus) -> bool:
    """Apply a provider's delivery report to the message it is about, and commit.

    Late and duplicate reports never move a message back (``read`` then ``sent`` stays
    ``read``). A report for a provider id that no message has yet is stored until the
    dispatcher records that send. Returns True when the message changed, and False when
    the report was stale or was stored for later.
    """
    with session.begin():
        return apply_delivery_statuses(session, [(channel_id, status)])[0]


def apply_delivery_statuses(session: Session, reports: Sequence[tuple[int, DeliveryStatus]]) -> list[bool]:
    """Apply delivery reports, each a (channel id, status), in the caller's transaction.

    Each report goes through the state machine as in ``record_delivery_status``, in the
    order given. Every message the reports are about is locked before any event is recorded:
    first the advisory locks on (channel, provider message id) in sorted order, then the part
    and message rows in id order. This order keeps two batches from deadlocking, and a batch
    and the outbox dispatcher too, which takes one message's locks and then the event lock. A message
    that changed gets one ``message.updated`` event with its final state, after all reports.
    Returns for each report whether it changed its message.
    """
    results = [False] * len(reports)
    valid = [
        (index, channel_id, status) for index, (channel_id, status) in enumerate(reports)
        if _is_valid_provider_id(status)
    ]
    keys = sorted({(channel_id, status.provider_message_id) for _, channel_id, status in valid})
    _lock_provider_messages(session, keys)
    parts = _lock_parts(session, keys)
    messages = _lock_messages(session, [key for key in keys if key not in parts])

    changed: dict[int, Message] = {}
    for index, channel_id, status in valid:
        key = (channel_id, status.provider_message_id)
        part = parts.get(key)
        message = part.message if part is not None else messages.get(key)
        if message is None:
            _store_early_report(session, channel_id, status)
            log.info(
                "status %s for %s on channel %s arrived before its send was recorded, so it is stored",
                status.state.value, status.provider_message_id, channel_id,
            )
            continue
        if part is not None:
            results[index] = _apply_part_report(session, part, status)
        else:
            results[index] = _apply_message_report(session, message, status)
        if results[index]:
            changed[message.id] = message

    if changed:
        session.flush()
        _load_for_events(session, list(changed))
        record_events(session, [
            ("message.updated", {"message": message_to_dict(message)}, message.conversation_id)
            for _, message in sorted(changed.items())
        ])
    return results


def _load_for_events(session: Session, message_ids: Sequence[int]) -> None:
    """Load what ``message_to_dict`` reads of the changed messages, after their changes are flushed.

    Loading it with the locked messages made the flush walk every loaded relationship of
    every message, about a third of the webhook worker's time in a status-callback storm,
    and loaded it for messages that a report did not change.
    """
    session.scalars(
        select(Message)
        .where(one_of(session, Message.id, message_ids))
        # The changes are flushed, so reading the rows again loses nothing.
        .execution_options(populate_existing=True)
        .options(
            selectinload(Message.channel), selectinload(Message.contact), selectinload(Message.agent),
            selectinload(Message.outbox_item), selectinload(Message.attachments), selectinload(Message.parts),
            selectinload(Message.email_fallback), selectinload(Message.reply_to),
        )
    ).all()


def _is_valid_provider_id(status: DeliveryStatus) -> bool:
    provider_id = status.provider_message_id
    if len(provider_id.encode()) > _MAX_PROVIDER_ID_BYTES or "\x00" in provider_id:
        log.warning("status %s for an invalid provider message id ignored", status.state.value)
        return False
    return True


def _by_channel(keys: Sequence[tuple[int, str]]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for channel_id, provider_id in keys:
        grouped.setdefault(channel_id, []).append(provider_id)
    return grouped


def _lock_parts(session: Session, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], MessagePart]:
    """Lock and return the message parts with the (channel, provider message id) ``keys``."""
    if not keys:
        return {}
    query = (
        select(MessagePart)
        .where(or_(*(
            and_(MessagePart.channel_id == channel_id, one_of(session, MessagePart.provider_message_id, provider_ids))
            for channel_id, provider_ids in _by_channel(keys).items()
        )))
        .order_by(MessagePart.id)
        .with_for_update()
    )
    return {(part.channel_id, part.provider_message_id): part for part in session.scalars(query)}


def _lock_messages(session: Session, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Message]:
    """Lock and return the messages we sent with the (channel, provider message id) ``keys``.

    A customer's message has a provider id too, but no delivery report can be about it: one
    that names it waits as an early report, and changes neither its status nor the channel's
    send failures.
    """
    if not keys:
        return {}
    query = (
        select(Message)
        .where(Message.direction == Direction.OUTBOUND.value)
        .where(or_(*(
            and_(Message.channel_id == channel_id, one_of(session, Message.provider_message_id, provider_ids))
            for channel_id, provider_ids in _by_channel(keys).items()
        )))
        .order_by(Message.id)
        .with_for_update()
    )
    return {(message.channel_id, message.provider_message_id): message for message in session.scalars(query)}


def _apply_message_report(session: Session, message: Message, status: DeliveryStatus) -> bool:
    """Apply a report to a message of one provider message. Returns whether it moved."""
    if not apply_report(message, status.state, status.error_code, status.error_message):
        return False
    if status.state in FINAL_STATES:
        session.flush()
        react_to_failed_delivery(session, message, status.error_code)
    return True


def _apply_part_report(session: Session, part: MessagePart, status: DeliveryStatus) -> bool:
    """Apply a report to one part and refresh its message's combined status."""
    if not _advance_part(part, status.state, status.error_code, status.error_message):
        return False
    message = part.message
    item = message.outbox_item
    was_final = message.delivery_status and DeliveryState(message.delivery_status) in FINAL_STATES
    refresh_parts_status(message, more_parts=item is not None and item.status == "pending")
    if not was_final and DeliveryState(message.delivery_status) in FINAL_STATES:
        session.flush()
        # NOTE: a reply held for the 24-hour window resumes after its accepted parts, and here
        # they all were, so a part's window error gets the treatment of any other failure.
        code = None if is_window_error(status.error_code) else status.error_code
        react_to_failed_delivery(session, message, code)
    return True


def _advance_part(
    part: MessagePart, state: DeliveryState, error_code: str | None, error_message: str | None
) -> bool:
    current = DeliveryState(part.delivery_status) if part.delivery_status else None
    if not advances(current, state):
        return False
    part.delivery_status = state.value
    if state in FINAL_STATES:
        part.delivery_error = _failure_reason(error_code, error_message)
    return True


def refresh_parts_status(message: Message, *, more_parts: bool) -> None:
    """Set a multi-part message's status from its parts.

    A failed or undelivered part makes the message so, with that part's reason. Otherwise
    the message has the least advanced status of its parts, and ``queued`` while
    ``more_parts`` are still to be sent. A message already failed (by the outbox, say,
    when a later part was rejected) stays failed.
    """
    current = DeliveryState(message.delivery_status) if message.delivery_status else None
    if current in FINAL_STATES:
        return
    parts = sorted(message.parts, key=lambda part: part.position)
    for part in parts:
        if part.delivery_status and DeliveryState(part.delivery_status) in FINAL_STATES:
            message.delivery_status = part.delivery_status
            message.delivery_error = f"Part {part.position + 1}: {part.delivery_error}"
            return
    states = [DeliveryState(part.delivery_status or DeliveryState.QUEUED.value) for part in parts]
    if more_parts or not states:
        states.append(DeliveryState.QUEUED)
    message.delivery_status = min(states, key=STATUS_ORDER.__getitem__).value


def apply_early_part_reports(session: Session, part: MessagePart) -> int:
    """Apply and delete the stored reports for ``part``'s provider id, oldest first.

    Runs inside the caller's transaction, which must hold ``lock_provider_message`` for
    this id. Returns how many reports changed the part.
    """
    reports = _early_reports(session, part.channel_id, part.provider_message_id)
    changed = sum(
        _advance_part(part, DeliveryState(report.state), report.error_code, report.error_message)
        for report in reports
    )
    _delete_reports(session, reports)
    return changed


def _early_reports(session: Session, channel_id: int, provider_message_id: str) -> list[EarlyDeliveryReport]:
    return list(
        session.scalars(
            select(EarlyDeliveryReport)
            .where(
                EarlyDeliveryReport.channel_id == channel_id,
                EarlyDeliveryReport.provider_message_id == provider_message_id,
            )
            .order_by(EarlyDeliveryReport.id)
        )
    )


def _delete_reports(session: Session, reports: list[EarlyDeliveryReport]) -> None:
    if reports:
        session.execute(
            delete(EarlyDeliveryReport).where(EarlyDeliveryReport.id.in_([report.id for report in reports]))
        )


def apply_early_reports(session: Session, message: Message) -> int:
    """Apply and delete the stored reports for ``message``'s provider id, oldest first.

    Runs inside the caller's transaction, which must already hold
    ``lock_provider_message`` for this message. Returns how many reports changed the
    message's status. The caller records the event and commits.
    """
    reports = _early_reports(session, message.channel_id, message.provider_message_id)
    changed = 0
    for report in reports:
        if apply_report(message, DeliveryState(report.state), report.error_code, report.error_message):
            changed += 1
    _delete_reports(session, reports)
    if reports:
        log.info(
            "applied %s of %s early status reports to message %s",
            changed, len(reports), message.id,
        )
    return changed


def apply_report(
    message: Message, state: DeliveryState, error_code: str | None, error_message: str | None
) -> bool:
    """Move ``message`` to ``state`` when the state machine allows it. Returns whether it moved."""
    current = DeliveryState(message.delivery_status) if message.delivery_status else None
    if not advances(current, state):
        return False
    message.delivery_status = state.value
    if state in FINAL_STATES:
        message.delivery_error = _failure_reason(error_code, error_message)
    return True


def _failure_reason(error_code: str | None, error_message: str | None) -> str:
    reason = error_message or "The provider reported the message as not delivered."
    return f"{reason} (error {error_code})" if error_code else reason


def lock_provider_message(session: Session, channel_id: int, provider_message_id: str) -> None:
    """Serialize, until commit, transactions about one provider message id (PostgreSQL only)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
        {"namespace": _REPORT_LOCK_NAMESPACE, "key": _lock_key(channel_id, provider_message_id)},
    )


def _lock_provider_messages(session: Session, keys: Sequence[tuple[int, str]]) -> None:
    """Take ``lock_provider_message`` for each (channel, provider message id) of ``keys``, in
    their order, with one statement."""
    if not keys or session.get_bind().dialect.name != "postgresql":
        return
    # NOTE: PostgreSQL calls the lock function as unnest returns the array's elements, in the
    # array's order. The statement has no ORDER BY, because a sort could run after the calls.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:namespace, key) FROM unnest(CAST(:keys AS integer[])) AS key"),
        {"namespace": _REPORT_LOCK_NAMESPACE, "keys": [_lock_key(*key) for key in keys]},
    )


def _lock_key(channel_id: int, provider_message_id: str) -> int:
    digest = zlib.crc32(f"{channel_id}:{provider_message_id}".encode())
    # pg_advisory_xact_lock(int, int) takes signed 32-bit keys.
    return digest - 2**32 if digest >= 2**31 else digest


def _store_early_report(session: Session, channel_id: int, status: DeliveryStatus) -> None:
    """Insert the report unless the same (channel, id, state) is already stored.

    Reports older than ``EARLY_REPORT_LIFETIME`` go first: a send is recorded seconds after the
    provider accepts it, so they describe sends that no dispatcher will ever record.
    """
    session.execute(
        delete(EarlyDeliveryReport).where(EarlyDeliveryReport.received_at < utcnow() - EARLY_REPORT_LIFETIME)
    )
    values = {
        "channel_id": channel_id,
        "provider_message_id": status.provider_message_id,
        "state": status.state.value,
        "error_code": _without_nul(status.error_code),
        "error_message": _without_nul(status.error_message),
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(EarlyDeliveryReport).values(**values).on_conflict_do_nothing())


def _without_nul(value: str | None) -> str | None:
    # PostgreSQL text columns reject NUL characters.
    return value.replace("\x00", "") if value is not None else None
