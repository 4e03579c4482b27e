"""Merging two contacts that are one person, such as a customer on WhatsApp and by email.

``merge_contacts`` moves everything of the merged contact to the kept one in the caller's
transaction. Its identities move, so later messages to either address resolve to the kept
contact. Its conversations move, and their messages name the kept contact. Its notes are
appended. An opt-out from proactive WhatsApp messages of either contact wins, with the
earlier time. The kept contact's time zone stays, or it takes the merged one's when it has
none. The kept contact's name stays, unless it has none, or only a channel's name
where the merged contact has one an agent set.

The merged contact's row stays, owning nothing, with ``merged_into_id`` set. A
``ContactMerge`` row records who merged what and when, with the merged contact's old name
and addresses; its unique key on the merged contact makes a repeated merge a conflict, not a
second move. Every conversation of the kept contact gets a ``contact_merged`` activity, and
the events ``contact.merged`` and ``conversation.updated`` (for the newest conversations)
tell open inboxes.

Two contacts with an address of the same kind (two email addresses, two phone numbers) do
not merge: a reply goes to the contact's one address of the channel's kind, so a second one
would take replies away from the address the customer wrote from.
"""

from __future__ import annotations

import logging

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, selectinload

from inbox.activity import activity_to_dict
from inbox.contacts import RENAME_EVENT_LIMIT, contact_to_dict, merge_to_dict
from inbox.conversations import lock_conversations
from inbox.errors import Conflict, InboxError, NotFound
from inbox.events import record_event
from inbox.models import (
    Agent, Contact, ContactIdentity, ContactMerge, Conversation, ConversationActivity, Message, utcnow,
)
from inbox.serialize import conversation_to_dict, isoformat

log = logging.getLogger(__name__)

CONTACT_MERGED = "contact_merged"


class CannotMerge(InboxError):
    """Two contacts that the request names correctly but that cannot become one."""

    code = "address_kind_taken"


def merge_contacts(session: Session, actor: Agent, kept_id: int, merged_id: int) -> ContactMerge:
    """Merge contact ``merged_id`` into ``kept_id`` and return the merge record.

    Both contacts, and those merged into ``merged_id`` before, are locked first, in id
    order. The caller commits. Raises ``NotFound`` for a missing
    contact, and ``CannotMerge`` when both have an address of one kind. Raises ``Conflict``
    with the code ``same_contact`` for a merge into itself, ``already_merged`` for a repeated
    merge, and ``contact_merged`` when the kept contact was merged away.
    """
    if kept_id == merged_id:
        raise Conflict("A contact cannot be merged into itself.", field="other_id", code="same_contact")
    # Every contact this merge writes is locked in one statement in id order: the two named
    # ones and the contacts merged into the merged one earlier, whose pointer moves below.
    # Two merges that lock in one order cannot deadlock.
    # NOTE: a contact merged into the merged one while this statement waited is missing from
    # the set, so a deadlock stays possible in that rare case. The API retries it.
    locked = {
        contact.id: contact
        for contact in session.scalars(
            select(Contact)
            .where(or_(Contact.id.in_([kept_id, merged_id]), Contact.merged_into_id == merged_id))
            .options(selectinload(Contact.identities))
            .order_by(Contact.id)
            .with_for_update()
        )
    }
    kept = locked.get(kept_id)
    merged = locked.get(merged_id)
    if kept is None:
        raise NotFound(f"Contact {kept_id} not found.", field="contact_id")
    if merged is None:
        raise NotFound(f"Contact {merged_id} not found.", field="other_id")
    if merged.merged_into_id is not None:
        raise Conflict(
            f"Contact {merged_id} was already merged into contact {merged.merged_into_id}.",
            field="other_id", code="already_merged",
        )
    if kept.merged_into_id == merged.id:
        # The same merge asked for the other way round.
        raise Conflict(
            f"Contact {kept_id} was already merged into contact {merged_id}.", field="contact_id", code="already_merged"
        )
    if kept.merged_into_id is not None:
        raise Conflict(
            f"Contact {kept_id} was merged into contact {kept.merged_into_id}; merge into that one instead.",
            field="contact_id", code="contact_merged",
        )
    _check_address_kinds(kept, merged)

    # Step 1: the fields of the contact rows, flushed before the bulk updates below.
    old_name = merged.name
    old_identities = [{"kind": identity.kind, "value": identity.value} for identity in merged.identities]
    opted_out = (
        {"since": isoformat(merged.opted_out_at), "keyword": merged.opted_out_keyword}
        if merged.opted_out_at else None
    )
    notes_moved = bool(merged.notes)
    _combine_into(kept, merged)
    merged.merged_into_id = kept.id
    merged.notes = None
    session.flush()

    # Step 2: move every row that points to the merged contact.
    moved_ids = list(
        session.scalars(select(Conversation.id).where(Conversation.contact_id == merged.id).order_by(Conversation.id))
    )
    session.execute(
        update(ContactIdentity).where(ContactIdentity.contact_id == merged.id).values(contact_id=kept.id)
    )
    session.execute(update(Conversation).where(Conversation.contact_id == merged.id).values(contact_id=kept.id))
    message_count = session.execute(
        update(Message).where(Message.contact_id == merged.id).values(contact_id=kept.id)
    ).rowcount
    # Contacts merged into this one earlier point to the kept contact from now on.
    session.execute(update(Contact).where(Contact.merged_into_id == merged.id).values(merged_into_id=kept.id))
    # The bulk updates bypassed the loaded objects, so everything is read again.
    session.expire_all()

    # Step 3: the record, an activity on each of the kept contact's conversations, the events.
    record = ContactMerge(
        kept_contact_id=kept.id,
        merged_contact_id=merged.id,
        agent_id=actor.id,
        merged_name=old_name,
        merged_identities=old_identities,
        details={
            "conversation_ids": moved_ids,
            "message_count": message_count,
            "notes_moved": notes_moved,
            "opted_out": opted_out,
        },
        created_at=utcnow(),
    )
    session.add(record)
    session.flush()
    _record_activities(session, actor, record, set(moved_ids))
    record_event(
        session,
        "contact.merged",
        {"contact": contact_to_dict(kept), "merged_contact_id": merged.id, "merge": merge_to_dict(record)},
    )
    log.info(
        "agent %s merged contact %s into %s (%s conversations, %s messages)",
        actor.id, merged.id, kept.id, len(moved_ids), message_count,
    )
    return record


