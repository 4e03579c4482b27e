"""Ingestion: one inbound message in, one transaction, nothing lost or stored twice.

``ingest_message`` stores the raw payload, resolves the contact, threads the message and
writes the message and its events in a single transaction. A replay of the same payload or
the same provider message id changes nothing. ``record_failed_payload`` keeps a payload that
could not be parsed, with the error, for an admin to look at and re-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from channels.types import Address, Bounce, ChannelKind, DeliveryState, InboundMessage
from inbox.contacts import resolve_contact
from inbox.delivery import apply_report, lock_provider_message
from inbox.errors import NotFound
from inbox.events import record_event
from inbox.models import (
    Attachment,
    Channel,
    ContactIdentity,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    PayloadStatus,
    RawPayload,
    utcnow,
)
from inbox.serialize import contact_identity, conversation_to_dict, make_snippet, message_to_dict
from inbox.threader import ThreadMatch, ThreadReason, thread_email, thread_index_root, thread_whatsapp

log = logging.getLogger(__name__)

# A concurrent first delivery of the same contact can make one attempt fail on a unique key.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class IngestResult:
    """The outcome of ingesting one message: the stored message id, or ``duplicate``."""

    message_id: int | None
    conversation_id: int | None
    duplicate: bool
    created_conversation: bool = False


def clip(value: str | None, length: int) -> str | None:
    """Cut customer-controlled text to its column's length (PostgreSQL enforces it)."""
    return value[:length] if value else value


