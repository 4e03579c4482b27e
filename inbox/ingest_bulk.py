"""Bulk ingestion of a batch of inbound mail: a few statements for the whole batch.

``ingest_batch`` in ``inbox.ingest`` stores an IMAP fetch batch through here, and a batch of
WhatsApp messages through ``inbox.ingest_bulk_whatsapp``, which plans its messages by the
WhatsApp threading rules and stores them with this module's ``ingest_planned``. The per-message
path costs about a dozen statements and an ORM flush for each mail, because the threading
lookups of one mail must see the rows of the mail before it. Here the lookups of a whole
batch are read with a few IN-queries, threading between mails of the same batch is decided
in memory, and the rows are written with one executemany INSERT per table.

The common mail takes this path: a new mail, or a reply by In-Reply-To or References to an
open conversation of its own contact or to a mail we sent. Every other mail goes through the
per-message ``_ingest`` at its place in the batch. Those are bounces of our mail, replies to a
pending, snoozed, resolved, merged or followed-up conversation, and mails that only the
Reply-To token, the subject reference or Outlook's Thread-Index could match. So are mails of a
merged contact, of an address marked failing, of a contact whose empty name the mail would
fill, and new conversations on a channel with a default team. The mails after such a mail
are planned again, so their lookups see what it stored. Events carry the same payloads as on the
per-message path: ``inbox.serialize`` builds them from plain rows with the attributes it reads.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from channels.types import InboundMessage
from inbox.bulk import insert_rows, one_of
from inbox.contacts import NAME_LENGTH, identity_value
from inbox.events import record_events
from inbox.ingest import IngestResult, _ingest, _media_label, _rfc_message_id, _store_attachments, clip, payload_digest
from inbox.media import pending_media_rows
from inbox.models import (
    Attachment,
    Channel,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    PayloadStatus,
    Priority,
    RawPayload,
    utcnow,
)
from inbox.serialize import conversation_to_dict, make_snippet, message_to_dict
from inbox.threader import (
    _SUBJECT_REFERENCE,
    _TOKEN_ADDRESS,
    MAX_ADDRESSES_CHECKED,
    MAX_REFERENCES_CHECKED,
    ThreadReason,
    thread_index_root,
)
from inbox.window import WINDOW, later

log = logging.getLogger(__name__)

_MISSING = object()


# Rows of the bulk path, stored or about to be, with the attributes ``inbox.serialize``
# reads. Model objects would do, but loading or building them costs more than all of a
# batch's statements together. An id of None marks a row that is not stored yet.
@dataclass(eq=False, slots=True)
class _ContactRow:
    name: str | None
    identities: list[_IdentityRow] = field(default_factory=list)
    id: int | None = None
    name_set_by_agent: bool = False
    opted_out_at: datetime | None = None
    opted_out_keyword: str | None = None
    merged_into_id: int | None = None


@dataclass(eq=False, slots=True)
class _IdentityRow:
    contact: _ContactRow
    kind: str
    value: str
    id: int | None = None
    contact_id: int | None = None
    failing_since: datetime | None = None
    failure_reason: str | None = None


@dataclass(eq=False, slots=True)
class _NewConversation:
    channel: Channel
    contact: Contact | _ContactRow
    subject: str | None
    created_at: datetime
    id: int | None = None
    contact_id: int | None = None
    updated_at: datetime | None = None
    status: str = ConversationStatus.OPEN.value
    priority: str = Priority.NORMAL.value
    snippet: str = ""
    unread_count: int = 0
    last_message_at: datetime | None = None
    last_inbound_at: datetime | None = None
    snoozed_until: datetime | None = None
    assignee: None = None
    team: None = None
    labels: tuple[()] = ()
    merged_into_id: int | None = None


@dataclass(eq=False, slots=True)
class _NewMessage:
    id: int
    conversation_id: int
    channel: Channel
    contact: Contact | _ContactRow
    contact_id: int
    subject: str | None
    text: str
    html: str | None
    created_at: datetime
    thread_reason: str
    automatic: str | None
    content: dict[str, Any] | None
    attachments: list[Attachment]
    visible_text: str | None
    direction: str = Direction.INBOUND.value
    delivery_status: str | None = None
    delivery_error: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    template_name: str | None = None
    template_language: str | None = None
    email_fallback: None = None
    reply_to: None = None
    parts: tuple[()] = ()
    # A message to a resolved conversation, which may answer the satisfaction question, takes
    # the per-message path, so a message stored here is never an answer.
    satisfaction_answer: None = None


@dataclass
class _Planned:
    """One mail of the batch that the bulk path stores, with every row it needs."""

    inbound: InboundMessage
    digest: str
    identity: _IdentityRow
    conversation: Conversation | _NewConversation
    created: bool
    reason: ThreadReason
    now: datetime
    attachments: list[Attachment] = field(default_factory=list)
    message_id: int | None = None
    # When the customer wrote a WhatsApp message, from which its window runs (see
    # inbox.window.customer_wrote_at). None for mail, whose conversations take ``now``.
    wrote_at: datetime | None = None


@dataclass
class _Known:
    """The stored rows that the mails of a batch refer to, read with a few IN-queries."""

    payloads: dict[str, tuple[int, str]]
    senders: dict[str, str | None]
    identities: dict[tuple[str, str], _IdentityRow]
    # Message-ID -> (direction, conversation id, contact id) of stored mail, last row winning.
    references: dict[str, list[tuple[str, int, int]]]
    conversations: dict[int, Conversation]
    followed_up: set[int] = field(default_factory=set)


def ingest_email_batch(
    session: Session,
    channel: Channel,
    inbounds: Sequence[InboundMessage],
) -> list[IngestResult]:
    """Store ``inbounds`` of an email channel in the caller's transaction and return a result each.

    Raises what a statement raises; the caller then stores the batch again mail by mail.
    """
    return ingest_planned(session, channel, inbounds, _read_known, _plan)


# Reads the stored rows that messages refer to: (session, channel, inbounds, digests).
KnownReader = Callable[[Session, Channel, Sequence[InboundMessage], Sequence[str]], Any]
# Plans the messages from an index on, given (channel, inbounds, digests, start, known). It
# returns the planned messages by index, and the index of the first one left to the
# per-message path, or None.
Planner = Callable[
    [Channel, Sequence[InboundMessage], Sequence[str], int, Any], tuple[dict[int, "_Planned"], int | None]
]


def ingest_planned(
    session: Session,
    channel: Channel,
    inbounds: Sequence[InboundMessage],
    read_known: KnownReader,
    plan: Planner,
) -> list[IngestResult]:
    """Store ``inbounds`` in bulk as ``plan`` decides, in the caller's transaction.

    A message that ``plan`` leaves to the per-message path is stored there, in its place, and
    the messages after it are planned again so that their lookups see it. Returns a result
    per message, in order. Raises what a statement raises.
    """
    digests = [payload_digest(inbound.raw) for inbound in inbounds]
    results: list[IngestResult | None] = [None] * len(inbounds)
    start = 0
    while start < len(inbounds):
        known = read_known(session, channel, inbounds[start:], digests[start:])
        planned, stop = plan(channel, inbounds, digests, start, known)
        _store(session, channel, planned, known)
        for index, item in planned.items():
            results[index] = IngestResult(
                item.message_id, item.conversation.id, duplicate=False, created_conversation=item.created
            )
        if stop is None:
            break
        results[stop] = _ingest(session, channel.id, inbounds[stop])
        start = stop + 1
    done = [result or IngestResult(None, None, duplicate=True) for result in results]
    log.info(
        "channel %s: stored %s of %s messages of a batch",
        channel.id, sum(1 for result in done if result.message_id is not None), len(inbounds),
    )
    return done


def read_stored(
    session: Session, channel: Channel, inbounds: Sequence[InboundMessage], digests: Sequence[str]
) -> tuple[dict[str, tuple[int, str]], dict[str, str | None]]:
    """Return the stored payloads of ``digests`` (digest -> id, status) and the sender of
    each stored message with a provider id of ``inbounds``."""
    payloads = {
        digest: (payload_id, status)
        for payload_id, digest, status in session.execute(
            select(RawPayload.id, RawPayload.digest, RawPayload.status).where(
                RawPayload.channel_id == channel.id, one_of(session, RawPayload.digest, set(digests))
            )
        )
    }
    senders = {
        provider_id: sender
        for provider_id, sender in session.execute(
            select(Message.provider_message_id, Message.sender_address).where(
                Message.channel_id == channel.id,
                one_of(session, Message.provider_message_id, {inbound.provider_message_id for inbound in inbounds}),
            )
        )
    }
    return payloads, senders


def load_conversations(session: Session, ids: set[int]) -> dict[int, Conversation]:
    """Return the conversations of ``ids`` with everything their events serialize."""
    if not ids:
        return {}
    return {
        conversation.id: conversation
        for conversation in session.scalars(
            select(Conversation)
            .where(one_of(session, Conversation.id, ids))
            .options(
                selectinload(Conversation.labels),
                joinedload(Conversation.assignee),
                joinedload(Conversation.team),
                joinedload(Conversation.contact).selectinload(Contact.identities),
            )
        )
    }


def _read_known(
    session: Session, channel: Channel, inbounds: Sequence[InboundMessage], digests: Sequence[str]
) -> _Known:
    payloads, senders = read_stored(session, channel, inbounds, digests)
    identities = read_identities(
        session, {(inbound.sender.kind.value, identity_value(inbound.sender)) for inbound in inbounds}
    )

    candidates = set()
    for inbound in inbounds:
        candidates.update(_header_candidates(inbound))
    references: dict[str, list[tuple[str, int, int]]] = {}
    conversations: dict[int, Conversation] = {}
    followed_up: set[int] = set()
    if candidates:
        for rfc_id, direction, conversation_id, contact_id in session.execute(
            select(Message.rfc_message_id, Message.direction, Conversation.id, Conversation.contact_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(one_of(session, Message.rfc_message_id, candidates), Conversation.channel_id == channel.id)
        ):
            references.setdefault(rfc_id, []).append((direction, conversation_id, contact_id))
        ids = {row[1] for rows in references.values() for row in rows}
        if ids:
            conversations = load_conversations(session, ids)
            followed_up = {
                previous_id
                for previous_id, contact_id in session.execute(
                    select(Conversation.previous_conversation_id, Conversation.contact_id).where(
                        one_of(session, Conversation.previous_conversation_id, ids)
                    )
                )
                if conversations[previous_id].contact_id == contact_id
            }
    return _Known(payloads, senders, identities, references, conversations, followed_up)


def read_identities(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _IdentityRow]:
    """Return the stored identities among ``keys`` (kind, value), each with its contact.

    On PostgreSQL the contacts are locked, as ``resolve_identity`` locks them, so that a
    concurrent mail of the same contact threads after this batch.
    """
    # By kind and value, the columns of the unique index, so that the index finds them.
    by_kind: dict[str, set[str]] = {}
    for kind, value in keys:
        by_kind.setdefault(kind, set()).add(value)
    owners = select(ContactIdentity.contact_id).where(or_(*(
        and_(ContactIdentity.kind == kind, one_of(session, ContactIdentity.value, values)) for kind, values in by_kind.items()
    )))
    contacts: dict[int, _ContactRow] = {}
    query = select(
        Contact.id, Contact.name, Contact.name_set_by_agent, Contact.opted_out_at, Contact.opted_out_keyword,
        Contact.merged_into_id,
    ).where(Contact.id.in_(owners))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    for row in session.execute(query):
        contacts[row.id] = _ContactRow(
            name=row.name, id=row.id, name_set_by_agent=bool(row.name_set_by_agent), opted_out_at=row.opted_out_at,
            opted_out_keyword=row.opted_out_keyword, merged_into_id=row.merged_into_id,
        )
    if not contacts:
        return {}

    # Every identity of those contacts, in the order of Contact.identities, which
    # inbox.serialize reads for the contact's address on the channel.
    found: dict[tuple[str, str], _IdentityRow] = {}
    for row in session.execute(
        select(
            ContactIdentity.id, ContactIdentity.contact_id, ContactIdentity.kind, ContactIdentity.value,
            ContactIdentity.failing_since, ContactIdentity.failure_reason,
        )
        .where(one_of(session, ContactIdentity.contact_id, contacts))
        .order_by(ContactIdentity.id)
    ):
        contact = contacts[row.contact_id]
        identity = _IdentityRow(
            contact, row.kind, row.value, id=row.id, contact_id=row.contact_id,
            failing_since=row.failing_since, failure_reason=row.failure_reason,
        )
        contact.identities.append(identity)
        if (row.kind, row.value) in keys:
            found[(row.kind, row.value)] = identity
    return found


def _header_candidates(inbound: InboundMessage) -> list[str]:
    """Return the Message-IDs a mail refers to, in the order ``inbox.threader`` tries them."""
    candidates = [inbound.in_reply_to] if inbound.in_reply_to else []
    candidates.extend(reversed(inbound.references[-MAX_REFERENCES_CHECKED:]))
    return candidates


def _plan(
    channel: Channel,
    inbounds: Sequence[InboundMessage],
    digests: Sequence[str],
    start: int,
    known: _Known,
) -> tuple[dict[int, _Planned], int | None]:
    """Decide what each mail from ``start`` on becomes, until one needs the per-message path.

    Returns the planned mails by their index, which leaves out duplicates, and the index of
    the mail that needs the per-message path, or None.
    """
    planned: dict[int, _Planned] = {}
    stored_digests: set[str] = set()
    senders: dict[str, str | None] = {}
    contacts: dict[tuple[str, str], _IdentityRow] = {}
    by_rfc_id: dict[str, _Planned] = {}
    for index in range(start, len(inbounds)):
        digest = digests[index]
        inbound = deduplicate(channel, inbounds[index], digest, known, stored_digests, senders)
        if inbound is None:
            continue

        key = (inbound.sender.kind.value, identity_value(inbound.sender))
        identity = contacts.get(key) or known.identities.get(key)
        display_name = (inbound.sender.display_name or "").strip()[:NAME_LENGTH] or None
        if identity is not None and (
            identity.contact.merged_into_id is not None
            or (inbound.automatic is None and identity.failing_since is not None)
            # An email display name fills an empty name (see resolve_identity).
            or (display_name and not identity.contact.name and not identity.contact.name_set_by_agent)
        ):
            return planned, index

        thread = _thread(channel, inbound, identity, known, by_rfc_id)
        if thread is None:
            return planned, index
        conversation, reason = thread
        if conversation is None and channel.default_team_id is not None:
            return planned, index
        if inbound.bounce is not None and inbound.bounce.original_message_id or inbound.media:
            return planned, index

        if identity is None:
            contact = _ContactRow(name=display_name)
            identity = _IdentityRow(contact=contact, kind=key[0], value=key[1])
            contact.identities.append(identity)
            contacts[key] = identity
        now = utcnow()
        created = conversation is None
        if conversation is None:
            conversation = _NewConversation(channel, identity.contact, clip(inbound.subject, 998), now)
        item = _Planned(inbound, digest, identity, conversation, created, reason, now)
        planned[index] = item
        stored_digests.add(digest)
        senders[inbound.provider_message_id] = inbound.sender.value
        if not inbound.provider_message_id.startswith("sha256:"):
            by_rfc_id[inbound.provider_message_id] = item
    return planned, None


def deduplicate(
    channel: Channel,
    inbound: InboundMessage,
    digest: str,
    known: Any,
    stored_digests: set[str],
    senders: dict[str, str | None],
) -> InboundMessage | None:
    """Return the message to store, or None when it is stored already or earlier in the batch.

    ``known`` carries the stored ``payloads`` and ``senders``; ``stored_digests`` and
    ``senders`` are those of the messages planned before this one. A message whose provider
    id another sender used already is returned under its content hash, as the per-message
    path stores it.
    """
    payload = known.payloads.get(digest)
    if digest in stored_digests or (payload is not None and payload[1] == PayloadStatus.PROCESSED.value):
        return None
    sender = senders.get(inbound.provider_message_id, known.senders.get(inbound.provider_message_id, _MISSING))
    if sender is _MISSING:
        return inbound
    if sender == inbound.sender.value or (sender is None and inbound.sender.value == channel.address):
        return None
    return dataclasses.replace(inbound, provider_message_id="sha256:" + digest)


def _thread(
    channel: Channel,
    inbound: InboundMessage,
    identity: _IdentityRow | None,
    known: _Known,
    by_rfc_id: dict[str, _Planned],
) -> tuple[Conversation | _NewConversation | None, ThreadReason] | None:
    """Return the conversation (None for a new one) and rule of a mail, or None when only
    the per-message path can tell."""
    contact_id = identity.contact_id if identity is not None else None
    candidates = _header_candidates(inbound)
    for position, candidate in enumerate(candidates):
        reason = (
            ThreadReason.IN_REPLY_TO if position == 0 and candidate == inbound.in_reply_to
            else ThreadReason.REFERENCES
        )
        earlier = by_rfc_id.get(candidate)
        if earlier is not None and identity is not None and earlier.identity.contact is identity.contact:
            return earlier.conversation, reason
        conversation_id = None
        for direction, stored_conversation_id, stored_contact_id in known.references.get(candidate, ()):
            if direction == Direction.OUTBOUND.value or (contact_id is not None and stored_contact_id == contact_id):
                conversation_id = stored_conversation_id
        if conversation_id is None:
            continue
        conversation = known.conversations[conversation_id]
        if (
            conversation.status != ConversationStatus.OPEN.value
            or conversation.merged_into_id is not None
            or conversation.id in known.followed_up
        ):
            return None
        return conversation, reason
    if _may_match_later_rules(channel, inbound):
        return None
    return None, ThreadReason.NEW


def _may_match_later_rules(channel: Channel, inbound: InboundMessage) -> bool:
    """Return whether the Reply-To token, subject reference or Thread-Index rule could apply."""
    if thread_index_root(inbound.thread_index) is not None:
        return True
    if _SUBJECT_REFERENCE.search(inbound.subject or ""):
        return True
    local, _, domain = channel.address.lower().rpartition("@")
    for address in [*inbound.recipients, *inbound.cc][:MAX_ADDRESSES_CHECKED]:
        address_local, _, address_domain = address.value.lower().rpartition("@")
        match = _TOKEN_ADDRESS.match(address_local)
        if match is not None and match["base"] == local and address_domain == domain:
            return True
    return False


def _store(session: Session, channel: Channel, planned: dict[int, _Planned], known: Any) -> None:
    """Write the rows of the planned messages, a statement per table, and record their events.

    ``known.payloads`` names the stored payloads of the messages' digests (see ``read_stored``).
    """
    if not planned:
        return
    items = list(planned.values())

    # A payload already stored with the same bytes is one that waits in the webhook queue, or
    # one that failed before (a crash, a bug fixed since) and is retried. Its row is kept and
    # marked processed, so the payload keeps its id and the time it was received.
    stored_ids = {item.digest: known.payloads[item.digest][0] for item in items if item.digest in known.payloads}
    if stored_ids:
        session.execute(
            update(RawPayload)
            .where(one_of(session, RawPayload.id, stored_ids.values()))
            .values(status=PayloadStatus.PROCESSED.value, error=None)
            .execution_options(synchronize_session=False)
        )

    _insert_contacts(session, items)
    new_items = [item for item in items if item.digest not in stored_ids]
    new_ids = iter(_insert(session, RawPayload, [
        {
            "channel_id": channel.id, "format": item.inbound.raw_format, "digest": item.digest,
            "body": item.inbound.raw, "status": PayloadStatus.PROCESSED.value,
        }
        for item in new_items
    ]) if new_items else [])
    payload_ids = [stored_ids[item.digest] if item.digest in stored_ids else next(new_ids) for item in items]

    created = _insert_conversations(session, channel, items)
    _insert_messages(session, channel, items, payload_ids)
    _record_events_in_order(session, channel, items, created)


def _insert_contacts(session: Session, items: list[_Planned]) -> None:
    """Insert the contacts and identities that the batch's mails are the first from."""
    new_identities = list({
        id(item.identity): item.identity for item in items if item.identity.id is None
    }.values())
    if new_identities:
        contact_ids = _insert(session, Contact, [
            {"name": identity.contact.name, "name_set_by_agent": False} for identity in new_identities
        ])
        for identity, contact_id in zip(new_identities, contact_ids):
            identity.contact.id = identity.contact_id = contact_id
        _insert(session, ContactIdentity, [
            {"contact_id": identity.contact_id, "kind": identity.kind, "value": identity.value}
            for identity in new_identities
        ])


