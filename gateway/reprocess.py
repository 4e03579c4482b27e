"""Re-processing of inbound payloads that failed to parse, for admins."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from channels.email.parse import parse_email
from channels.errors import ParseError
from channels.types import DeliveryStatus, InboundMessage
from channels.whatsapp import RAW_FORMAT, STATUS_RAW_FORMAT, parse_inbound, parse_status
from channels.whatsapp import meta
from inbox.errors import InvalidInput, NotFound
from inbox.ingest import ingest_message
from inbox.models import Conversation, Direction, Message, PayloadStatus, RawPayload

log = logging.getLogger(__name__)


# The stored formats of inbound messages, which ``parse_raw`` reads.
MESSAGE_FORMATS = ("rfc822", RAW_FORMAT, meta.RAW_FORMAT)


def parse_status_raw(body: bytes) -> DeliveryStatus:
    """Parse a stored Twilio status callback's form. Raises ``ParseError``."""
    return parse_status(dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))


def parse_raw(raw_format: str, body: bytes) -> InboundMessage:
    """Parse a stored raw payload by its format. Raises ``ParseError``."""
    if raw_format == "rfc822":
        return parse_email(body)
    if raw_format == RAW_FORMAT:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return parse_inbound(form, body)
    if raw_format == meta.RAW_FORMAT:
        return meta.parse_stored_message(body)
    raise ParseError(f"unknown payload format {raw_format!r}")


def newest_channel_name(session: Session, contact_id: int, tries: int = 5) -> str | None:
    """Return the display name that the contact's newest inbound message carried, or None.

    Reads it from the stored raw payloads, newest first, because the contact row keeps only
    the current name. Looks at up to ``tries`` messages, for a newest one without a name.
    """
    payload_ids = session.scalars(
        select(Message.raw_payload_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(RawPayload, RawPayload.id == Message.raw_payload_id)
        .where(
            Conversation.contact_id == contact_id,
            Message.direction == Direction.INBOUND.value,
            RawPayload.format.in_(MESSAGE_FORMATS),
        )
        .order_by(Message.id.desc())
        .limit(tries)
    ).all()
    for payload_id in payload_ids:
        payload = session.get(RawPayload, payload_id)
        try:
            name = parse_raw(payload.format, payload.body).sender.display_name
        except ParseError:
            continue
        if name and name.strip():
            return name.strip()
    return None


def reprocess_payload(session_factory: sessionmaker[Session], payload_id: int) -> dict[str, Any]:
    """Parse a failed payload again and ingest it. Returns the outcome as a dict.

    A failed status callback is queued again for the webhook worker, which applies it.

    Raises ``NotFound`` when there is no such failed payload and ``InvalidInput`` when it
    still does not parse (the stored error is updated).
    """
    with session_factory() as session:
        payload = session.get(RawPayload, payload_id)
        if payload is None or payload.status != PayloadStatus.FAILED.value:
            raise NotFound(f"No failed payload {payload_id}.", field="payload_id")
        channel_id, raw_format, body = payload.channel_id, payload.format, payload.body
        if raw_format == STATUS_RAW_FORMAT:
            return _queue_status_again(session, payload)
        try:
            inbound = parse_raw(raw_format, body)
        except ParseError as error:
            payload.error = str(error)[:2000]
            session.commit()
            raise InvalidInput(f"Payload {payload_id} still does not parse: {error}") from error
        session.rollback()
        result = ingest_message(session, channel_id, inbound, replaces_failed_payload=payload_id)
    log.info("payload %s re-processed: message %s", payload_id, result.message_id)
    return {
        "payload_id": payload_id,
        "message_id": result.message_id,
        "conversation_id": result.conversation_id,
        "duplicate": result.duplicate,
    }


def _queue_status_again(session: Session, payload: RawPayload) -> dict[str, Any]:
    """Queue a failed status callback again for the webhook worker, once it parses."""
    try:
        parse_status_raw(payload.body)
    except ParseError as error:
        payload.error = str(error)[:2000]
        session.commit()
        raise InvalidInput(f"Payload {payload.id} still does not parse: {error}") from error
    payload.status = PayloadStatus.PENDING.value
    payload.error = None
    session.commit()
    log.info("status callback payload %s queued again", payload.id)
    return {"payload_id": payload.id, "message_id": None, "conversation_id": None, "duplicate": False}