def payload_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def ingest_message(
    session: Session,
    channel_id: int,
    inbound: InboundMessage,
    *,
    replaces_failed_payload: int | None = None,
) -> IngestResult:
    """Store ``inbound`` in its own transaction and commit it.

    The session must have no transaction in progress. Returns the stored ids, or a result
    with ``duplicate=True`` when this payload or provider message id was already stored.
    ``replaces_failed_payload`` names a failed raw payload that this message was re-parsed
    from; it is deleted in the same transaction. Raises ``NotFound`` for an unknown channel.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with session.begin():
                if replaces_failed_payload is not None:
                    _delete_failed_payload(session, replaces_failed_payload)
                return _ingest(session, channel_id, inbound)
        except IntegrityError:
            # Either the same message committed concurrently (a duplicate), or a contact
            # identity did (retry and find it).
            if _already_stored(session, channel_id, inbound):
                return IngestResult(None, None, duplicate=True)
            if attempt == MAX_ATTEMPTS:
                raise
            log.info("retrying ingest of %s after a concurrent insert", inbound.provider_message_id)
    raise AssertionError("unreachable")


def _delete_failed_payload(session: Session, payload_id: int) -> None:
    payload = session.get(RawPayload, payload_id)
    if payload is None or payload.status != PayloadStatus.FAILED.value:
        raise NotFound(f"No failed payload {payload_id}.", field="payload_id")
    session.delete(payload)
    session.flush()


def _already_stored(session: Session, channel_id: int, inbound: InboundMessage) -> bool:
    with session.begin():
        return _find_duplicate(session, channel_id, inbound)


def _stored_sender(session: Session, channel_id: int, provider_message_id: str) -> tuple[bool, str | None]:
    """Return whether a message with this provider id exists, and its sender address."""
    row = session.execute(
        select(Message.sender_address).where(
            Message.channel_id == channel_id, Message.provider_message_id == provider_message_id
        )
    ).first()
    return (row is not None, row[0] if row else None)


def _find_duplicate(session: Session, channel_id: int, inbound: InboundMessage) -> bool:
    """Return whether ``inbound`` is stored already: the same bytes, or the same provider id
    from the same sender. Our own outbound mail has no sender address; a copy of it counts
    only when it comes from the channel's own address, so a customer resending our mail
    with their own text is kept."""
    payload_status = session.scalar(
        select(RawPayload.status).where(
            RawPayload.channel_id == channel_id, RawPayload.digest == payload_digest(inbound.raw)
        )
    )
    if payload_status == PayloadStatus.PROCESSED.value:
        return True
    exists, sender = _stored_sender(session, channel_id, inbound.provider_message_id)
    if not exists:
        return False
    if sender is None:
        channel = session.get(Channel, channel_id)
        return channel is not None and inbound.sender.value == channel.address
    return sender == inbound.sender.value


def _ingest(session: Session, channel_id: int, inbound: InboundMessage) -> IngestResult:
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} not found", field="channel_id")
    if _find_duplicate(session, channel_id, inbound):
        log.info(
            "duplicate %s message %s on channel %s ignored",
            channel.kind, inbound.provider_message_id, channel_id,
        )
        return IngestResult(None, None, duplicate=True)

    if _stored_sender(session, channel_id, inbound.provider_message_id)[0]:
        # Another sender already used this Message-ID (a forged or colliding id): keep this
        # mail under its content hash, so neither message hides the other.
        log.warning(
            "message id %s on channel %s reused by another sender; stored under its content hash",
            inbound.provider_message_id, channel_id,
        )
        inbound = dataclasses.replace(inbound, provider_message_id="sha256:" + payload_digest(inbound.raw))

    # A payload that failed before (a crash, a bug fixed since) is retried, not a duplicate.
    earlier_failure = session.scalar(
        select(RawPayload).where(
            RawPayload.channel_id == channel_id, RawPayload.digest == payload_digest(inbound.raw)
        )
    )
    if earlier_failure is not None:
        session.delete(earlier_failure)
        session.flush()

    raw = RawPayload(
        channel_id=channel_id,
        format=inbound.raw_format,
        digest=payload_digest(inbound.raw),
        body=inbound.raw,
        status=PayloadStatus.PROCESSED.value,
    )
    session.add(raw)
    contact = resolve_contact(session, inbound.sender)
    bounced = _find_bounced_message(session, channel_id, inbound.bounce)

    # Thread: an existing conversation (reopened if it was resolved) or a new one. A bounce
    # of our own mail joins that mail's conversation, so the agent finds the failure there.
    now = utcnow()
    if bounced is not None:
        thread = ThreadMatch(bounced.conversation, ThreadReason.BOUNCE)
    elif inbound.channel_kind is ChannelKind.EMAIL:
        thread = thread_email(session, channel, inbound, contact, now)
    else:
        thread = thread_whatsapp(session, channel, contact, now)
    conversation = thread.conversation
    created = conversation is None
    if conversation is None:
        conversation = Conversation(
            channel=channel,
            contact=contact,
            subject=clip(inbound.subject, 998),
            created_at=now,
            previous_conversation_id=thread.previous.id if thread.previous else None,
        )
        session.add(conversation)
    elif conversation.status == ConversationStatus.RESOLVED.value:
        conversation.status = ConversationStatus.OPEN.value

    text = inbound.text or ""
    message = Message(
        conversation=conversation,
        channel=channel,
        direction=Direction.INBOUND.value,
        contact=contact,
        provider_message_id=inbound.provider_message_id,
        rfc_message_id=_rfc_message_id(inbound),
        in_reply_to=clip(inbound.in_reply_to, 998),
        references=list(inbound.references),
        subject=clip(inbound.subject, 998),
        text=text,
        html=inbound.html,
        sender_address=clip(inbound.sender.value, 320),
        sent_at=inbound.sent_at,
        created_at=now,
        raw_payload=raw,
        automatic=inbound.automatic,
        thread_reason=thread.reason.value,
        thread_index_root=thread_index_root(inbound.thread_index),
    )
    session.add(message)
    for part in inbound.attachments:
        session.add(
            Attachment(
                message=message,
                filename=clip(part.filename, 500) or "attachment",
                content_type=clip(part.content_type, 200) or "application/octet-stream",
                size=part.size,
                content_id=clip(part.content_id, 500),
                inline=part.inline,
                data=part.data,
            )
        )

    conversation.last_message_at = now
    conversation.last_inbound_at = now
    conversation.unread_count = (conversation.unread_count or 0) + 1
    conversation.snippet = make_snippet(text or inbound.subject or _media_label(inbound))
    session.flush()
    if bounced is not None and inbound.bounce is not None:
        _record_bounce(session, bounced, inbound.bounce)
    elif inbound.automatic is None:
        _clear_failing_address(session, inbound.sender)

    conversation_data = conversation_to_dict(conversation)
    event_type = "conversation.created" if created else "conversation.updated"
    record_event(session, event_type, {"conversation": conversation_data}, conversation.id)
    record_event(
        session,
        "message.created",
        {"message": message_to_dict(message), "conversation": conversation_data},
        conversation.id,
    )
    log.info(
        "stored %s message %s as message %s in conversation %s",
        channel.kind, inbound.provider_message_id, message.id, conversation.id,
    )
    return IngestResult(message.id, conversation.id, duplicate=False, created_conversation=created)


def _find_bounced_message(session: Session, channel_id: int, bounce: Bounce | None) -> Message | None:
    """Return our outbound mail that ``bounce`` returns, locked, or None.

    Only a bounce that returns the Message-ID of a mail we sent changes anything, because
    anyone can write a bounce-shaped mail, but only a recipient of ours has seen our random ids.
    """
    if bounce is None or not bounce.original_message_id:
        return None
    # Outbound mail uses its Message-ID as provider id (see inbox.replies), and this lock
    # serializes with the dispatcher recording the same send.
    lock_provider_message(session, channel_id, bounce.original_message_id)
    return session.scalar(
        select(Message)
        .where(
            Message.channel_id == channel_id,
            Message.direction == Direction.OUTBOUND.value,
            Message.rfc_message_id == bounce.original_message_id,
        )
        .with_for_update()
    )


def _record_bounce(session: Session, bounced: Message, bounce: Bounce) -> None:
    """Mark our bounced mail undelivered and the address it went to as failing.

    Only a report that names the address the reply went to counts: a Message-ID is known to
    everyone who saw the mail, so a report about some other recipient changes nothing.
    """
    identity = contact_identity(bounced.conversation)
    if identity is None or identity.kind != "email" or identity.value not in bounce.failed_recipients:
        log.info("bounce for message %s names other recipients; nothing marked", bounced.id)
        return
    reason = bounce.diagnostic or "The recipient's mail server returned the mail as undeliverable."
    if apply_report(bounced, DeliveryState.UNDELIVERED, bounce.status, reason):
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(bounced)}, bounced.conversation_id
        )

    others = [address for address in bounce.failed_recipients if address != identity.value]
    if others:
        reason = f"{reason} (reported for {', '.join(others)})"
    if identity.failing_since is None:
        identity.failing_since = utcnow()
    identity.failure_reason = reason
    log.info(
        "mail to contact %s bounced with status %s; address marked failing",
        identity.contact_id, bounce.status,
    )


def _clear_failing_address(session: Session, sender: Address) -> None:
    """Clear the failing mark of an address that a person just wrote from.

    NOTE: writing from an address does not prove that mail to it arrives (a full mailbox
    still sends), but a new bounce of the next reply marks it failing again.
    """
    identity = session.scalar(
        select(ContactIdentity).where(
            ContactIdentity.kind == sender.kind.value,
            ContactIdentity.value == sender.value,
            ContactIdentity.failing_since.is_not(None),
        )
    )
    if identity is not None:
        identity.failing_since = None
        identity.failure_reason = None


def _rfc_message_id(inbound: InboundMessage) -> str | None:
    if inbound.channel_kind is not ChannelKind.EMAIL:
        return None
    # A content-hash id replaces a missing Message-ID, and no mail can reply to it.
    if inbound.provider_message_id.startswith("sha256:"):
        return None
    return inbound.provider_message_id


def _media_label(inbound: InboundMessage) -> str:
    count = len(inbound.media) + len(inbound.attachments)
    return f"[{count} attachment{'s' if count != 1 else ''}]" if count else ""


def record_failed_payload(
    session: Session, channel_id: int, raw: bytes, raw_format: str, error: str
) -> int | None:
    """Keep a payload that could not be parsed, with the error, and commit.

    Returns the new payload's id, or None when the same bytes were stored before.
    """
    digest = payload_digest(raw)
    try:
        with session.begin():
            existing = session.scalar(
                select(RawPayload.id).where(
                    RawPayload.channel_id == channel_id, RawPayload.digest == digest
                )
            )
            if existing is not None:
                return None
            row = RawPayload(
                channel_id=channel_id,
                format=raw_format,
                digest=digest,
                body=raw,
                status=PayloadStatus.FAILED.value,
                error=error[:2000],
            )
            session.add(row)
            session.flush()
            log.warning("payload %s on channel %s failed to parse: %s", row.id, channel_id, error)
            return row.id
    except IntegrityError:
        return None