def _check_address_kinds(kept: Contact, merged: Contact) -> None:
    kept_kinds = {identity.kind: identity for identity in kept.identities}
    for identity in merged.identities:
        if identity.kind not in kept_kinds:
            continue
        word = "an email address" if identity.kind == "email" else f"a {identity.kind} number"
        raise CannotMerge(
            f"Both contacts have {word} ({kept_kinds[identity.kind].value} and {identity.value}). "
            "A contact keeps one address of each kind, because replies go to it, so these two cannot be merged.",
            field="other_id",
        )


def _combine_into(kept: Contact, merged: Contact) -> None:
    """Carry the merged contact's name, notes, time zone and opt-out over to the kept one."""
    if merged.name and (not kept.name or (merged.name_set_by_agent and not kept.name_set_by_agent)):
        kept.name = merged.name
        kept.name_set_by_agent = merged.name_set_by_agent
    if merged.notes:
        kept.notes = f"{kept.notes}\n\n{merged.notes}" if kept.notes else merged.notes
    if not kept.time_zone and merged.time_zone:
        kept.time_zone = merged.time_zone
    # An opt-out of either address is kept, because the customer sent STOP on one of them.
    if merged.opted_out_at and (kept.opted_out_at is None or merged.opted_out_at < kept.opted_out_at):
        kept.opted_out_at = merged.opted_out_at
        kept.opted_out_keyword = merged.opted_out_keyword


def _record_activities(session: Session, actor: Agent, record: ContactMerge, moved_ids: set[int]) -> None:
    locked = lock_conversations(
        session, session.scalars(select(Conversation.id).where(Conversation.contact_id == record.kept_contact_id))
    )
    conversations = sorted(
        locked.values(), key=lambda conversation: (conversation.last_message_at, conversation.id), reverse=True
    )
    now = utcnow()
    rows = []
    for conversation in conversations:
        row = ConversationActivity(
            conversation_id=conversation.id,
            agent=actor,
            action=CONTACT_MERGED,
            details={
                "merge_id": record.id,
                "kept_contact_id": record.kept_contact_id,
                "merged_contact_id": record.merged_contact_id,
                "merged_name": record.merged_name,
                "merged_identities": record.merged_identities,
                "moved": conversation.id in moved_ids,
            },
            created_at=now,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    # Open views of older conversations show the kept contact when they load them again.
    for conversation, row in list(zip(conversations, rows))[:RENAME_EVENT_LIMIT]:
        record_event(
            session,
            "conversation.updated",
            {"conversation": conversation_to_dict(conversation), "activities": [activity_to_dict(row)]},
            conversation.id,
        )
