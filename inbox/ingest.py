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
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from channels.types import Bounce, ChannelKind, DeliveryState, InboundMessage
from inbox.assignment import assign_new_conversation
from inbox.contacts import resolve_identity
from inbox.delivery import apply_report, lock_provider_message
from inbox.errors import NotFound
from inbox.events import record_event, savepoint
from inbox.held import release_held_replies
from inbox.media import pending_media_rows
from inbox.models import (
    Attachment,
    Channel,
    Conversation,
    Direction,
    Message,
    MessagePart,
    PayloadStatus,
    RawPayload,
    utcnow,
)
from inbox.optout import OptChange, apply_opt_keywords
from inbox.proactive.satisfaction import pending_answer, record_answer
from inbox.serialize import contact_identity, conversation_to_dict, make_snippet, message_to_dict
from inbox.storage import attachment_store
from inbox.threader import ThreadMatch, ThreadReason, thread_email, thread_index_root, thread_whatsapp
from inbox.window import WINDOW, customer_wrote_at, later
from inbox.workflow import follow_merges, reopen_for_customer_message

log = logging.getLogger(__name__)

# A concurrent first delivery of the same contact can make one attempt fail on a unique key.
MAX_ATTEMPTS = 3
# Per attachment, unless the channel sets "max_attachment_bytes". Gmail and Microsoft 365
# accept messages of 25 MB and more, so a smaller default would drop files customers sent.
DEFAULT_MAX_ATTACHMENT_BYTES = 30 * 1024 * 1024
# Message.thread_reason of a WhatsApp reaction, which joins the conversation of its target.
REACTION_THREAD_REASON = "reaction"


@dataclass(frozen=True)
class IngestResult:
    """The outcome of ingesting one message: the stored message id, or ``duplicate``, or the
    ``error`` that kept it from being stored (``ingest_batch`` keeps such a payload as failed)."""

    message_id: int | None
    conversation_id: int | None
    duplicate: bool
    created_conversation: bool = False
    error: str | None = None


@dataclass(frozen=True)
class _Stored:
    """The rows already stored under a payload's digest and its provider message id."""

    payload_id: int | None
    payload_status: str | None
    message_exists: bool
    message_sender: str | None


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
    from. The stored message keeps that row, marked processed, and a duplicate deletes it, in
    the same transaction. Raises ``NotFound`` for an unknown channel or a payload that is not
    failed.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with session.begin():
                if replaces_failed_payload is not None:
                    _check_failed_payload(session, replaces_failed_payload)
                result = _ingest(session, channel_id, inbound)
                if replaces_failed_payload is not None:
                    # Still failed only when the message was a duplicate or did not use the row.
                    session.execute(
                        delete(RawPayload).where(
                            RawPayload.id == replaces_failed_payload,
                            RawPayload.status == PayloadStatus.FAILED.value,
                        )
                    )
                return result
        except IntegrityError:
            # Either the same message committed concurrently (a duplicate), or a contact
            # identity did (retry and find it).
            if _already_stored(session, channel_id, inbound):
                return IngestResult(None, None, duplicate=True)
            if attempt == MAX_ATTEMPTS:
                raise
            log.info("retrying ingest of %s after a concurrent insert", inbound.provider_message_id)
    raise AssertionError("unreachable")


def ingest_batch(
    session: Session, channel_id: int, inbounds: Sequence[InboundMessage]
) -> list[IngestResult]:
    """Store ``inbounds`` in one transaction of the caller's and return a result for each, in order.

    One commit for a whole IMAP fetch batch or webhook worker batch is what makes a large
    mailbox import and a burst of webhooks fast, and mail and WhatsApp messages are stored
    with a few bulk statements for the batch (see ``inbox.ingest_bulk``). A
    message that fails to store rolls back alone and is kept as a failed payload with the
    error, so the rest of the batch still commits. Database connection errors propagate and
    the caller's transaction rolls back whole, so nothing is half stored.
    """
    # Imported here because the bulk paths build on this module's helpers.
    from inbox.ingest_bulk import ingest_email_batch
    from inbox.ingest_bulk_whatsapp import ingest_whatsapp_batch

    # A savepoint per message costs two statements and a flush each, and most batches
    # store cleanly, so the whole batch first goes in one savepoint, stored in bulk (see
    # inbox.ingest_bulk). Only when something in the batch fails is it stored again
    # message by message, to isolate the failure.
    try:
        with savepoint(session):
            channel = session.get(Channel, channel_id)
            if channel is not None and channel.kind == ChannelKind.EMAIL.value:
                return ingest_email_batch(session, channel, inbounds)
            if channel is not None and channel.kind == ChannelKind.WHATSAPP.value:
                return ingest_whatsapp_batch(session, channel, inbounds)
            return [_ingest(session, channel_id, inbound) for inbound in inbounds]
    except Exception as failure:  # noqa: BLE001 - retried below, one message at a time
        if _is_database_fault(failure):
            raise
        log.info("channel %s: batch of %s messages failed (%s); storing them one by one",
                 channel_id, len(inbounds), type(failure).__name__)
    return [_ingest_in_savepoint(session, channel_id, inbound) for inbound in inbounds]


