"""Threading: which conversation an inbound message belongs to, and by which rule.

Email tries these rules in order and stops at the first match:

1. ``in_reply_to``, then ``references`` (newest first), against the Message-ID of every
   message we stored or sent. A reference to a customer's mail joins only that customer's
   own conversation, because anyone can copy a Message-ID, while a reference to a mail we
   sent joins whoever replies to it.
2. ``reply_to_token``: our replies carry ``Reply-To: <local>+c<id>.<token>@<domain>``,
   where the token is random per conversation. A To or Cc address with the right token
   joins that conversation, even when a relay rewrote our Message-ID.
3. ``subject_reference``: a ``[#<id>]`` in the subject, accepted only from a participant of
   that conversation (its contact, or a contact that already wrote in it).
4. ``thread_index``: Outlook's Thread-Index header, whose first 22 bytes identify the
   thread, matched against messages of the same contact only.

A bare subject never joins a thread. A match on a resolved conversation reopens it
(``reopened``) when its last message is within the channel's reopen window; after the
window the mail starts a new conversation that links to the old one. Without a match the
mail starts a new conversation (``new``).

WhatsApp goes to the contact's newest unresolved conversation on the same number
(``whatsapp_open``), else reopens the newest resolved one within the window
(``reopened``), else starts a new one (``whatsapp_new``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from channels.types import InboundMessage
from inbox.models import Channel, Contact, Conversation, ConversationStatus, Direction, Message

log = logging.getLogger(__name__)

# References grow with every reply, and only the newest ones matter. The cap also keeps a
# hostile mail with a quarter of a million ids from turning into one giant query.
MAX_REFERENCES_CHECKED = 50
# How long after its last message a resolved conversation still reopens on a reply.
# A channel overrides it with the setting "reopen_window_days".
DEFAULT_REOPEN_WINDOW = timedelta(days=7)
# Outlook's Thread-Index starts with a 22-byte header (a FILETIME and a GUID) that every
# reply in the thread keeps. Each reply appends 5 bytes.
THREAD_INDEX_ROOT_BYTES = 22
# Bounds the walk from a resolved conversation to its newest follow-up.
MAX_FOLLOW_UP_HOPS = 20
# Bounds the work one hostile To/Cc list or subject can cause.
MAX_ADDRESSES_CHECKED = 50
MAX_SUBJECT_REFERENCES = 5

_TOKEN_ADDRESS = re.compile(r"^(?P<base>.+)\+c(?P<id>[0-9]{1,18})\.(?P<token>[0-9a-z]{1,32})$")
_SUBJECT_REFERENCE = re.compile(r"\[#([0-9]{1,18})\]")


class ThreadReason(str, enum.Enum):
    """The rule that placed a message in its conversation, stored on ``Message.thread_reason``."""

    IN_REPLY_TO = "in_reply_to"
    REFERENCES = "references"
    REPLY_TO_TOKEN = "reply_to_token"
    SUBJECT_REFERENCE = "subject_reference"
    THREAD_INDEX = "thread_index"
    NEW = "new"
    REOPENED = "reopened"
    WHATSAPP_OPEN = "whatsapp_open"
    WHATSAPP_NEW = "whatsapp_new"
    # A bounce that returns a mail we sent joins that mail's conversation (see inbox.ingest).
    BOUNCE = "bounce"


@dataclass(frozen=True)
class ThreadMatch:
    """The threading decision for one message and the rule behind it.

    ``conversation`` is None when the message starts a new conversation, and ``previous`` is
    then the resolved conversation that the new one follows up, if any.
    """

    conversation: Conversation | None
    reason: ThreadReason
    previous: Conversation | None = None


def reopen_window(channel: Channel) -> timedelta:
    """Return the channel's reopen window: "reopen_window_days" when valid, else the default."""
    days = (channel.settings or {}).get("reopen_window_days")
    if days is None:
        return DEFAULT_REOPEN_WINDOW
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 <= days <= 3650:
        log.warning(
            "channel %s has an invalid reopen_window_days %r; using %s days",
            channel.id, days, DEFAULT_REOPEN_WINDOW.days,
        )
        return DEFAULT_REOPEN_WINDOW
    return timedelta(days=days)