def _insert_conversations(session: Session, channel: Channel, items: list[_Planned]) -> list[_NewConversation]:
    """Insert the batch's new conversations with the state of their last mail, and return them."""
    created = [item.conversation for item in items if item.created and isinstance(item.conversation, _NewConversation)]
    last: dict[int, _Planned] = {}
    counts: dict[int, int] = {}
    inbound_at: dict[int, datetime] = {}
    for item in items:
        last[id(item.conversation)] = item
        counts[id(item.conversation)] = counts.get(id(item.conversation), 0) + 1
        inbound_at[id(item.conversation)] = later(inbound_at.get(id(item.conversation)), item.wrote_at or item.now)
    conversation_ids = _insert(session, Conversation, [
        {
            "channel_id": channel.id, "contact_id": conversation.contact.id, "subject": conversation.subject,
            "status": conversation.status, "priority": conversation.priority,
            "snippet": _snippet(last[id(conversation)].inbound), "unread_count": counts[id(conversation)],
            "last_message_at": last[id(conversation)].now, "last_inbound_at": inbound_at[id(conversation)],
            "created_at": conversation.created_at, "updated_at": last[id(conversation)].now,
        }
        for conversation in created
    ]) if created else []
    for conversation, conversation_id in zip(created, conversation_ids):
        conversation.id = conversation_id
        conversation.contact_id = conversation.contact.id
    return created