def _is_database_fault(error: BaseException) -> bool:
    """Return whether ``error`` is a fault of the database, such as a lost connection, a lock
    or a full disk, which a later retry of the same message can get past.

    psycopg raises these as OperationalError, and PostgreSQL's class 54 (program limit
    exceeded) too. That error comes from the message itself, such as an index entry too
    large, so it fails the same way on every retry.
    """
    if not isinstance(error, (OperationalError, InterfaceError)):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return not sqlstate.startswith("54")


def _ingest_in_savepoint(session: Session, channel_id: int, inbound: InboundMessage) -> IngestResult:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with savepoint(session):
                return _ingest(session, channel_id, inbound)
        except IntegrityError as conflict:
            # A concurrent transaction stored the same message or contact identity first.
            if _find_duplicate(session, channel_id, inbound, _lookup(session, channel_id, inbound)):
                return IngestResult(None, None, duplicate=True)
            if attempt == MAX_ATTEMPTS:
                error = f"storing failed: {conflict.orig}"
                break
        except Exception as failure:  # noqa: BLE001 - one bad message must not stop the batch
            if _is_database_fault(failure):
                raise
            log.exception("channel %s message %s could not be stored", channel_id, inbound.provider_message_id)
            error = f"storing failed: {type(failure).__name__}: {failure}"
            break
    with savepoint(session):
        _keep_failed_payload(session, channel_id, inbound.raw, inbound.raw_format, error)
    return IngestResult(None, None, duplicate=False, error=error)


def _check_failed_payload(session: Session, payload_id: int) -> None:
    status = session.scalar(select(RawPayload.status).where(RawPayload.id == payload_id))
    if status != PayloadStatus.FAILED.value:
        raise NotFound(f"No failed payload {payload_id}.", field="payload_id")


def _already_stored(session: Session, channel_id: int, inbound: InboundMessage) -> bool:
    with session.begin():
        return _find_duplicate(session, channel_id, inbound, _lookup(session, channel_id, inbound))


def _lookup(session: Session, channel_id: int, inbound: InboundMessage) -> _Stored:
    payload = session.execute(
        select(RawPayload.id, RawPayload.status).where(
            RawPayload.channel_id == channel_id, RawPayload.digest == payload_digest(inbound.raw)
        )
    ).first()
    message = session.execute(
        select(Message.sender_address).where(
            Message.channel_id == channel_id, Message.provider_message_id == inbound.provider_message_id
        )
    ).first()
    return _Stored(
        payload_id=payload[0] if payload else None,
        payload_status=payload[1] if payload else None,
        message_exists=message is not None,
        message_sender=message[0] if message else None,
    )


def _find_duplicate(session: Session, channel_id: int, inbound: InboundMessage, stored: _Stored) -> bool:
    """Return whether ``inbound`` is stored already: the same bytes, or the same provider id
    from the same sender. Our own outbound mail has no sender address; a copy of it counts
    only when it comes from the channel's own address, so a customer resending our mail
    with their own text is kept."""
    if stored.payload_status == PayloadStatus.PROCESSED.value:
        return True
    if not stored.message_exists:
        return False
    if stored.message_sender is None:
        channel = session.get(Channel, channel_id)
        return channel is not None and inbound.sender.value == channel.address
    return stored.message_sender == inbound.sender.value


