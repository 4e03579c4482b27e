"""Opting out of proactive WhatsApp messages with STOP, and back in with START.

A customer who writes an opt-out keyword as the whole message (STOP, UNSUBSCRIBE, or one of
the workspace's own) is marked on their contact as opted out. Nothing that they did not
request is sent to them, which today means no template outside the 24-hour window. Agents still
see their messages and can answer them. An opt-in keyword (START, or the workspace's own)
clears the mark. Case, surrounding spaces and trailing punctuation do not matter, but a
keyword inside a longer message ("don't stop my order") changes nothing.

The newest keyword by the time the customer sent it decides, not the order in which the
webhooks are stored. A provider's retry, or a Meta webhook that batches several messages, can
bring STOP after the START that the customer sent later, and that STOP must not opt them out
again. The time of a message is the one that opens the 24-hour window
(``inbox.window.customer_wrote_at``): the provider's time of the message, or when it was
stored, whichever is earlier.
"""

from __future__ import annotations

import enum
import logging
import string
from datetime import datetime

from sqlalchemy import and_, case, select
from sqlalchemy.orm import Session

from channels.types import ChannelKind
from inbox.models import Channel, Contact, Conversation, Direction, Message
from inbox.window import customer_wrote_at
from inbox.workspace import WorkspaceSettings, workspace_settings

log = logging.getLogger(__name__)

OPT_OUT_KEYWORDS = frozenset({"STOP", "UNSUBSCRIBE"})
OPT_IN_KEYWORDS = frozenset({"START"})


class OptChange(str, enum.Enum):
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"


def keyword_of(text: str) -> str:
    """Return the message as a keyword: upper case, spaces collapsed, trailing punctuation cut."""
    return " ".join(text.split()).rstrip(string.punctuation + " ").upper()


def apply_opt_keywords(
    session: Session, contact: Contact, text: str, now: datetime, *, sent_at: datetime | None = None
) -> OptChange | None:
    """Mark ``contact`` opted out or in when ``text`` is a keyword, in the caller's transaction.

    ``sent_at`` is the message's ``InboundMessage.sent_at``, as stored on its row, and ``now``
    its ``created_at``. Without ``sent_at`` the keyword counts as sent at ``now``. A keyword
    older than another stored keyword of the contact changes nothing, because the newer one
    decided the state.

    Returns the contact's state after the keyword (``OPTED_OUT`` or ``OPTED_IN``), which for
    an older keyword is the state of the newer one. Returns None when the text is no keyword.
    A repeated STOP keeps the time of the first one.
    """
    keyword = keyword_of(text)
    if not keyword:
        return None
    settings = workspace_settings(session)
    change = _change_of(keyword, settings)
    if change is None:
        return None

    wrote_at = customer_wrote_at(sent_at, now)
    newer = _newer_keyword(session, contact, wrote_at, settings)
    if newer is not None:
        log.info(
            "contact %s sent %s before a later %s that arrived first, so it is ignored",
            contact.id, keyword, newer,
        )
        return OptChange.OPTED_OUT if contact.opted_out_at is not None else OptChange.OPTED_IN

    if change is OptChange.OPTED_OUT:
        if contact.opted_out_at is None:
            contact.opted_out_at = wrote_at
            contact.opted_out_keyword = keyword[:50]
            log.info("contact %s opted out of proactive messages with %s", contact.id, keyword)
    elif contact.opted_out_at is not None:
        contact.opted_out_at = None
        contact.opted_out_keyword = None
        log.info("contact %s opted back in to proactive messages with %s", contact.id, keyword)
    return change


def _change_of(keyword: str, settings: WorkspaceSettings) -> OptChange | None:
    if keyword in OPT_OUT_KEYWORDS | settings.opt_out_keywords:
        return OptChange.OPTED_OUT
    if keyword in OPT_IN_KEYWORDS | settings.opt_in_keywords:
        return OptChange.OPTED_IN
    return None


def _newer_keyword(
    session: Session, contact: Contact, wrote_at: datetime, settings: WorkspaceSettings
) -> str | None:
    """Return a keyword that the contact sent on WhatsApp after ``wrote_at``, or None.

    Only messages stored after ``wrote_at`` can have been sent after it, so the search reads
    the texts of those and matches the keywords here, as ``keyword_of`` normalizes them.
    """
    # customer_wrote_at of a stored message: its sent_at, unless that is missing or later
    # than the time the message was stored.
    message_wrote_at = case(
        (and_(Message.sent_at.is_not(None), Message.sent_at < Message.created_at), Message.sent_at),
        else_=Message.created_at,
    )
    texts = session.scalars(
        select(Message.text)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Channel, Channel.id == Conversation.channel_id)
        .where(
            Conversation.contact_id == contact.id,
            Channel.kind == ChannelKind.WHATSAPP.value,
            Message.direction == Direction.INBOUND.value,
            Message.created_at > wrote_at,
            message_wrote_at > wrote_at,
        )
    )
    for text in texts:
        keyword = keyword_of(text or "")
        if keyword and _change_of(keyword, settings) is not None:
            return keyword
    return None


def may_message_proactively(contact: Contact) -> bool:
    """Return whether a message the contact did not ask for may go to them."""
    return contact.opted_out_at is None
