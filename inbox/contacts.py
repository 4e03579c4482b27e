"""Contacts: resolution of addresses to contacts, the profile agents read and edit, search.

An identity is keyed by (kind, value) alone, not by channel, so the same phone number on
two WhatsApp senders (or on another phone channel) is the same contact. Phone numbers are
stored in E.164, so ``whatsapp:+4915...``, ``+49 15...`` and ``004915...`` are one identity.

A contact merged into another (``inbox.contact_merge``) keeps its row with ``merged_into_id``
set and owns nothing any more; resolution, search and edits go to the kept contact.
"""

from __future__ import annotations

import functools
import logging
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from channels.errors import ParseError
from channels.types import Address, AddressKind
from channels.whatsapp.phone import normalize_phone
from inbox.conversations import ConversationFilter, Page, list_conversations, lock_conversations
from inbox.errors import Conflict, InvalidInput, NotFound
from inbox.events import record_event
from inbox.models import Contact, ContactIdentity, ContactMerge, Conversation
from inbox.serialize import agent_ref, conversation_to_dict, isoformat

log = logging.getLogger(__name__)

NAME_LENGTH = 200
# Conversations whose open views a rename updates live; older ones show it on the next load.
RENAME_EVENT_LIMIT = 50
NOTES_LENGTH = 10_000
# The size of the contacts.time_zone column; the longest IANA name has about 30 characters.
TIME_ZONE_LENGTH = 64
# The fields an agent may edit with update_contact.
CONTACT_FIELDS = ("name", "notes", "time_zone")
SEARCH_LIMIT = 50
# A merge points older merged contacts to the new kept one, so one hop is the rule. The
# limit guards against rows written by hand.
MAX_MERGE_HOPS = 5


def identity_value(address: Address) -> str:
    """Return the stored form of ``address``: E.164 for a phone number, else the value.

    A phone number that does not normalize is returned as given, so that nothing a
    channel accepted is lost here.
    """
    if address.kind is not AddressKind.PHONE:
        return address.value
    try:
        return normalize_phone(address.value)
    except ParseError:
        log.warning("phone identity kept as received because it is not E.164")
        return address.value


def resolve_contact(session: Session, address: Address) -> Contact:
    """Return the contact that owns ``address``, creating it when the address is new.

    See ``resolve_identity`` for the locking and naming rules.
    """
    return resolve_identity(session, address).contact


def resolve_identity(session: Session, address: Address) -> ContactIdentity:
    """Return the identity of ``address`` with its contact, creating both when it is new.

    A new identity is protected by a unique (kind, value) key: when another transaction
    creates the same one first, the flush raises ``IntegrityError`` and the caller retries.
    An existing contact is locked until the transaction ends. Its name follows the display
    name of a phone address (the WhatsApp profile name, which the customer chose) whenever
    that changes, and an email display name only fills an empty name, because mail
    programs send all sorts of names for one person. A name an agent set is never replaced.
    """
    display_name = (address.display_name or "").strip()[:NAME_LENGTH] or None
    value = identity_value(address)
    identity = session.scalar(
        select(ContactIdentity).where(
            ContactIdentity.kind == address.kind.value, ContactIdentity.value == value
        )
    )
    if identity is not None:
        # Lock the contact (PostgreSQL; SQLite already serializes writers) so that two of
        # its messages arriving at once thread one after the other, not into two new
        # conversations.
        contact = _lock_current_owner(session, identity)
        _update_channel_name(contact, address.kind, display_name)
        return identity

    contact = Contact(name=display_name)
    identity = ContactIdentity(contact=contact, kind=address.kind.value, value=value)
    session.add(contact)
    session.add(identity)
    session.flush()
    return identity


def _lock_current_owner(session: Session, identity: ContactIdentity) -> Contact:
    """Lock and return the contact that owns ``identity`` now.

    A merge may have moved the identity while this transaction waited for the lock: the
    locked contact then carries ``merged_into_id``, and the identity is read again so that
    the message lands on the kept contact.
    """
    for _ in range(MAX_MERGE_HOPS):
        contact = session.get(Contact, identity.contact_id, with_for_update=True)
        assert contact is not None
        if contact.merged_into_id is None:
            return contact
        session.refresh(identity)
    raise Conflict(f"Contact {identity.contact_id} is part of a merge chain that does not end.")


def takes_channel_name(contact: Any, kind: AddressKind, display_name: str | None) -> bool:
    """Return whether a message from an address of ``kind`` with ``display_name`` renames ``contact``.

    ``contact`` is a ``Contact`` or a row with its ``name`` and ``name_set_by_agent``.
    """
    if contact.name_set_by_agent or not display_name or contact.name == display_name:
        return False
    return not contact.name or kind is AddressKind.PHONE


def _update_channel_name(contact: Contact, kind: AddressKind, display_name: str | None) -> None:
    if not takes_channel_name(contact, kind, display_name):
        return
    log.info("contact %s takes the name its %s address now shows", contact.id, kind.value)
    contact.name = display_name


