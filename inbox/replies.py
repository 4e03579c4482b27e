"""Agent replies: the message and its outbox row are committed together."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, object_session

from channels.email.smtp import UnreadableAttachment
from channels.email.smtp import check_attachments as check_email_attachments
from channels.types import Attachment as AttachmentData
from channels.types import DeliveryState
from channels.whatsapp.parts import check_reply
from inbox.channel_config import whatsapp_provider
from inbox.errors import Conflict, InvalidInput, NotFound
from inbox.events import record_event
from inbox.models import (
    Agent,
    Attachment,
    Channel,
    Conversation,
    Direction,
    HoldReason,
    Message,
    OutboxItem,
    OutboxStatus,
    utcnow,
)
from inbox.serialize import contact_identity, conversation_to_dict, make_snippet, message_to_dict
from inbox.contacts import MAX_MERGE_HOPS
from inbox.storage import attachment_store
from inbox.optout import may_message_proactively
from inbox.window import lock_window, window_is_open
from inbox.workspace import OutsideWindow, workspace_settings

log = logging.getLogger(__name__)

# Longer WhatsApp replies go out in parts (channels.whatsapp.parts), up to this length.
WHATSAPP_MAX_LENGTH = 16_000
EMAIL_MAX_LENGTH = 100_000
# Enough of the References chain to thread in every client without an unbounded header.
MAX_REFERENCES = 20
# Meta's Cloud API takes images of at most 5 MB; its other limits are above WhatsApp's 16 MB.
META_MAX_IMAGE_BYTES = 5 * 1024 * 1024

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*:", re.IGNORECASE)
# 48 random bits: a stranger cannot guess a conversation's Reply-To address from its id.
REPLY_TOKEN_BYTES = 6


def new_message_id(domain: str) -> str:
    """Return a fresh RFC 5322 Message-ID (without angle brackets) on ``domain``."""
    return f"sb.{secrets.token_hex(12)}@{domain}"


def reply_subject(subject: str | None, conversation_id: int | None = None) -> str:
    """Return the subject of a reply: "Re: " once, then the "[#<id>]" conversation reference.

    The reference lets a customer's new mail with that subject thread back (see inbox.threader).
    """
    subject = (subject or "").strip()
    if not subject:
        subject = "Re: your request"
    elif not _REPLY_PREFIX.match(subject):
        subject = f"Re: {subject}"
    reference = f"[#{conversation_id}]"
    if conversation_id is not None and reference not in subject:
        subject = f"{subject} {reference}"
    return subject


def reply_to_address(conversation: Conversation) -> str | None:
    """Return the Reply-To address that threads replies into ``conversation``.

    It is the channel's address plus ``+c<id>.<token>``, for example
    ``support+c12.3f9a0c1b2d4e@shop.example``. Returns None for a conversation that is not on
    an email channel or has no token yet.
    """
    channel = conversation.channel
    local, at, domain = channel.address.rpartition("@")
    if channel.kind != "email" or not at or not conversation.reply_token:
        return None
    return f"{local}+c{conversation.id}.{conversation.reply_token}@{domain}"


@dataclass(frozen=True)
class TemplateContent:
    """An approved WhatsApp template to send and its variable values.

    A Twilio template is named by its Content SID; a Meta Cloud API template by ``name``
    and ``language``, with ``content_sid`` None.
    """

    content_sid: str | None
    variables: dict[str, str]
    name: str | None = None
    language: str | None = None


def create_reply(
    session: Session,
    conversation_id: int,
    agent_id: int,
    text: str,
    attachments: Sequence[AttachmentData] = (),
    *,
    template: TemplateContent | None = None,
    seen_message_id: int | None = None,
    confirm_stale: bool = False,
) -> Message:
    """Add an agent's reply, its attachments and its outbox row to the session's transaction.

    The caller commits; the dispatcher sends the reply after that. Returns the new message.
    With ``template``, the reply is that WhatsApp template and ``text`` is its rendered
    form, which the inbox shows. A free-text WhatsApp reply after the 24-hour window is held
    until the customer writes, or rejected, as the workspace settings say (``inbox.held``).

    Raises ``NotFound`` for an unknown conversation, ``InvalidInput`` for an empty or
    over-long text, attachments beyond the channel's limits (``check_reply`` for WhatsApp,
    ``channels.email.smtp.check_attachments`` for email), or a template on an email
    channel, and ``Conflict`` with code ``channel_disabled`` (an admin disabled the
    conversation's channel), ``outside_window`` (free text after the window, where the
    workspace rejects it) or ``opted_out`` (a template after the window to a contact who
    opted out).

    With ``seen_message_id``, the newest message the agent had seen, the reply is held back
    with ``StaleReply`` when a customer message or another agent's reply arrived after it,
    unless ``confirm_stale`` is true because the agent chose to send it anyway.
    """
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found", field="conversation_id")
    if conversation.channel.kind == "whatsapp":
        # Before the conversation's row lock, in the order that ingestion takes them.
        _lock_contact_window(session, conversation)
    if seen_message_id is not None:
        # The row lock orders this check against concurrent replies and ingestion, which
        # both update the conversation row before they commit.
        conversation = session.scalar(
            select(Conversation)
            .where(Conversation.id == conversation_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert conversation is not None  # conversations are never deleted
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found", field="agent_id")
    check_channel_active(conversation.channel)
    if seen_message_id is not None and not confirm_stale:
        arrived = messages_since(session, conversation_id, agent_id, seen_message_id)
        if arrived:
            raise StaleReply(arrived)

    text = (text or "").strip()
    channel = conversation.channel
    limit = WHATSAPP_MAX_LENGTH if channel.kind == "whatsapp" else EMAIL_MAX_LENGTH
    if not text and not attachments:
        raise InvalidInput("The reply is empty.", field="text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("The reply contains characters that are not valid Unicode.", field="text") from None
    if len(text) > limit:
        raise InvalidInput(
            f"The reply has {len(text)} characters; {channel.kind} replies allow at most {limit}.",
            field="text",
        )
    if channel.kind == "whatsapp":
        try:
            check_reply(text, [(a.filename, a.content_type, a.size) for a in attachments])
        except ValueError as error:
            raise InvalidInput(str(error), field="attachments" if attachments else "text") from None
        if whatsapp_provider(channel) == "meta":
            _check_meta_images(attachments)
    elif attachments:
        try:
            check_email_attachments([(a.filename, a.size) for a in attachments])
        except ValueError as error:
            raise InvalidInput(str(error), field="attachments") from None

    if template is not None and channel.kind != "whatsapp":
        raise InvalidInput("Templates can only be sent on WhatsApp channels.", field="template")

    now = utcnow()
    hold_reason = _whatsapp_hold_reason(session, conversation, template, now) if channel.kind == "whatsapp" else None
    message = Message(
        conversation=conversation,
        channel=channel,
        direction=Direction.OUTBOUND.value,
        agent=agent,
        text=text,
        created_at=now,
        delivery_status=None if hold_reason else DeliveryState.QUEUED.value,
        content_sid=template.content_sid if template else None,
        content_variables=dict(template.variables) if template else None,
        template_name=template.name if template else None,
        template_language=template.language if template else None,
    )
    session.add(message)
    if attachments:
        store = attachment_store(session)
        for part in attachments:
            session.add(Attachment(
                message=message, filename=part.filename[:500] or "attachment", content_type=part.content_type[:200],
                size=part.size, storage_key=store.put(part.data),
            ))
    if channel.kind == "email":
        with session.no_autoflush:
            add_email_headers(session, conversation, message)
    item = OutboxItem(message=message, channel=channel, next_attempt_at=now)
    if hold_reason is not None:
        item.status = OutboxStatus.HELD.value
        item.hold_reason = hold_reason.value
        item.held_at = now
    session.add(item)

    conversation.last_message_at = now
    conversation.snippet = make_snippet(text or f"[{len(attachments)} attachment{'s' if len(attachments) != 1 else ''}]")
    session.flush()

    conversation_data = conversation_to_dict(conversation)
    record_event(
        session,
        "message.created",
        {"message": message_to_dict(message), "conversation": conversation_data},
        conversation.id,
    )
    record_event(session, "conversation.updated", {"conversation": conversation_data}, conversation.id)
    return message


def email_attachments(message: Message) -> list[AttachmentData]:
    """Return the files of an email reply with their bytes, read from the attachment store.

    A file that cannot be read comes back as an ``UnreadableAttachment``, so the send fails
    with the reason on the reply and the outbox moves on to other replies.
    """
    session = object_session(message)
    assert session is not None, "the message must belong to a session"
    files: list[AttachmentData] = []
    for attachment in message.attachments:
        if attachment.data is not None and not attachment.storage_key:
            files.append(AttachmentData(attachment.filename, attachment.content_type, attachment.data))
            continue
        try:
            if not attachment.storage_key:
                raise ValueError("the file was never stored")
            data = attachment_store(session).read(attachment.storage_key)
        except FileNotFoundError:
            reason = "the file is missing from the attachment folder"
        except (OSError, ValueError) as error:
            reason = str(error)
        else:
            files.append(AttachmentData(attachment.filename, attachment.content_type, data))
            continue
        log.error("attachment %s of message %s cannot be read: %s", attachment.id, message.id, reason)
        files.append(UnreadableAttachment(attachment.filename, attachment.content_type, b"", reason=reason))
    return files


def check_channel_active(channel: Channel) -> None:
    """Raise ``Conflict`` (code ``channel_disabled``) when ``channel`` is disabled.

    A reply accepted there would wait in the outbox until an admin enables the channel, which
    the agent could not tell from a reply that is merely slow.
    """
    if not channel.is_active:
        raise Conflict(
            f"The channel {channel.name} is disabled, so nothing can be sent through it. "
            "Ask an admin to enable it on the Channels page, or reach the customer another way.",
            field="channel_id", code="channel_disabled",
        )


class StaleReply(Conflict):
    """A reply written before messages that the agent has not seen: it was not sent.

    ``messages`` are the customer messages and other agents' replies that arrived after the
    message the agent had seen, oldest first.
    """

    code = "stale_reply"

    def __init__(self, messages: Sequence[Message]):
        count = len(messages)
        super().__init__(
            f"{count} new message{'s' if count != 1 else ''} arrived in this conversation since you "
            "started writing, so the reply was not sent. Read them, then send it anyway or edit it.",
            field="seen_message_id",
        )
        self.messages = list(messages)


def messages_since(session: Session, conversation_id: int, agent_id: int, seen_message_id: int) -> list[Message]:
    """Return the messages that would make a reply stale, oldest first.

    These are the conversation's inbound messages with an id above ``seen_message_id``, and
    the outbound ones another agent wrote, except cancelled held replies, which never went.
    Automatic outbound messages (proactive updates) and notes do not count.
    """
    # NOTE: ids come from one sequence, but on PostgreSQL two transactions can commit their
    # ids out of order. A message committed a moment after a higher id was seen is missed.
    query = (
        select(Message)
        .outerjoin(OutboxItem, OutboxItem.message_id == Message.id)
        .where(
            Message.conversation_id == conversation_id,
            Message.id > seen_message_id,
            or_(
                Message.direction == Direction.INBOUND.value,
                and_(Message.agent_id.is_not(None), Message.agent_id != agent_id),
            ),
            or_(OutboxItem.id.is_(None), OutboxItem.status != OutboxStatus.CANCELLED.value),
        )
        .order_by(Message.id)
    )
    return list(session.scalars(query))


def _check_meta_images(attachments: Sequence[AttachmentData]) -> None:
    for attachment in attachments:
        if attachment.content_type.startswith("image/") and attachment.size > META_MAX_IMAGE_BYTES:
            raise InvalidInput(
                f"{attachment.filename!r} is {attachment.size / 1048576:.1f} MB; WhatsApp takes images "
                "of at most 5 MB on this channel. Send it as a smaller image or a PDF.",
                field="attachments",
            )


def may_answer_automatically(session: Session, conversation: Conversation) -> bool:
    """Return whether a message may go to this conversation without an agent sending it.

    False when its newest inbound message is an auto-reply or a bounce, because an
    automatic reply to a robot can start a mail loop, and False while the contact's
    address is marked failing after a bounce.
    """
    identity = contact_identity(conversation)
    if identity is not None and identity.failing_since is not None:
        return False
    last_inbound_automatic = session.execute(
        select(Message.automatic)
        .where(
            Message.conversation_id == conversation.id,
            Message.direction == Direction.INBOUND.value,
        )
        .order_by(Message.id.desc())
        .limit(1)
    ).first()
    return last_inbound_automatic is None or last_inbound_automatic[0] is None


def _lock_contact_window(session: Session, conversation: Conversation) -> None:
    """Take ``inbox.window.lock_window`` for the conversation's contact.

    A contact merge can move the conversation to another contact while this waits for the
    lock, so the conversation's contact is read again until it is the locked one.
    """
    locked = None
    for _ in range(MAX_MERGE_HOPS):
        if conversation.contact_id == locked:
            return
        locked = conversation.contact_id
        lock_window(session, locked)
        session.refresh(conversation, ["contact_id"])
    raise Conflict(f"The contact of conversation {conversation.id} keeps changing. Send the reply again.")


def _whatsapp_hold_reason(
    session: Session, conversation: Conversation, template: TemplateContent | None, now: datetime
) -> HoldReason | None:
    """Return why a WhatsApp reply must be held, or None to send it now. Raises ``Conflict``."""
    if window_is_open(session, conversation, now):
        return None
    if template is not None:
        # Outside the window a template starts a conversation, which an opted-out contact refused.
        if not may_message_proactively(conversation.contact):
            raise Conflict(
                "The contact opted out of messages they did not request, so no template can be "
                "sent until they write again.",
                field="template", code="opted_out",
            )
        return None
    if workspace_settings(session).outside_window is OutsideWindow.REJECT:
        raise Conflict(
            "The customer's last WhatsApp message is more than 24 hours old, so WhatsApp "
            "delivers only approved templates. Choose a template and send that instead.",
            field="text", code="outside_window",
        )
    return HoldReason.OUTSIDE_WINDOW


def add_email_headers(session: Session, conversation: Conversation, message: Message) -> None:
    """Give an email reply its own Message-ID and thread it under the customer's last mail."""
    domain = conversation.channel.address.rpartition("@")[2] or "switchboard.invalid"
    message.rfc_message_id = new_message_id(domain)
    # The provider id is our Message-ID too, so our own mail fetched back is a duplicate.
    message.provider_message_id = message.rfc_message_id
    message.subject = reply_subject(conversation.subject, conversation.id)
    _ensure_reply_token(session, conversation)

    # Reply to the customer's newest mail, or to our own earlier reply when there is none.
    parent = session.scalar(
        select(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.rfc_message_id.is_not(None),
        )
        .order_by((Message.direction == Direction.INBOUND.value).desc(), Message.id.desc())
        .limit(1)
    )
    if parent is not None:
        message.in_reply_to = parent.rfc_message_id
        message.thread_index_root = parent.thread_index_root
        chain = [ref for ref in (parent.references or []) if ref != parent.rfc_message_id]
        if not chain and parent.in_reply_to:
            chain = [parent.in_reply_to]
        if not chain:
            chain = _earlier_mail(session, conversation.id, parent.id)
        message.references = [*chain, parent.rfc_message_id][-MAX_REFERENCES:]