def _insert_messages(session: Session, channel: Channel, items: list[_Planned], payload_ids: list[int]) -> None:
    """Store the attachment files, then insert the messages and attachment rows.

    WhatsApp media get pending rows, which the media fetcher downloads after the commit.
    """
    for item in items:
        item.attachments = _store_attachments(session, channel, item.inbound)
        item.attachments += pending_media_rows(item.inbound.media, item.now)
    message_ids = _insert(session, Message, [
        {
            "conversation_id": item.conversation.id,
            "channel_id": channel.id,
            "direction": Direction.INBOUND.value,
            "contact_id": item.identity.contact.id,
            "provider_message_id": item.inbound.provider_message_id,
            "rfc_message_id": _rfc_message_id(item.inbound),
            "in_reply_to": clip(item.inbound.in_reply_to, 998),
            "references": list(item.inbound.references),
            "subject": clip(item.inbound.subject, 998),
            "text": item.inbound.text or "",
            "html": item.inbound.html,
            "sender_address": clip(item.inbound.sender.value, 320),
            "sent_at": item.inbound.sent_at,
            "created_at": item.now,
            "raw_payload_id": payload_id,
            "automatic": item.inbound.automatic,
            "thread_reason": item.reason.value,
            "thread_index_root": thread_index_root(item.inbound.thread_index),
            "content": item.inbound.content,
        }
        for item, payload_id in zip(items, payload_ids)
    ])
    attachments = [(message_id, row) for item, message_id in zip(items, message_ids) for row in item.attachments]
    if attachments:
        attachment_ids = _insert(session, Attachment, [
            {
                "message_id": message_id, "filename": row.filename, "content_type": row.content_type,
                "size": row.size, "content_id": row.content_id, "inline": bool(row.inline),
                "storage_key": row.storage_key, "omitted_reason": row.omitted_reason, "fetch_attempts": 0,
                "source_url": row.source_url, "fetch_status": row.fetch_status, "next_fetch_at": row.next_fetch_at,
            }
            for message_id, row in attachments
        ])
        for (_, row), attachment_id in zip(attachments, attachment_ids):
            row.id = attachment_id

    for item, message_id in zip(items, message_ids):
        item.message_id = message_id


