"""Bulk ingestion of a batch of WhatsApp messages: a few statements for the whole batch.

A WhatsApp message joins its contact's newest unresolved conversation on the channel, or
starts a conversation (``inbox.threader.thread_whatsapp``). The webhook worker stores its
batches through here, with the statements of ``inbox.ingest_bulk``: the lookups of the whole
batch in a few IN-queries, threading within the batch decided in memory, one INSERT per table.

The common message takes this path: a message from a new contact, from a contact without a
conversation on the channel, or into an open conversation. Every other message goes through
the per-message ``_ingest`` at its place in the batch, because that path applies rules the bulk
path does not. Those are: a contact whose conversations on the channel are all resolved (the
reopen window, satisfaction answers), a pending, snoozed or merged conversation, a reply or
reaction to a message, an opt-out or opt-in keyword, a contact with replies held for the
24-hour window, a merged contact, a failing address, a profile name that renames the contact,
and a new conversation on a channel with a default team. The messages after such a message
are planned again, so their lookups see what it stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from channels.types import InboundMessage
from inbox.bulk import one_of
from inbox.contacts import NAME_LENGTH, identity_value, takes_channel_name
from inbox.ingest import IngestResult, clip
from inbox.ingest_bulk import (
    _ContactRow,
    _IdentityRow,
    _NewConversation,
    _Planned,
    deduplicate,
    ingest_planned,
    load_conversations,
    read_identities,
    read_stored,
)
from inbox.models import Channel, Conversation, ConversationStatus, Message, OutboxItem, OutboxStatus, utcnow
from inbox.optout import OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS, keyword_of
from inbox.threader import ThreadReason
from inbox.window import customer_wrote_at
from inbox.workspace import workspace_settings


@dataclass
class _Known:
    """The stored rows that the messages of a batch refer to, read with a few queries."""

    payloads: dict[str, tuple[int, str]]
    senders: dict[str, str | None]
    identities: dict[tuple[str, str], _IdentityRow]
    # Contact id -> the contact's newest unresolved conversation on the channel.
    open_conversations: dict[int, Conversation] = field(default_factory=dict)
    # Ids of the contacts with any conversation on the channel.
    with_conversations: set[int] = field(default_factory=set)
    # Ids of the contacts with replies held on the channel until they write.
    with_held_replies: set[int] = field(default_factory=set)
    # The opt-out and opt-in keywords, upper case.
    keywords: frozenset[str] = frozenset()


def ingest_whatsapp_batch(
    session: Session,
    channel: Channel,
    inbounds: Sequence[InboundMessage],
) -> list[IngestResult]:
    """Store ``inbounds`` of a WhatsApp channel in the caller's transaction and return a result each.

    Raises what a statement raises; the caller then stores the batch again message by message.
    """
    return ingest_planned(session, channel, inbounds, _read_known, _plan)


def _read_known(
    session: Session, channel: Channel, inbounds: Sequence[InboundMessage], digests: Sequence[str]
) -> _Known:
    payloads, senders = read_stored(session, channel, inbounds, digests)
    identities = read_identities(
        session, {(inbound.sender.kind.value, identity_value(inbound.sender)) for inbound in inbounds}
    )
    settings = workspace_settings(session)
    known = _Known(
        payloads, senders, identities,
        keywords=OPT_OUT_KEYWORDS | settings.opt_out_keywords | OPT_IN_KEYWORDS | settings.opt_in_keywords,
    )
    contact_ids = {identity.contact_id for identity in identities.values() if identity.contact_id is not None}
    if not contact_ids:
        return known

    # As find_whatsapp_conversation picks it: the newest conversation that is not resolved.
    newest_open: dict[int, int] = {}
    for contact_id, conversation_id in session.execute(
        select(
            Conversation.contact_id,
            func.max(Conversation.id).filter(Conversation.status != ConversationStatus.RESOLVED.value),
        )
        .where(Conversation.channel_id == channel.id, one_of(session, Conversation.contact_id, contact_ids))
        .group_by(Conversation.contact_id)
    ):
        known.with_conversations.add(contact_id)
        if conversation_id is not None:
            newest_open[contact_id] = conversation_id
    conversations = load_conversations(session, set(newest_open.values()))
    known.open_conversations = {
        contact_id: conversations[conversation_id] for contact_id, conversation_id in newest_open.items()
    }

    known.with_held_replies = set(session.scalars(
        select(Conversation.contact_id)
        .join(Message, Message.conversation_id == Conversation.id)
        .join(OutboxItem, OutboxItem.message_id == Message.id)
        .where(
            Conversation.channel_id == channel.id,
            one_of(session, Conversation.contact_id, contact_ids),
            OutboxItem.status == OutboxStatus.HELD.value,
        )
        .distinct()
    ))
    return known


def _plan(
    channel: Channel,
    inbounds: Sequence[InboundMessage],
    digests: Sequence[str],
    start: int,
    known: _Known,
) -> tuple[dict[int, _Planned], int | None]:
    """Decide what each message from ``start`` on becomes, until one needs the per-message path.

    Returns the planned messages by their index, which leaves out duplicates, and the index
    of the message that needs the per-message path, or None.
    """
    planned: dict[int, _Planned] = {}
    stored_digests: set[str] = set()
    senders: dict[str, str | None] = {}
    contacts: dict[tuple[str, str], _IdentityRow] = {}
    # The conversation that a message of this batch started, by the contact row's identity.
    started: dict[int, _NewConversation] = {}
    for index in range(start, len(inbounds)):
        digest = digests[index]
        inbound = deduplicate(channel, inbounds[index], digest, known, stored_digests, senders)
        if inbound is None:
            continue
        if inbound.in_reply_to or inbound.bounce is not None or keyword_of(inbound.text or "") in known.keywords:
            return planned, index

        key = (inbound.sender.kind.value, identity_value(inbound.sender))
        identity = contacts.get(key) or known.identities.get(key)
        display_name = (inbound.sender.display_name or "").strip()[:NAME_LENGTH] or None
        if identity is not None and (
            identity.contact.merged_into_id is not None
            or (inbound.automatic is None and identity.failing_since is not None)
            or takes_channel_name(identity.contact, inbound.sender.kind, display_name)
        ):
            return planned, index

        conversation: Conversation | _NewConversation | None = None
        if identity is not None:
            conversation = started.get(id(identity.contact))
            contact_id = identity.contact_id
            if conversation is None and contact_id is not None:
                if contact_id in known.with_held_replies:
                    return planned, index
                conversation = known.open_conversations.get(contact_id)
                if conversation is None and contact_id in known.with_conversations:
                    return planned, index
                if conversation is not None and (
                    conversation.status != ConversationStatus.OPEN.value or conversation.merged_into_id is not None
                ):
                    return planned, index
        if conversation is None and channel.default_team_id is not None:
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
            started[id(identity.contact)] = conversation
        reason = ThreadReason.WHATSAPP_NEW if created else ThreadReason.WHATSAPP_OPEN
        planned[index] = _Planned(
            inbound, digest, identity, conversation, created, reason, now,
            wrote_at=customer_wrote_at(inbound.sent_at, now),
        )
        stored_digests.add(digest)
        senders[inbound.provider_message_id] = inbound.sender.value
    return planned, None