def rename_contact(
    session: Session, contact_id: int, name: str | None, channel_name: str | None = None
) -> Contact:
    """Set the name an agent gave a contact, which channel names never overwrite after.

    An empty or None ``name`` clears the agent's name: the contact takes ``channel_name``,
    the display name of the customer's newest message, and the channel's display name
    replaces it again with each message. Records a ``conversation.updated`` event for the
    contact's newest conversations. The caller commits. Returns the contact. Raises
    ``NotFound`` for an unknown contact and ``InvalidInput`` for a name that is too long.
    """
    contact = session.get(Contact, contact_id, with_for_update=True)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found", field="contact_id")
    name = (name or "").strip()
    if len(name) > NAME_LENGTH:
        raise InvalidInput(
            f"The name has {len(name)} characters; a contact name allows at most {NAME_LENGTH}.",
            field="name",
        )
    contact.name = name or (channel_name or "").strip()[:NAME_LENGTH] or None
    contact.name_set_by_agent = bool(name)
    session.flush()

    newest = session.scalars(
        select(Conversation.id)
        .where(Conversation.contact_id == contact.id)
        .order_by(Conversation.id.desc())
        .limit(RENAME_EVENT_LIMIT)
    ).all()
    locked = lock_conversations(session, newest)
    for conversation_id in newest:
        conversation = locked[conversation_id]
        record_event(
            session, "conversation.updated", {"conversation": conversation_to_dict(conversation)}, conversation.id
        )
    return contact


# ---- The profile ------------------------------------------------------------------------------


def get_contact_or_404(session: Session, contact_id: int) -> Contact:
    """Return the contact with its identities loaded. Raises ``NotFound``."""
    contact = session.scalar(
        select(Contact).where(Contact.id == contact_id).options(selectinload(Contact.identities))
    )
    if contact is None:
        raise NotFound(f"Contact {contact_id} not found.", field="contact_id")
    return contact


def identity_to_dict(identity: ContactIdentity) -> dict[str, Any]:
    """Describe one address; ``failing`` is set while mail to it bounces."""
    failing = None
    if identity.failing_since is not None:
        failing = {"since": isoformat(identity.failing_since), "reason": identity.failure_reason}
    return {
        "id": identity.id,
        "kind": identity.kind,
        "value": identity.value,
        "created_at": isoformat(identity.created_at),
        "failing": failing,
    }


def contact_to_dict(contact: Contact) -> dict[str, Any]:
    """Return a contact with its identities, notes, time zone and opt-out state, without conversations."""
    return {
        "id": contact.id,
        "name": contact.name,
        "name_set_by_agent": bool(contact.name_set_by_agent),
        "notes": contact.notes or "",
        "time_zone": contact.time_zone,
        "created_at": isoformat(contact.created_at),
        "merged_into_id": contact.merged_into_id,
        "opted_out": (
            {"since": isoformat(contact.opted_out_at), "keyword": contact.opted_out_keyword}
            if contact.opted_out_at else None
        ),
        "identities": [identity_to_dict(identity) for identity in contact.identities],
    }


def merge_to_dict(merge: ContactMerge) -> dict[str, Any]:
    return {
        "id": merge.id,
        "kept_contact_id": merge.kept_contact_id,
        "merged_contact_id": merge.merged_contact_id,
        "merged_name": merge.merged_name,
        "merged_identities": merge.merged_identities,
        "details": merge.details,
        "agent": agent_ref(merge.agent),
        "created_at": isoformat(merge.created_at),
    }


def list_contact_merges(session: Session, contact_id: int) -> list[ContactMerge]:
    """Return the merges that ended in this contact, newest first.

    That includes merges into a contact that was itself merged into this one later.
    """
    absorbed = select(Contact.id).where(Contact.merged_into_id == contact_id)
    return list(
        session.scalars(
            select(ContactMerge)
            .where(or_(ContactMerge.kept_contact_id == contact_id, ContactMerge.kept_contact_id.in_(absorbed)))
            .options(selectinload(ContactMerge.agent))
            .order_by(ContactMerge.id.desc())
        )
    )


def list_contact_conversations(session: Session, contact_id: int, limit: int = 20, cursor: str | None = None) -> Page:
    """Return one page of the contact's conversations, newest activity first.

    Conversations closed by a conversation merge are left out: their messages are in the
    conversation they were merged into. Raises ``InvalidInput`` for a bad limit or cursor.
    """
    return list_conversations(session, limit=limit, cursor=cursor, where=ConversationFilter(contact_id=contact_id))


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    """Return what a contact's list of conversations shows of one conversation."""
    channel = conversation.channel
    return {
        "id": conversation.id,
        "channel": {"id": channel.id, "kind": channel.kind, "name": channel.name},
        "subject": conversation.subject,
        "snippet": conversation.snippet,
        "status": conversation.status,
        "last_message_at": isoformat(conversation.last_message_at),
        "created_at": isoformat(conversation.created_at),
    }


# ---- Editing ----------------------------------------------------------------------------------