def _record_events_in_order(
    session: Session, channel: Channel, items: list[_Planned], created: list[_NewConversation]
) -> None:
    """Record each mail's two events, with the conversation as it was right after that mail.

    The mails are replayed in order on the conversation rows, as the per-message path
    changes them, and the new conversations start again from no unread message.
    """
    for conversation in created:
        conversation.unread_count = 0
    events: list[tuple[str, dict[str, Any], int | None]] = []
    for item in items:
        assert item.message_id is not None
        conversation = item.conversation
        conversation.last_message_at = item.now
        conversation.last_inbound_at = later(conversation.last_inbound_at, item.wrote_at or item.now)
        conversation.updated_at = item.now
        conversation.unread_count = (conversation.unread_count or 0) + 1
        conversation.snippet = _snippet(item.inbound)
        message = _NewMessage(
            item.message_id, conversation.id, channel, item.identity.contact, item.identity.contact.id,
            clip(item.inbound.subject, 998), item.inbound.text or "", item.inbound.html, item.now,
            item.reason.value, item.inbound.automatic, item.inbound.content, item.attachments,
            item.inbound.visible_text,
        )
        # The message is the contact's newest, so a WhatsApp window closes a day after the
        # conversation's newest one, which saves the window's query.
        conversation_data = conversation_to_dict(
            conversation, conversation.last_inbound_at + WINDOW, session=session  # type: ignore[arg-type]
        )
        kind = "conversation.created" if item.created else "conversation.updated"
        events.append((kind, {"conversation": conversation_data}, conversation.id))
        events.append((
            "message.created",
            {"message": message_to_dict(message), "conversation": conversation_data},  # type: ignore[arg-type]
            conversation.id,
        ))
    # Conversations stored before were changed on their loaded model objects.
    session.flush()
    record_events(session, events)


def _insert(session: Session, model: type, rows: list[dict[str, Any]]) -> list[int]:
    return insert_rows(session, model.__table__, rows)  # type: ignore[attr-defined]


def _snippet(inbound: InboundMessage) -> str:
    return make_snippet(inbound.text or inbound.subject or _media_label(inbound))

