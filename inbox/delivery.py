"""Delivery reports: provider status callbacks applied to the messages we sent."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.delivery import advances
from channels.types import DeliveryState, DeliveryStatus
from inbox.events import record_event
from inbox.models import Message
from inbox.serialize import message_to_dict

log = logging.getLogger(__name__)


def record_delivery_status(session: Session, channel_id: int, status: DeliveryStatus) -> bool:
    """Apply a provider's delivery report to the message it is about, and commit.

    Late and duplicate reports never move a message back (``read`` then ``sent`` stays
    ``read``). Returns True when the message changed, False when the report was stale or
    names a message we do not know.
    """
    with session.begin():
        message = session.scalar(
            select(Message)
            .where(
                Message.channel_id == channel_id,
                Message.provider_message_id == status.provider_message_id,
            )
            .with_for_update()
        )
        if message is None:
            log.info("status %s for unknown message %s ignored", status.state.value, status.provider_message_id)
            return False
        current = DeliveryState(message.delivery_status) if message.delivery_status else None
        if not advances(current, status.state):
            return False
        message.delivery_status = status.state.value
        if status.state in (DeliveryState.FAILED, DeliveryState.UNDELIVERED):
            reason = status.error_message or "The provider reported the message as not delivered."
            message.delivery_error = f"{reason} (error {status.error_code})" if status.error_code else reason
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
        return True