def _ingest(session: Session, channel_id: int, inbound: InboundMessage) -> IngestResult:
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} not found", field="channel_id")
    stored = _lookup(session, channel_id, inbound)
    if _find_duplicate(session, channel_id, inbound, stored):
        log.info(
            "duplicate %s message %s on channel %s ignored",
            channel.kind, inbound.provider_message_id, channel_id,
        )
        return IngestResult(None, None, duplicate=True)

    if stored.message_exists:
        # Another sender already used this Message-ID (a forged or colliding id): keep this
        # mail under its content hash, so neither message hides the other.
        log.warning(
            "message id %s on channel %s reused by another sender; stored under its content hash",
            inbound.provider_message_id, channel_id,
        )
        inbound = dataclasses.replace(inbound, provider_message_id="sha256:" + payload_digest(inbound.raw))

    # A payload already stored with the same bytes waits in the webhook queue, or failed
    # before (a crash, a bug fixed since) and is retried. Its row is kept and marked
    # processed, as the bulk path does, so the payload keeps its id and its received time.
    if stored.payload_id is not None:
        session.execute(
            update(RawPayload)
            .where(RawPayload.id == stored.payload_id)
            .values(status=PayloadStatus.PROCESSED.value, error=None)
            .execution_options(synchronize_session=False)
        )

    # Every lookup happens before any new row is added, so no query has to flush pending
    # rows first: a flush per message instead of one per query is most of the import speed.
    identity = resolve_identity(session, inbound.sender)
    contact = identity.contact
    with session.no_autoflush:
        bounced = _find_bounced_message(session, channel_id, inbound.bounce)
        replied = _find_replied_message(session, channel_id, inbound, contact.id)
        reaction = replied is not None and (inbound.content or {}).get("type") == "reaction"

        # Thread: an existing conversation (reopened if it was resolved) or a new one. A bounce
        # of our own mail joins that mail's conversation, so the agent finds the failure there,
        # and so does a reaction to a message.
        now = utcnow()
        if bounced is not None:
            thread = ThreadMatch(bounced.conversation, ThreadReason.BOUNCE)
        elif reaction:
            assert replied is not None
            thread = ThreadMatch(replied.conversation, ThreadReason.WHATSAPP_OPEN)
        elif inbound.channel_kind is ChannelKind.EMAIL:
            thread = thread_email(session, channel, inbound, contact, now)
        else:
            thread = thread_whatsapp(session, channel, contact, now)

    if stored.payload_id is None:
        raw = RawPayload(
            channel_id=channel_id,
            format=inbound.raw_format,
            digest=payload_digest(inbound.raw),
            body=inbound.raw,
            status=PayloadStatus.PROCESSED.value,
        )
        session.add(raw)
        payload_link = {"raw_payload": raw}
    else:
        # Linked by the id alone, because the relationship, once assigned, sets this column at the flush.
        payload_link = {"raw_payload_id": stored.payload_id}
    conversation = follow_merges(session, thread.conversation)
    created = conversation is None
    if conversation is None:
        conversation = Conversation(
            channel=channel,
            contact=contact,
            subject=clip(inbound.subject, 998),
            created_at=now,
            previous_conversation_id=thread.previous.id if thread.previous else None,
            # New and without labels, so serializing it loads nothing for them.
            labels=[],
        )
        session.add(conversation)
    # The answer is read from the new text only: a mail client's quote of the question and its
    # signature would otherwise count as a comment that needs an agent.
    answer_text = inbound.visible_text or inbound.text or ""
    satisfaction = None if created or reaction else pending_answer(session, conversation, answer_text, now)
    only_answer = satisfaction is not None and satisfaction.parsed.only_answer
    if not created and not reaction and not only_answer:
        # A reaction needs no reply, and neither does a bare answer to a satisfaction
        # question, so both leave the conversation as it is. A "no" or an answer with a
        # complaint after it reopens the conversation like any other message.
        reopen_for_customer_message(session, conversation)

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
        automatic=inbound.automatic,
        thread_reason=REACTION_THREAD_REASON if reaction else thread.reason.value,
        thread_index_root=thread_index_root(inbound.thread_index),
        content=inbound.content,
        reply_to=replied,
        # New and empty, so serializing the message loads nothing for it. ``record_answer``
        # sets the satisfaction answer that the message gives.
        parts=[],
        satisfaction_answer=None,
        **payload_link,
    )
    # Assigned whole, so the new message's collection is never loaded from the database.
    message.attachments = _store_attachments(session, channel, inbound) + pending_media_rows(inbound.media, now)
    session.add(message)

    wrote_at = customer_wrote_at(inbound.sent_at, now) if inbound.channel_kind is ChannelKind.WHATSAPP else now
    if not reaction:
        conversation.last_message_at = now
        # A provider's retry of an older message never moves the window back.
        conversation.last_inbound_at = later(conversation.last_inbound_at, wrote_at)
        conversation.unread_count = (conversation.unread_count or 0) + 1
        conversation.snippet = make_snippet(text or inbound.subject or _media_label(inbound))
    session.flush()
    if created:
        assign_new_conversation(session, conversation)
    if satisfaction is not None:
        record_answer(session, satisfaction, message)
    if bounced is not None and inbound.bounce is not None:
        _record_bounce(session, bounced, inbound.bounce)
    elif inbound.automatic is None and identity.failing_since is not None:
        # NOTE: writing from an address does not prove that mail to it arrives (a full
        # mailbox still sends), but a new bounce of the next reply marks it failing again.
        identity.failing_since = None
        identity.failure_reason = None
    if inbound.channel_kind is ChannelKind.WHATSAPP:
        # The customer's message opens the 24-hour window again, so held replies may go,
        # unless the message itself is an opt-out such as STOP, or a provider's retry of a
        # message whose window has closed since.
        opted_out = apply_opt_keywords(session, contact, text, now, sent_at=inbound.sent_at) is OptChange.OPTED_OUT
        if not opted_out and wrote_at + WINDOW > now:
            release_held_replies(session, contact.id, channel.id, now)

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