def update_contact(
    session: Session, contact_id: int, changes: Mapping[str, Any], channel_name: str | None = None
) -> Contact:
    """Apply an agent's edit of ``name``, ``notes`` and/or ``time_zone`` and return the contact.

    ``name`` and ``channel_name`` follow ``rename_contact``; ``notes`` is free text (None or empty clears it);
    ``time_zone`` is an IANA zone name such as "Europe/Berlin" (None or empty clears it).
    Records a ``contact.updated`` event, and for a new name the ``conversation.updated``
    events of ``rename_contact``. The caller commits. Raises ``InvalidInput`` for unknown or
    ill-typed fields and an unknown zone, ``NotFound`` and ``Conflict`` (code
    ``contact_merged``) for a contact that was merged into another.
    """
    unknown = sorted(set(changes) - set(CONTACT_FIELDS))
    if unknown:
        raise InvalidInput(
            f"Unknown field {unknown[0]!r}; a contact takes {', '.join(CONTACT_FIELDS)}.", field=unknown[0]
        )
    if not changes:
        raise InvalidInput(f"Give at least one of {', '.join(CONTACT_FIELDS)}.")
    for field in CONTACT_FIELDS:
        if field in changes and changes[field] is not None and not isinstance(changes[field], str):
            raise InvalidInput(f"{field} must be a string or null.", field=field)
    notes = (changes.get("notes") or "").strip()
    if len(notes) > NOTES_LENGTH:
        raise InvalidInput(
            f"The notes have {len(notes)} characters; a contact's notes allow at most {NOTES_LENGTH}.", field="notes"
        )
    time_zone = normalize_time_zone(changes.get("time_zone"))

    contact = session.get(Contact, contact_id, with_for_update=True)
    if contact is None:
        raise NotFound(f"Contact {contact_id} not found.", field="contact_id")
    if contact.merged_into_id is not None:
        raise Conflict(
            f"Contact {contact_id} was merged into contact {contact.merged_into_id}; edit that one.",
            field="contact_id", code="contact_merged",
        )
    if "name" in changes:
        rename_contact(session, contact_id, changes["name"], channel_name)
    if "notes" in changes:
        contact.notes = notes or None
    if "time_zone" in changes:
        contact.time_zone = time_zone
    session.flush()
    session.refresh(contact, ["identities"])
    record_event(session, "contact.updated", {"contact": contact_to_dict(contact)})
    return contact


def normalize_time_zone(value: str | None) -> str | None:
    """Return the IANA zone name in ``value`` with surrounding spaces removed, or None for none.

    Raises ``InvalidInput`` when ``zoneinfo`` has no zone of that name. A name spelled in
    other letter case ("america/new_york") is stored in the tz database's spelling, so it
    reads the same on every system.
    """
    name = (value or "").strip()
    if not name:
        return None
    message = (
        f"{name[:80]!r} is not a known IANA time zone; "
        "give a name such as Europe/Berlin or America/New_York, or leave it empty to clear it."
    )
    name = _time_zones_by_folded_name().get(name.casefold(), name)
    if len(name) > TIME_ZONE_LENGTH or name not in _available_time_zones():
        raise InvalidInput(message, field="time_zone")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(message, field="time_zone") from None
    return name


# Names some systems' tz folders contain that are no place's zone: "localtime" is the host's
# own setting and "Factory" marks a zone not configured.
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _available_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_PLACES


@functools.cache
def _time_zones_by_folded_name() -> dict[str, str]:
    """Return each zone name by its case-folded form, leaving out forms that two names share."""
    by_folded: dict[str, list[str]] = {}
    for name in _available_time_zones():
        by_folded.setdefault(name.casefold(), []).append(name)
    return {folded: names[0] for folded, names in by_folded.items() if len(names) == 1}


# ---- Search -----------------------------------------------------------------------------------

_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]+$")


def search_contacts(session: Session, query: str, limit: int = 20) -> list[Contact]:
    """Return up to ``limit`` contacts whose name, email address or phone number contains ``query``.

    Case does not matter. A query that looks like a phone number ("+49 151 2345") matches
    by its digits, so spaces and dashes need not match the stored E.164 form. Merged-away
    contacts are left out. Newest contacts come first. Raises ``InvalidInput`` for an empty
    query or a limit outside 1..50.
    """
    text = " ".join(query.split())
    if not text:
        raise InvalidInput("q must contain something to look for.", field="q")
    if len(text) > NAME_LENGTH:
        raise InvalidInput(f"q allows at most {NAME_LENGTH} characters.", field="q")
    if not 1 <= limit <= SEARCH_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {SEARCH_LIMIT}.", field="limit")

    needles = {text.lower()}
    digits = re.sub(r"\D", "", text)
    if _PHONE_LIKE.match(text) and len(digits) >= 3:
        needles.add(digits)
    conditions = []
    for needle in needles:
        pattern = f"%{_escape_like(needle)}%"
        conditions.append(func.lower(Contact.name).like(pattern, escape="\\"))
        conditions.append(
            exists().where(
                ContactIdentity.contact_id == Contact.id,
                func.lower(ContactIdentity.value).like(pattern, escape="\\"),
            )
        )
    return list(
        session.scalars(
            select(Contact)
            .where(Contact.merged_into_id.is_(None), or_(*conditions))
            .options(selectinload(Contact.identities))
            .order_by(Contact.id.desc())
            .limit(limit)
        )
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
