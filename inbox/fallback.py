"""Resending a failed WhatsApp reply by email.

When a WhatsApp reply fails for good and the contact also has an email address, the same
text can go out by email: an agent requests it (``send_by_email``), or it happens at once
when the workspace's ``email_fallback`` setting is ``automatic`` (``send_by_email_automatically``).

The email is an ordinary outbound reply in an email conversation of the contact: the newest
one on an active email channel, or a new one on the first active email channel. It gets its
own Message-ID, In-Reply-To and References to that conversation's mail, and the conversation's
Reply-To token, so the customer's answer threads back, and it leaves through the outbox.
``Message.email_fallback_id`` is unique, so a WhatsApp reply is resent at most once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.email.smtp import check_attachments
from channels.types import DeliveryState
from inbox.conversations import lock_conversations
from inbox.errors import Conflict, NotFound
from inbox.events import record_event
from inbox.models import (
    Attachment,
    Channel,
    ContactIdentity,
    Conversation,
    Direction,
    Message,
    OutboxItem,
    OutboxStatus,
    utcnow,
)
from inbox.replies import add_email_headers
from inbox.serialize import conversation_to_dict, make_snippet, message_to_dict
from inbox.window import WINDOW_ERROR_CODES
from inbox.workspace import EmailFallback, workspace_settings

log = logging.getLogger(__name__)

FAILED_STATES = frozenset({DeliveryState.FAILED.value, DeliveryState.UNDELIVERED.value})
# The subject of an email conversation that a fallback starts; replies add "Re: " and "[#id]".
NEW_CONVERSATION_SUBJECT = "Your message on WhatsApp"


def fallback_address(session: Session, message: Message) -> ContactIdentity | None:
    """Return the email identity that a failed WhatsApp reply could be resent to, or None.

    None unless the reply is an outbound WhatsApp message that failed for good, was not
    resent yet, and its contact has an email address that is not marked failing, with an
    active email channel to send from.
    """
    if not _failed_for_good(message) or message.email_fallback_id is not None:
        return None
    identity = _email_identity(message)
    if identity is None or _email_channel(session, message.conversation.contact_id) is None:
        return None
    return identity


def send_by_email(session: Session, message_id: int, agent_id: int | None) -> Message:
    """Resend a failed WhatsApp reply by email, through the outbox. The caller commits.

    ``agent_id`` is the agent who requested it, or None to keep the reply's author. Returns the new
    email message. Raises ``NotFound`` for an unknown message and ``Conflict`` when the reply
    is not a failed WhatsApp reply (code ``not_failed``), was resent already
    (``already_resent``), or its contact has no usable email address or there is no
    active email channel (``no_email``).
    """
    original = session.get(Message, message_id, with_for_update=True, populate_existing=True)
    if original is None:
        raise NotFound(f"Message {message_id} not found.", field="message_id")
    if not _failed_for_good(original):
        raise Conflict(
            f"Message {message_id} is not a WhatsApp reply that failed, so there is nothing to resend.",
            field="message_id", code="not_failed",
        )
    if original.email_fallback_id is not None:
        raise Conflict(
            f"Message {message_id} was already resent by email as message {original.email_fallback_id}.",
            field="message_id", code="already_resent",
        )
    identity = _email_identity(original)
    if identity is None:
        raise Conflict(
            "The contact has no email address that accepts mail. Add one to the contact first.",
            field="message_id", code="no_email",
        )
    problem = _files_problem(original)
    if problem is not None:
        raise Conflict(f"The reply cannot go by email with its files: {problem}", field="message_id", code="files_over_email_limit")
    now = utcnow()
    conversation, created = _email_conversation(session, original, now)
    if conversation is None:
        raise Conflict(
            "No active email channel can send this reply. Add or enable an email channel.",
            field="message_id", code="no_email",
        )

    email = Message(
        conversation=conversation,
        channel=conversation.channel,
        direction=Direction.OUTBOUND.value,
        agent_id=agent_id if agent_id is not None else original.agent_id,
        text=original.text,
        created_at=now,
        delivery_status=DeliveryState.QUEUED.value,
    )
    session.add(email)
    # The email carries the reply's files: its rows point at the same stored bytes.
    for attachment in original.attachments:
        session.add(Attachment(
            message=email, filename=attachment.filename, content_type=attachment.content_type,
            size=attachment.size, storage_key=attachment.storage_key,
        ))
    with session.no_autoflush:
        add_email_headers(session, conversation, email)
    session.add(OutboxItem(message=email, channel=conversation.channel, next_attempt_at=now))
    conversation.last_message_at = now
    conversation.snippet = make_snippet(email.text)
    session.flush()
    original.email_fallback_id = email.id
    session.flush()

    conversation_data = conversation_to_dict(conversation)
    record_event(
        session, "conversation.created" if created else "conversation.updated",
        {"conversation": conversation_data}, conversation.id,
    )
    record_event(
        session, "message.created", {"message": message_to_dict(email), "conversation": conversation_data},
        conversation.id,
    )
    record_event(session, "message.updated", {"message": message_to_dict(original)}, original.conversation_id)
    log.info(
        "failed WhatsApp reply %s resent by email as message %s in conversation %s",
        original.id, email.id, conversation.id,
    )
    return email


def send_by_email_automatically(session: Session, message: Message) -> Message | None:
    """Resend a reply that just failed for good by email, when the workspace's fallback is automatic.

    Runs in the caller's transaction. Skips replies rejected for the closed 24-hour window,
    because a template or the customer's next message is the way to reach them on WhatsApp.
    Returns the email message, or None when nothing was resent.
    """
    if workspace_settings(session).email_fallback is not EmailFallback.AUTOMATIC:
        return None
    if any(f"error {code}" in (message.delivery_error or "") for code in WINDOW_ERROR_CODES):
        return None
    if fallback_address(session, message) is None:
        return None
    if _files_problem(message) is not None:
        # The agent has the failed reply in the thread and can send the files another way.
        return None
    return send_by_email(session, message.id, None)


def _files_problem(message: Message) -> str | None:
    """Return why the reply's files cannot go out with one email, or None when they can."""
    try:
        check_attachments([(attachment.filename, attachment.size or 0) for attachment in message.attachments])
    except ValueError as error:
        return str(error)
    return None