def thread_index_root(thread_index: str | None) -> str | None:
    """Return the base64 of the first 22 bytes of an Outlook Thread-Index value.

    Returns None for a missing value, invalid base64 or fewer than 22 bytes.
    """
    if not thread_index:
        return None
    compact = "".join(thread_index.split())
    try:
        decoded = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(decoded) < THREAD_INDEX_ROOT_BYTES:
        return None
    return base64.b64encode(decoded[:THREAD_INDEX_ROOT_BYTES]).decode("ascii")


def thread_email(
    session: Session, channel: Channel, inbound: InboundMessage, contact: Contact, now: datetime
) -> ThreadMatch:
    """Return the conversation and rule for an inbound mail from ``contact`` on ``channel``.

    ``now`` is the receive time that the reopen window is measured against.
    """
    for find in (_match_headers, _match_reply_to_token, _match_subject_reference, _match_thread_index):
        found = find(session, channel, inbound, contact)
        if found is not None:
            conversation, reason = found
            return _apply_reopen_window(session, channel, conversation, reason, now, ThreadReason.NEW)
    return ThreadMatch(None, ThreadReason.NEW)


def thread_whatsapp(
    session: Session, channel: Channel, contact: Contact, now: datetime
) -> ThreadMatch:
    """Return the conversation and rule for a WhatsApp message from ``contact``."""
    conversation = find_whatsapp_conversation(session, channel, contact)
    if conversation is not None:
        return ThreadMatch(conversation, ThreadReason.WHATSAPP_OPEN)
    resolved = session.scalar(
        select(Conversation)
        .where(Conversation.channel_id == channel.id, Conversation.contact_id == contact.id)
        .order_by(Conversation.id.desc())
        .limit(1)
    )
    if resolved is None:
        return ThreadMatch(None, ThreadReason.WHATSAPP_NEW)
    return _apply_reopen_window(
        session, channel, resolved, ThreadReason.WHATSAPP_OPEN, now, ThreadReason.WHATSAPP_NEW
    )


