"""The transactional outbox: which queued sends are due, and what their outcome does.

Item states: ``pending`` (waiting for its ``next_attempt_at``) → ``sent``, or → ``failed``
after a permanent error or ``MAX_ATTEMPTS`` transient ones. A dispatcher claims a due item
by setting a lease (``locked_until``) with a compare-and-set update, so two dispatchers never
send the same item at once. When a dispatcher dies mid-send, its lease expires and the item
is tried again.

NOTE: delivery is at least once. A dispatcher that dies after the provider accepted a send
but before ``mark_sent`` committed leaves the item to be sent again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from channels.delivery import advances
from channels.types import Address, AddressKind, DeliveryState, OutboundMessage, SendResult
from inbox.events import record_event
from inbox.models import Channel, Message, OutboxItem, OutboxStatus, utcnow
from inbox.serialize import contact_address, message_to_dict

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=30)
LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class PendingSend:
    """A claimed outbox item with everything a channel sender needs."""

    item_id: int
    message_id: int
    channel_id: int
    channel_kind: str
    channel_address: str
    channel_settings: dict[str, Any]
    outbound: OutboundMessage
    attempt: int


def backoff_delay(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Return the wait before retry number ``attempt`` (1-based): exponential, capped, jittered."""
    exponential = BACKOFF_BASE * (2 ** (attempt - 1))
    capped = min(exponential, BACKOFF_CAP)
    # Full jitter between half and all of the delay keeps retries of one outage apart.
    return capped * (0.5 + 0.5 * (rng or random).random())


def claim_due(session: Session, now: datetime | None = None, limit: int = 20) -> list[int]:
    """Lease up to ``limit`` due items to the caller and commit. Returns their ids."""
    now = now or utcnow()
    with session.begin():
        query = (
            select(OutboxItem.id)
            .join(Channel, Channel.id == OutboxItem.channel_id)
            .where(
                Channel.is_active.is_(True),
                OutboxItem.status == OutboxStatus.PENDING.value,
                OutboxItem.next_attempt_at <= now,
                or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until < now),
            )
            .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=OutboxItem)
        claimed = []
        for item_id in session.scalars(query).all():
            # Compare-and-set: only one dispatcher's update matches an unleased row.
            result = session.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.id == item_id,
                    or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until < now),
                )
                .values(locked_until=now + LEASE)
            )
            if result.rowcount == 1:
                claimed.append(item_id)
        return claimed


def load_pending_send(session: Session, item_id: int) -> PendingSend:
    """Build the neutral outbound message for a claimed item (read-only)."""
    with session.begin():
        item = session.get(OutboxItem, item_id)
        assert item is not None, f"outbox item {item_id} vanished"
        message = item.message
        conversation = message.conversation
        channel = item.channel
        address_kind = AddressKind.EMAIL if channel.kind == "email" else AddressKind.PHONE
        outbound = OutboundMessage(
            to=Address(address_kind, contact_address(conversation), conversation.contact.name),
            text=message.text,
            sender=Address(address_kind, channel.address, channel.name),
            subject=message.subject,
            message_id=message.rfc_message_id,
            in_reply_to=message.in_reply_to,
            references=list(message.references or []),
        )
        return PendingSend(
            item_id=item.id,
            message_id=message.id,
            channel_id=channel.id,
            channel_kind=channel.kind,
            channel_address=channel.address,
            channel_settings=dict(channel.settings or {}),
            outbound=outbound,
            attempt=item.attempts + 1,
        )


def mark_sent(session: Session, item_id: int, result: SendResult) -> None:
    """Record a successful send: the provider's id and initial status; commit."""
    with session.begin():
        item = session.get(OutboxItem, item_id)
        assert item is not None
        item.status = OutboxStatus.SENT.value
        item.attempts += 1
        item.locked_until = None
        item.last_error = None
        message = item.message
        message.provider_message_id = result.provider_message_id
        message.sent_at = utcnow()
        current = DeliveryState(message.delivery_status) if message.delivery_status else None
        if advances(current, result.status):
            message.delivery_status = result.status.value
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
    log.info("outbox item %s sent as %s", item_id, result.provider_message_id)


def mark_attempt_failed(
    session: Session, item_id: int, error: str, *, transient: bool, now: datetime | None = None
) -> bool:
    """Record a failed attempt and commit. Returns True when the item will be retried.

    A transient error schedules a retry with backoff until ``MAX_ATTEMPTS``. A permanent
    error, or the last attempt, marks the item and its message failed with ``error``, which
    the inbox shows on the message.
    """
    now = now or utcnow()
    with session.begin():
        item = session.get(OutboxItem, item_id)
        assert item is not None
        item.attempts += 1
        item.locked_until = None
        item.last_error = error[:2000]
        retry = transient and item.attempts < MAX_ATTEMPTS
        if retry:
            item.next_attempt_at = now + backoff_delay(item.attempts)
            session.flush()
            # The agent sees the retry and its reason while the reply waits.
            record_event(
                session, "message.updated", {"message": message_to_dict(item.message)},
                item.message.conversation_id,
            )
            log.warning(
                "outbox item %s attempt %s failed, retrying at %s: %s",
                item_id, item.attempts, item.next_attempt_at.isoformat(), error,
            )
            return True

        item.status = OutboxStatus.FAILED.value
        message: Message = item.message
        message.delivery_status = DeliveryState.FAILED.value
        message.delivery_error = error[:2000]
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
        log.error("outbox item %s failed after %s attempts: %s", item_id, item.attempts, error)
        return False