def _store_attachments(session: Session, channel: Channel, inbound: InboundMessage) -> list[Attachment]:
    """Write each attachment's bytes to the attachment store and return its rows.

    A file above the channel's ``max_attachment_bytes`` is not stored. Its row keeps the name,
    type and size with the reason, so the agent still sees that the file exists.
    """
    limit = int(channel.settings.get("max_attachment_bytes") or DEFAULT_MAX_ATTACHMENT_BYTES)
    store = attachment_store(session) if inbound.attachments else None
    rows = []
    for part in inbound.attachments:
        row = Attachment(
            filename=clip(part.filename, 500) or "attachment",
            content_type=clip(part.content_type, 200) or "application/octet-stream",
            size=part.size,
            content_id=clip(part.content_id, 500),
            inline=part.inline,
        )
        if part.size > limit:
            row.omitted_reason = (
                f"This file is {part.size / 1_000_000:.1f} MB, larger than this channel's limit of "
                f"{limit / 1_000_000:.1f} MB for attachments, so it was not stored."
            )
            log.warning(
                "attachment %r of %s (%s bytes) exceeds channel %s's limit of %s bytes; not stored",
                row.filename, inbound.provider_message_id, part.size, channel.id, limit,
            )
        else:
            row.storage_key = store.put(part.data)
        rows.append(row)
    return rows


def _find_replied_message(
    session: Session, channel_id: int, inbound: InboundMessage, contact_id: int
) -> Message | None:
    """Return the message that a WhatsApp reply or reaction refers to, or None.

    ``in_reply_to`` is the provider id of a message in the same chat: one we sent (or a
    part of it) or one the customer sent. Only a message in one of this contact's
    conversations counts.
    """
    if inbound.channel_kind is not ChannelKind.WHATSAPP or not inbound.in_reply_to:
        return None
    provider_id = inbound.in_reply_to
    message = session.scalar(
        select(Message).where(Message.channel_id == channel_id, Message.provider_message_id == provider_id)
    )
    if message is None:
        message = session.scalar(
            select(Message)
            .join(MessagePart, MessagePart.message_id == Message.id)
            .where(MessagePart.channel_id == channel_id, MessagePart.provider_message_id == provider_id)
        )
    if message is None or message.conversation.contact_id != contact_id:
        log.info("message %s refers to %s, which is not stored for its contact", inbound.provider_message_id, provider_id)
        return None
    return message


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
    try:
        with session.begin():
            return _keep_failed_payload(session, channel_id, raw, raw_format, error)
    except IntegrityError:
        return None


def _keep_failed_payload(
    session: Session, channel_id: int, raw: bytes, raw_format: str, error: str
) -> int | None:
    digest = payload_digest(raw)
    existing = session.scalar(
        select(RawPayload.id).where(RawPayload.channel_id == channel_id, RawPayload.digest == digest)
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
    log.warning("payload %s on channel %s kept as failed: %s", row.id, channel_id, error)
    return row.id