def find_whatsapp_conversation(
    session: Session, channel: Channel, contact: Contact
) -> Conversation | None:
    """Return the contact's newest unresolved conversation on this channel, if any."""
    return session.scalar(
        select(Conversation)
        .where(
            Conversation.channel_id == channel.id,
            Conversation.contact_id == contact.id,
            Conversation.status != ConversationStatus.RESOLVED.value,
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )


def _apply_reopen_window(
    session: Session,
    channel: Channel,
    conversation: Conversation,
    reason: ThreadReason,
    now: datetime,
    new_reason: ThreadReason,
) -> ThreadMatch:
    # A reply to a conversation that was already followed up belongs to the newest follow-up
    # of the same customer: another person's follow-up must never receive this customer's mail.
    for _ in range(MAX_FOLLOW_UP_HOPS):
        follow_up = session.scalar(
            select(Conversation)
            .where(
                Conversation.previous_conversation_id == conversation.id,
                Conversation.contact_id == conversation.contact_id,
            )
            .order_by(Conversation.id.desc())
            .limit(1)
        )
        if follow_up is None:
            break
        conversation = follow_up

    if conversation.status != ConversationStatus.RESOLVED.value:
        return ThreadMatch(conversation, reason)
    # NOTE: the window counts from the last message, because no resolve time is stored.
    if now - conversation.last_message_at <= reopen_window(channel):
        log.info("reply matched resolved conversation %s by %s: reopening it", conversation.id, reason.value)
        return ThreadMatch(conversation, ThreadReason.REOPENED)
    log.info(
        "reply matched conversation %s by %s after its reopen window: starting a follow-up",
        conversation.id, reason.value,
    )
    return ThreadMatch(None, new_reason, previous=conversation)


def _match_headers(
    session: Session, channel: Channel, inbound: InboundMessage, contact: Contact
) -> tuple[Conversation, ThreadReason] | None:
    candidates: list[str] = []
    if inbound.in_reply_to:
        candidates.append(inbound.in_reply_to)
    candidates.extend(reversed(inbound.references[-MAX_REFERENCES_CHECKED:]))
    if not candidates:
        return None

    rows = session.execute(
        select(Message.rfc_message_id, Message.direction, Conversation)
        .join(Conversation, Conversation.id == Message.conversation_id)
        # Another mailbox's conversation would send the answer from the wrong address.
        .where(Message.rfc_message_id.in_(candidates), Conversation.channel_id == channel.id)
    ).all()
    conversation_by_id = {}
    for rfc_id, direction, conversation in rows:
        if direction == Direction.OUTBOUND.value or conversation.contact_id == contact.id:
            conversation_by_id[rfc_id] = conversation
    for position, candidate in enumerate(candidates):
        if candidate in conversation_by_id:
            by_in_reply_to = position == 0 and candidate == inbound.in_reply_to
            reason = ThreadReason.IN_REPLY_TO if by_in_reply_to else ThreadReason.REFERENCES
            return conversation_by_id[candidate], reason
    return None


def _match_reply_to_token(
    session: Session, channel: Channel, inbound: InboundMessage, contact: Contact
) -> tuple[Conversation, ThreadReason] | None:
    local, _, domain = channel.address.lower().rpartition("@")
    for address in [*inbound.recipients, *inbound.cc][:MAX_ADDRESSES_CHECKED]:
        address_local, _, address_domain = address.value.lower().rpartition("@")
        match = _TOKEN_ADDRESS.match(address_local)
        if match is None or match["base"] != local or address_domain != domain:
            continue
        conversation = session.get(Conversation, int(match["id"]))
        if (
            conversation is not None
            and conversation.channel_id == channel.id
            and conversation.reply_token
            and hmac.compare_digest(conversation.reply_token, match["token"])
        ):
            return conversation, ThreadReason.REPLY_TO_TOKEN
        log.info("ignored a Reply-To token for conversation %s that does not match", match["id"])
    return None


def _match_subject_reference(
    session: Session, channel: Channel, inbound: InboundMessage, contact: Contact
) -> tuple[Conversation, ThreadReason] | None:
    for reference in _SUBJECT_REFERENCE.findall(inbound.subject or "")[:MAX_SUBJECT_REFERENCES]:
        conversation = session.get(Conversation, int(reference))
        if conversation is None or conversation.channel_id != channel.id:
            continue
        if conversation.contact_id == contact.id or _has_written_in(session, conversation, contact, inbound):
            return conversation, ThreadReason.SUBJECT_REFERENCE
    return None


def _has_written_in(
    session: Session, conversation: Conversation, contact: Contact, inbound: InboundMessage
) -> bool:
    message_id = session.scalar(
        select(Message.id)
        .where(
            Message.conversation_id == conversation.id,
            Message.direction == Direction.INBOUND.value,
            or_(Message.contact_id == contact.id, Message.sender_address == inbound.sender.value),
        )
        .limit(1)
    )
    return message_id is not None


def _match_thread_index(
    session: Session, channel: Channel, inbound: InboundMessage, contact: Contact
) -> tuple[Conversation, ThreadReason] | None:
    root = thread_index_root(inbound.thread_index)
    if root is None:
        return None
    conversation = session.scalar(
        select(Conversation)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            Message.thread_index_root == root,
            Conversation.channel_id == channel.id,
            Conversation.contact_id == contact.id,
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    return (conversation, ThreadReason.THREAD_INDEX) if conversation is not None else None
