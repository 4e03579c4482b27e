"""Contact resolution: one contact per email address or phone number."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.types import Address
from inbox.models import Contact, ContactIdentity


def resolve_contact(session: Session, address: Address) -> Contact:
    """Return the contact that owns ``address``, creating it when the address is new.

    See ``resolve_identity`` for the locking and naming rules.
    """
    return resolve_identity(session, address).contact


def resolve_identity(session: Session, address: Address) -> ContactIdentity:
    """Return the identity of ``address`` with its contact, creating both when it is new.

    A new identity is protected by a unique (kind, value) key: when another transaction
    creates the same one first, the flush raises ``IntegrityError`` and the caller retries.
    A display name fills an empty contact name but never overwrites one. An existing contact
    is locked until the transaction ends.
    """
    display_name = (address.display_name or "")[:200] or None
    identity = session.scalar(
        select(ContactIdentity).where(
            ContactIdentity.kind == address.kind.value, ContactIdentity.value == address.value
        )
    )
    if identity is not None:
        # Lock the contact (PostgreSQL; SQLite already serializes writers) so that two of
        # its messages arriving at once thread one after the other, not into two new
        # conversations.
        contact = session.get(Contact, identity.contact_id, with_for_update=True)
        assert contact is not None
        if not contact.name and display_name:
            contact.name = display_name
        return identity

    contact = Contact(name=display_name)
    identity = ContactIdentity(contact=contact, kind=address.kind.value, value=address.value)
    session.add(contact)
    session.add(identity)
    session.flush()
    return identity
