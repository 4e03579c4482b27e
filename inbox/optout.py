"""Opting out of proactive WhatsApp messages with STOP, and back in with START.

A customer who writes an opt-out keyword as the whole message (STOP, UNSUBSCRIBE, or one of
the workspace's own) is marked on their contact as opted out. Nothing that they did not
request is sent to them, which today means no template outside the 24-hour window. Agents still
see their messages and can answer them. An opt-in keyword (START, or the workspace's own)
clears the mark. Case, surrounding spaces and trailing punctuation do not matter, but a
keyword inside a longer message ("don't stop my order") changes nothing.
"""

from __future__ import annotations

import enum
import logging
import string
from datetime import datetime

from sqlalchemy.orm import Session

from inbox.models import Contact
from inbox.workspace import workspace_settings

log = logging.getLogger(__name__)

OPT_OUT_KEYWORDS = frozenset({"STOP", "UNSUBSCRIBE"})
OPT_IN_KEYWORDS = frozenset({"START"})


class OptChange(str, enum.Enum):
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"


def keyword_of(text: str) -> str:
    """Return the message as a keyword: upper case, spaces collapsed, trailing punctuation cut."""
    return " ".join(text.split()).rstrip(string.punctuation + " ").upper()


def apply_opt_keywords(session: Session, contact: Contact, text: str, now: datetime) -> OptChange | None:
    """Mark ``contact`` opted out or in when ``text`` is a keyword, in the caller's transaction.

    Returns the change, or None when the text is no keyword. A repeated STOP keeps the time
    of the first one.
    """
    keyword = keyword_of(text)
    if not keyword:
        return None
    settings = workspace_settings(session)
    if keyword in OPT_OUT_KEYWORDS | settings.opt_out_keywords:
        if contact.opted_out_at is None:
            contact.opted_out_at = now
            contact.opted_out_keyword = keyword[:50]
            log.info("contact %s opted out of proactive messages with %s", contact.id, keyword)
        return OptChange.OPTED_OUT
    if keyword in OPT_IN_KEYWORDS | settings.opt_in_keywords:
        if contact.opted_out_at is not None:
            contact.opted_out_at = None
            contact.opted_out_keyword = None
            log.info("contact %s opted back in to proactive messages with %s", contact.id, keyword)
        return OptChange.OPTED_IN
    return None


def may_message_proactively(contact: Contact) -> bool:
    """Return whether a message the contact did not ask for may go to them."""
    return contact.opted_out_at is None
