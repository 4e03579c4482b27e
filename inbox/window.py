"""The WhatsApp customer service window.

WhatsApp delivers a business's free-text message only within 24 hours of the customer's last
message to that business number. Later, only an approved template goes through, and a
free-text send fails with Twilio's error 63016 or the Meta Cloud API's error 131047. The window therefore belongs to the pair (contact,
sender number): it runs from the contact's newest inbound message on the channel, whichever
of the contact's conversations on that channel the message joined.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.models import Contact, Conversation

WINDOW = timedelta(hours=24)
# The providers' errors for a free-text WhatsApp message outside the window: Twilio's 63016
# and the Meta Cloud API's 131047 ("Re-engagement message").
WINDOW_ERROR_CODES = frozenset({"63016", "131047"})


def is_window_error(code: str | None) -> bool:
    """Return whether a provider's error code means that the 24-hour window had closed."""
    return code in WINDOW_ERROR_CODES


def lock_window(session: Session, contact_id: int) -> None:
    """Lock the contact's row until the transaction ends, before deciding by the contact's window.

    Ingestion locks the same row before it stores the contact's message and releases their
    held replies (``inbox.contacts.resolve_identity``, ``inbox.ingest_bulk.read_identities``).
    So a reply held under this lock is either released by that message's ingestion, or held
    only after the message committed and its newer ``last_inbound_at`` showed the window open.
    Without the lock, a reply held while the message was being stored waited for the
    customer's next message. Does nothing on SQLite, where a write transaction locks the database.
    """
    session.execute(select(Contact.id).where(Contact.id == contact_id).with_for_update())


def customer_wrote_at(sent_at: datetime | None, now: datetime) -> datetime:
    """Return the time from which a customer's WhatsApp message opens the window.

    That is ``sent_at``, when the provider gave the message's time, or else ``now``, and never
    later than ``now``. A message can be stored hours after the customer wrote it: Meta sends a
    webhook again for days after an error, and the webhook worker stores a Twilio webhook
    whenever it runs. WhatsApp's window runs from the message itself.
    """
    return min(sent_at, now) if sent_at is not None else now


def later(first: datetime | None, second: datetime) -> datetime:
    """Return the later of two times, where ``first`` may be missing."""
    return second if first is None or second > first else first


def last_inbound_at(session: Session, contact_id: int, channel_id: int) -> datetime | None:
    """Return when the contact last wrote on the channel, or None when they never did."""
    return session.scalar(
        select(func.max(Conversation.last_inbound_at)).where(
            Conversation.contact_id == contact_id, Conversation.channel_id == channel_id
        )
    )


def window_closes_at(session: Session, conversation: Conversation) -> datetime | None:
    """Return when the window of a WhatsApp conversation's contact closes.

    Returns None for a conversation on another kind of channel, and for a contact who never
    wrote on this channel (whose window is closed).
    """
    if conversation.channel.kind != "whatsapp":
        return None
    last = last_inbound_at(session, conversation.contact_id, conversation.channel_id)
    return last + WINDOW if last is not None else None


def window_is_open(session: Session, conversation: Conversation, now: datetime) -> bool:
    """Return whether a free-text reply may go to a WhatsApp conversation's contact at ``now``."""
    closes_at = window_closes_at(session, conversation)
    return closes_at is not None and now < closes_at
