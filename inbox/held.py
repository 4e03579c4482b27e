"""Held WhatsApp replies: free text that waits for the customer to open the window again.

A free-text reply written after the 24-hour window closed (see ``inbox.window``) is stored
with its outbox item ``held`` instead of ``pending``, unless the workspace setting rejects it.
So is a reply that the provider rejected because the window closed before it went out
(Twilio's error 63016, Meta's 131047). The transitions of a held item:

    held -> pending     the customer writes on the channel (``release_held_replies``)
    held -> cancelled   an agent withdraws the reply (``cancel_held_reply``)

Each one is a compare-and-set on the item's status, so of a release and a cancel that race
exactly one happens. A released item is then claimed by a single dispatcher like any other
(see ``inbox.outbox``), so it goes out once however many dispatchers run.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from channels.types import DeliveryState
from inbox.errors import Conflict, NotFound
from inbox.events import record_event
from inbox.models import Conversation, HoldReason, Message, OutboxItem, OutboxStatus, utcnow
from inbox.serialize import message_to_dict
from inbox.fallback import send_by_email_automatically
from inbox.send_failures import record_send_failure
from inbox.window import is_window_error, last_inbound_at, lock_window
from inbox.workflow import reopen_for_failed_reply
from inbox.workspace import OutsideWindow, workspace_settings

log = logging.getLogger(__name__)

WINDOW_CLOSED_NOTE = (
    "WhatsApp rejected this free-text reply because the customer's last message is more than "
    "24 hours old."
)


def hold_item(item: OutboxItem, reason: HoldReason, now: datetime) -> None:
    """Put ``item`` and its message in the held state. The caller records the event."""
    item.status = OutboxStatus.HELD.value
    item.hold_reason = reason.value
    item.held_at = now
    item.next_attempt_at = now
    item.locked_until = None
    item.in_flight_since = None
    message = item.message
    # The message has not reached the provider in a form that counts. Without its old
    # provider id, a repeated callback about the rejected send can no longer change it.
    # NOTE: such a callback is kept as an early report that no send will ever claim.
    message.delivery_status = None
    message.provider_message_id = None


def release_held_replies(session: Session, contact_id: int, channel_id: int, now: datetime) -> int:
    """Queue every held reply to the contact on the channel for sending at once.

    Runs inside the caller's transaction, typically the ingestion of the customer's new
    message, and records a ``message.updated`` event per reply. Returns how many it queued.
    """
    item_ids = session.scalars(
        select(OutboxItem.id)
        .join(Message, Message.id == OutboxItem.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.contact_id == contact_id,
            Conversation.channel_id == channel_id,
            OutboxItem.status == OutboxStatus.HELD.value,
        )
        .order_by(OutboxItem.id)
    ).all()

    released = 0
    for item_id in item_ids:
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, OutboxItem.status == OutboxStatus.HELD.value)
            .values(
                status=OutboxStatus.PENDING.value, next_attempt_at=now, hold_reason=None, held_at=None
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            continue  # cancelled meanwhile
        item = session.get(OutboxItem, item_id, populate_existing=True)
        assert item is not None
        message = item.message
        message.delivery_status = DeliveryState.QUEUED.value
        message.delivery_error = None
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
        released += 1
    if released:
        log.info("released %s held replies to contact %s on channel %s", released, contact_id, channel_id)
    return released


def cancel_held_reply(session: Session, message_id: int) -> Message:
    """Withdraw a held reply, so that it is never sent. The caller commits.

    Returns the message. Raises ``NotFound`` for an unknown message and ``Conflict`` (code
    ``not_held``) when the reply is not held, for example because the customer wrote and it
    went out.
    """
    message = session.get(Message, message_id)
    if message is None or message.outbox_item is None:
        raise NotFound(f"Reply {message_id} not found.", field="message_id")
    result = session.execute(
        update(OutboxItem)
        .where(OutboxItem.message_id == message_id, OutboxItem.status == OutboxStatus.HELD.value)
        .values(status=OutboxStatus.CANCELLED.value, hold_reason=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.refresh(message.outbox_item)
    if result.rowcount != 1:
        raise Conflict(
            f"Reply {message_id} is not held, so it cannot be cancelled "
            f"(its send is {message.outbox_item.status}).",
            field="message_id",
            code="not_held",
        )
    session.flush()
    record_event(session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id)
    log.info("held reply %s cancelled", message_id)
    return message


def apply_window_error(session: Session, item: OutboxItem, error: str, now: datetime) -> OutboxStatus:
    """Decide what a send rejected for the closed window becomes, in the caller's transaction.

    When the customer wrote after the failed attempt started, the window is open again and
    the item is queued for another attempt. Otherwise it is held until the customer writes,
    or marked failed with advice to send a template when the workspace rejects free text
    outside the window. Returns the item's new status. The caller has ended the attempt's
    claim and records the event.
    """
    message = item.message
    conversation = message.conversation
    attempt_started = item.in_flight_since or message.sent_at or message.created_at
    # A customer's message stored concurrently either commits first, and counts below, or
    # waits for this transaction and then releases the held item.
    lock_window(session, conversation.contact_id)
    latest = last_inbound_at(session, conversation.contact_id, conversation.channel_id)
    if latest is not None and latest > attempt_started:
        item.status = OutboxStatus.PENDING.value
        item.next_attempt_at = now
        message.delivery_status = DeliveryState.QUEUED.value
        message.delivery_error = None
        message.provider_message_id = None
        log.info("outbox item %s hit the closed window, but the customer wrote since: retrying", item.id)
    elif workspace_settings(session).outside_window is OutsideWindow.HOLD:
        hold_item(item, HoldReason.WINDOW_ERROR, now)
        message.delivery_error = f"{WINDOW_CLOSED_NOTE} {error}"[:2000]
        log.info("outbox item %s held until the customer writes: %s", item.id, error)
    else:
        item.status = OutboxStatus.FAILED.value
        message.delivery_status = DeliveryState.FAILED.value
        message.delivery_error = f"{WINDOW_CLOSED_NOTE} Send an approved template instead. {error}"[:2000]
        log.info("outbox item %s failed outside the window: %s", item.id, error)
    return OutboxStatus(item.status)


def react_to_failed_delivery(session: Session, message: Message, error_code: str | None) -> None:
    """Act on a provider report that a sent reply failed, in the caller's transaction.

    Twilio (error 63016) and Meta (error 131047) can report a free-text WhatsApp message
    outside the 24-hour window after accepting the send, so such a reply gets the same treatment as a send rejected
    at once (``apply_window_error``). Any other failure is resent by email when the
    workspace's email fallback is automatic (``inbox.fallback``). A reply that neither holds
    nor resends opens its conversation again (``inbox.workflow.reopen_for_failed_reply``).
    Every such report counts as a send failure of the channel. The caller records the
    message's event.
    """
    record_send_failure(
        session, message.channel_id, message.delivery_error or "The provider reported the message failed.",
        error_code=error_code, message_id=message.id,
    )
    item = message.outbox_item
    if message.channel.kind != "whatsapp" or item is None:
        reopen_for_failed_reply(session, message)
        return
    if is_window_error(error_code) and item.status == OutboxStatus.SENT.value:
        error = message.delivery_error or f"error {error_code}"
        if apply_window_error(session, item, error, utcnow()) is OutboxStatus.FAILED:
            reopen_for_failed_reply(session, message)
        session.flush()
        return
    if send_by_email_automatically(session, message) is None:
        reopen_for_failed_reply(session, message)