def _failed_for_good(message: Message) -> bool:
    item = message.outbox_item
    return (
        message.direction == Direction.OUTBOUND.value
        and message.channel.kind == "whatsapp"
        and message.delivery_status in FAILED_STATES
        and item is not None
        and item.status in (OutboxStatus.FAILED.value, OutboxStatus.SENT.value)
    )


def _email_identity(message: Message) -> ContactIdentity | None:
    for identity in message.conversation.contact.identities:
        if identity.kind == "email" and identity.failing_since is None:
            return identity
    return None


def _newest_email_conversation(session: Session, contact_id: int) -> Conversation | None:
    """Return the contact's conversation on an active email channel with the newest activity."""
    return session.scalar(
        select(Conversation)
        .join(Channel, Channel.id == Conversation.channel_id)
        .where(Conversation.contact_id == contact_id, Channel.kind == "email", Channel.is_active.is_(True))
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
        .limit(1)
    )


def _email_channel(session: Session, contact_id: int) -> Channel | None:
    """Return the channel of the contact's newest email conversation, else the first active one."""
    newest = _newest_email_conversation(session, contact_id)
    if newest is not None:
        return newest.channel
    return session.scalar(
        select(Channel).where(Channel.kind == "email", Channel.is_active.is_(True)).order_by(Channel.id).limit(1)
    )


def _email_conversation(session: Session, original: Message, now: datetime) -> tuple[Conversation | None, bool]:
    """Return the email conversation to resend in, and whether it was created now."""
    contact_id = original.conversation.contact_id
    existing = _newest_email_conversation(session, contact_id)
    if existing is not None:
        return lock_conversations(session, [existing.id])[existing.id], False
    channel = _email_channel(session, contact_id)
    if channel is None:
        return None, False
    conversation = Conversation(
        channel=channel,
        contact=original.conversation.contact,
        subject=NEW_CONVERSATION_SUBJECT,
        created_at=now,
        last_message_at=now,
    )
    session.add(conversation)
    session.flush()
    return conversation, True
