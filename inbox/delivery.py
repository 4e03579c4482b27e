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

from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from channels.delivery import FINAL_STATES, STATUS_ORDER, advances
from channels.types import DeliveryState, DeliveryStatus
from inbox.events import record_event
from inbox.held import react_to_failed_delivery
from inbox.models import EarlyDeliveryReport, Message, MessagePart
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


def record_delivery_status(session: Session, channel_id: int, status: DeliveryStatus) -> bool:
    """Apply a provider's delivery report to the message it is about, and commit.

    Late and duplicate reports never move a message back (``read`` then ``sent`` stays
    ``read``). A report for a provider id that no message has yet is stored until the
    dispatcher records that send. Returns True when the message changed, and False when
    the report was stale or was stored for later.
    """
    provider_id = status.provider_message_id
    if len(provider_id.encode()) > _MAX_PROVIDER_ID_BYTES or "\x00" in provider_id:
        log.warning("status %s for an invalid provider message id ignored", status.state.value)
        return False

    with session.begin():
        lock_provider_message(session, channel_id, provider_id)
        part = session.scalar(
            select(MessagePart)
            .where(MessagePart.channel_id == channel_id, MessagePart.provider_message_id == provider_id)
            .with_for_update()
        )
        if part is not None:
            return _apply_part_report(session, part, status)
        message = session.scalar(
            select(Message)
            .where(Message.channel_id == channel_id, Message.provider_message_id == provider_id)
            .with_for_update()
        )
        if message is None:
            _store_early_report(session, channel_id, status)
            log.info(
                "status %s for %s on channel %s arrived before its send was recorded, so it is stored",
                status.state.value, provider_id, channel_id,
            )
            return False
        if not apply_report(message, status.state, status.error_code, status.error_message):
            return False
        session.flush()
        if status.state in FINAL_STATES:
            react_to_failed_delivery(session, message, status.error_code)
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
        return True


def _apply_part_report(session: Session, part: MessagePart, status: DeliveryStatus) -> bool:
    """Apply a report to one part and refresh its message's combined status."""
    if not _advance_part(part, status.state, status.error_code, status.error_message):
        return False
    message = part.message
    item = message.outbox_item
    was_final = message.delivery_status and DeliveryState(message.delivery_status) in FINAL_STATES
    refresh_parts_status(message, more_parts=item is not None and item.status == "pending")
    session.flush()
    if not was_final and DeliveryState(message.delivery_status) in FINAL_STATES:
        # NOTE: a reply held for the 24-hour window resumes after its accepted parts, and here
        # they all were, so a part's window error gets the treatment of any other failure.
        code = None if is_window_error(status.error_code) else status.error_code
        react_to_failed_delivery(session, message, code)
    record_event(
        session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
    )
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
    digest = zlib.crc32(f"{channel_id}:{provider_message_id}".encode())
    # pg_advisory_xact_lock(int, int) takes signed 32-bit keys.
    key = digest - 2**32 if digest >= 2**31 else digest
    session.execute(
        text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
        {"namespace": _REPORT_LOCK_NAMESPACE, "key": key},
    )


def _store_early_report(session: Session, channel_id: int, status: DeliveryStatus) -> None:
    """Insert the report unless the same (channel, id, state) is already stored."""
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