def _earlier_mail(session: Session, conversation_id: int, parent_id: int) -> list[str]:
    """Return the Message-IDs of the conversation's mail before ``parent_id``: its first one and
    the newest others, oldest first, at most ``MAX_REFERENCES - 1``.

    A customer's mail that joined the conversation by its Reply-To token or subject reference
    often starts no References chain. A reply to it that names only that mail would start a
    new thread in the customer's client, so the reply names the conversation's mail before it.
    """
    earlier = session.scalars(
        select(Message.rfc_message_id)
        .where(
            Message.conversation_id == conversation_id,
            Message.rfc_message_id.is_not(None),
            Message.id < parent_id,
        )
        .order_by(Message.id)
    ).all()
    if len(earlier) < MAX_REFERENCES:
        return list(earlier)
    return [earlier[0], *earlier[-(MAX_REFERENCES - 2):]]


def _ensure_reply_token(session: Session, conversation: Conversation) -> None:
    """Give the conversation its Reply-To token once; concurrent replies keep the first one."""
    if conversation.reply_token:
        return
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id, Conversation.reply_token.is_(None))
        .values(reply_token=secrets.token_hex(REPLY_TOKEN_BYTES))
        .execution_options(synchronize_session=False)
    )
    session.refresh(conversation, ["reply_token"])
