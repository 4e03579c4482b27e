"""Re-processing of inbound payloads that failed to parse, for admins."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.orm import Session, sessionmaker

from channels.email.parse import parse_email
from channels.errors import ParseError
from channels.types import InboundMessage
from channels.whatsapp import parse_inbound
from channels.whatsapp import meta
from inbox.errors import InvalidInput, NotFound
from inbox.ingest import ingest_message
from inbox.models import PayloadStatus, RawPayload

log = logging.getLogger(__name__)


def parse_raw(raw_format: str, body: bytes) -> InboundMessage:
    """Parse a stored raw payload by its format. Raises ``ParseError``."""
    if raw_format == "rfc822":
        return parse_email(body)
    if raw_format == "twilio-form":
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return parse_inbound(form, body)
    if raw_format == meta.RAW_FORMAT:
        return meta.parse_stored_message(body)
    raise ParseError(f"unknown payload format {raw_format!r}")


def reprocess_payload(session_factory: sessionmaker[Session], payload_id: int) -> dict[str, Any]:
    """Parse a failed payload again and ingest it. Returns the outcome as a dict.

    Raises ``NotFound`` when there is no such failed payload and ``InvalidInput`` when it
    still does not parse (the stored error is updated).
    """
    with session_factory() as session:
        payload = session.get(RawPayload, payload_id)
        if payload is None or payload.status != PayloadStatus.FAILED.value:
            raise NotFound(f"No failed payload {payload_id}.", field="payload_id")
        channel_id, raw_format, body = payload.channel_id, payload.format, payload.body
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
