"""Threading: which conversation an inbound message belongs to.

Email follows In-Reply-To, then References (newest first), against the Message-ID of every
message we stored or sent. A reference to a customer's mail joins only that customer's own
conversation, because anyone can copy a Message-ID, while a reference to a mail we sent
joins whoever replies to it. Without a match the mail starts a new conversation, and a
subject alone never joins a thread. WhatsApp goes to the contact's newest unresolved
conversation on the same number, else a new one.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.types import InboundMessage
from inbox.models import Channel, Contact, Conversation, ConversationStatus, Direction, Message


# References grow with every reply; the newest ones are the ones that matter, and a hostile
# mail with a quarter of a million ids must not turn into one giant query.
MAX_REFERENCES_CHECKED = 50


def find_email_conversation(
    session: Session, inbound: InboundMessage, contact: Contact
) -> Conversation | None:
    """Return the conversation that the mail replies to, or None when it starts a new one."""
    candidates: list[str] = []
    if inbound.in_reply_to:
        candidates.append(inbound.in_reply_to)
    candidates.extend(reversed(inbound.references[-MAX_REFERENCES_CHECKED:]))
    if not candidates:
        return None

    rows = session.execute(
        select(Message.rfc_message_id, Message.direction, Conversation)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.rfc_message_id.in_(candidates))
    ).all()
    conversation_by_id = {}
    for rfc_id, direction, conversation in rows:
        if direction == Direction.OUTBOUND.value or conversation.contact_id == contact.id:
            conversation_by_id[rfc_id] = conversation
    for candidate in candidates:
        if candidate in conversation_by_id:
            return conversation_by_id[candidate]
    return None


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
