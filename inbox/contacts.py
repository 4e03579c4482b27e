"""Contact resolution: one contact per email address or phone number, on every channel.

An identity is keyed by (kind, value) alone, not by channel, so the same phone number on
two WhatsApp senders (or on another phone channel) is the same contact. Phone numbers are
stored in E.164, so ``whatsapp:+4915...``, ``+49 15...`` and ``004915...`` are one identity.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.errors import ParseError
from channels.types import Address, AddressKind
from channels.whatsapp.phone import normalize_phone
from inbox.errors import InvalidInput, NotFound
from inbox.events import record_event
from inbox.models import Contact, ContactIdentity, Conversation
from inbox.serialize import conversation_to_dict

log = logging.getLogger(__name__)

NAME_LENGTH = 200
# Conversations whose open views a rename updates live; older ones show it on the next load.
RENAME_EVENT_LIMIT = 50


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
        contact = session.get(Contact, identity.contact_id, with_for_update=True)
        assert contact is not None
        _update_channel_name(contact, address.kind, display_name)
        return identity

    contact = Contact(name=display_name)
    identity = ContactIdentity(contact=contact, kind=address.kind.value, value=value)
    session.add(contact)
    session.add(identity)
    session.flush()
    return identity


def _update_channel_name(contact: Contact, kind: AddressKind, display_name: str | None) -> None:
    if contact.name_set_by_agent or not display_name or contact.name == display_name:
        return
    if contact.name and kind is not AddressKind.PHONE:
        return
    log.info("contact %s takes the name its %s address now shows", contact.id, kind.value)
    contact.name = display_name


def rename_contact(session: Session, contact_id: int, name: str | None) -> Contact:
    """Set the name an agent gave a contact, which channel names never overwrite after.

    An empty or None ``name`` clears the agent's name, so that the channel's display name
    fills it again with the next message. Records a ``conversation.updated`` event for the
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
    contact.name = name or None
    contact.name_set_by_agent = bool(name)
    session.flush()

    conversations = session.scalars(
        select(Conversation)
        .where(Conversation.contact_id == contact.id)
        .order_by(Conversation.id.desc())
        .limit(RENAME_EVENT_LIMIT)
    )
    for conversation in conversations:
        record_event(
            session, "conversation.updated", {"conversation": conversation_to_dict(conversation)}, conversation.id
        )
    return contact
