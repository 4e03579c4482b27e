"""The transactional outbox: which queued sends are due, and what their outcome does.

Item states: ``pending`` (waiting for its ``next_attempt_at``) → ``sent``, or → ``failed``
after a permanent error, ``MAX_ATTEMPTS`` transient ones, or an attempt with an unknown
outcome (below). Only an unknown outcome can still turn into ``sent``.

A dispatcher claims one due item right before it calls the provider (``claim_next``). The
claim sets, in one transaction, a lease (``locked_until``), ``in_flight_since`` and a random
``claim_token``. Only the holder of that token can record the outcome (``mark_sent``,
``mark_attempt_failed``), which clears ``in_flight_since``. The lease covers exactly one
send attempt, and the dispatcher sizes it from its sender's timeouts (``LeasePolicy``), so it
cannot run out while other items are being sent. A single send that outlives its lease is
handled like one whose dispatcher died, by any other dispatcher. Its own dispatcher passes
its running sends to ``recover_abandoned_sends`` as ``skip_items`` and waits for their outcome.

A reply that goes out as several provider messages (a long WhatsApp text, or several
attachments) takes one claim per part. ``mark_part_sent`` records each part but the last
and leaves the item pending and due, with its place in the queue, so the next claim sends
the next part; the last part is recorded with ``mark_part_sent(..., last=True)``.

Replies to one contact on one channel go out one at a time and in the order they were
queued: ``claim_next`` skips an item while an older item of the same channel and contact is
still pending, whether it is in flight, between two parts or waiting for a retry. It also
skips every item of a contact while one of them is in flight, which matters when an older
reply becomes pending again, such as a held reply that the customer's message releases. So
several dispatchers can send at once without reordering one customer's messages, and a
lookup of an unconfirmed send (below) never meets another reply's message still in flight.

Sends are paced per channel. A claim with a minimum interval for the channel's kind moves
the channel's ``send_not_before`` that far ahead, and ``claim_next`` skips the items of a
channel whose time has not come. So one paced or rate-limited sender never holds up the
others. A provider's HTTP 429 pauses the channel until its Retry-After
(``mark_attempt_failed(..., pause_until=...)``).

A failed attempt whose request may have reached the provider, such as a read timeout or a
connection dropped after the request went out, is one whose error the sender marks
``may_have_sent``. It is recorded with ``mark_attempt_failed(..., unconfirmed=True)``. The item keeps the start of that attempt
in ``unconfirmed_since``, and its next claim carries it, so the dispatcher first looks for the
message at the provider. A message found there is recorded with ``mark_sent`` or
``mark_part_sent`` like a send, and none found lets the dispatcher send again. A failed lookup
is recorded as another unconfirmed attempt, so it is retried with the same backoff, and an
item that runs out of attempts while unconfirmed fails with ``UNCONFIRMED_SEND_ERROR``.

If a dispatcher dies after the provider accepted a send but before the outcome committed,
its item stays in flight until the lease expires. ``recover_abandoned_sends`` then settles
it. Where the channel's provider can be asked for earlier sends (Twilio), the abandoned
attempt counts as an unconfirmed one: the item is due at once with ``unconfirmed_since``
set, and its next claim looks the message up, so it is recorded as sent when it exists and
sent when it does not. Elsewhere (Meta's Cloud API, SMTP) nothing can tell whether the
customer got the message, so it is never sent again. The item is marked failed with
``UNKNOWN_OUTCOME_ERROR``, which the inbox shows on the message. That failed item keeps its
token and ``in_flight_since``. If the lost ``mark_sent`` arrives after all, it still records
the send, because the provider's acceptance is the truth. A late ``mark_part_sent`` records
its part, but the remaining parts are not sent, since they could follow later replies.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Subquery, func, or_, select, update
from sqlalchemy.orm import Session

from channels.delivery import advances
from channels.types import Address, AddressKind, DeliveryState, OutboundMessage, SendResult
from inbox.delivery import apply_early_reports, apply_early_part_reports, lock_provider_message, refresh_parts_status
from inbox.events import record_event
from inbox.fallback import FAILED_STATES, send_by_email_automatically
from inbox.held import apply_window_error, react_to_failed_delivery
from inbox.models import (
    Channel,
    Conversation,
    EarlyDeliveryReport,
    Message,
    MessagePart,
    OutboxItem,
    OutboxStatus,
    utcnow,
)
from inbox.replies import email_attachments, reply_to_address
from inbox.send_failures import record_send_failure
from inbox.serialize import contact_address, message_to_dict
from inbox.workflow import reopen_for_failed_reply

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=30)
# The lease of a claim made without a ``LeasePolicy``. The dispatcher passes one that
# sizes each lease from its sender's timeouts.
LEASE = timedelta(minutes=10)
# Due items that one claim considers, oldest first. It takes the first that no other
# dispatcher holds a row lock on.
CLAIM_CANDIDATES = 20

# Returns the lease of one claim: the longest that one send attempt can take on a channel
# of this kind with these settings. The flag is True when the attempt first looks up an
# unconfirmed earlier send at the provider.
LeasePolicy = Callable[[str, Mapping[str, Any], bool], timedelta]
# Returns whether the provider of a channel of this kind with these settings can be asked
# whether an earlier attempt created the message.
LookupPolicy = Callable[[str, Mapping[str, Any]], bool]

UNKNOWN_OUTCOME_ERROR = (
    "Switchboard stopped while sending this reply, so it may or may not have reached the "
    "customer. Check before sending it again."
)
# The reason a retry shows while an abandoned attempt is looked up at the provider.
ABANDONED_SEND_NOTE = (
    "Switchboard stopped while sending this reply, so it checks with the provider whether the "
    "reply arrived before sending it again."
)
# A late part recorded under a claim whose outcome was marked unknown, with more parts left.
PARTLY_SENT_ERROR = (
    "Switchboard stopped while sending this reply in parts, and only the first {sent_parts} of "
    "them reached the provider. The rest were not sent, because later replies to the customer "
    "may have gone out meanwhile. Send the rest again if the customer still needs it."
)
UNCONFIRMED_SEND_ERROR = (
    "The provider did not answer an attempt to send this reply, so it may have reached the "
    "customer, and Switchboard could not check whether it did. Check with the customer before "
    "sending it again."
)


@dataclass(frozen=True)
class AttachmentRef:
    """An attachment of an outbound message, without its bytes."""

    id: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class PendingSend:
    """A claimed outbox item with everything a channel sender needs.

    ``claim_token`` must be passed back to ``mark_sent``, ``mark_part_sent`` or
    ``mark_attempt_failed``. ``sent_parts`` counts the parts of a multi-part send that the
    provider already accepted. ``unconfirmed_since`` is when an earlier attempt at the
    current part began whose request may have reached the provider, or None.
    """

    item_id: int
    message_id: int
    channel_id: int
    channel_kind: str
    channel_address: str
    channel_settings: dict[str, Any]
    outbound: OutboundMessage
    attempt: int
    claim_token: str
    sent_parts: int = 0
    attachments: tuple[AttachmentRef, ...] = field(default=())
    unconfirmed_since: datetime | None = None


def backoff_delay(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Return the wait before retry number ``attempt`` (1-based): exponential, capped, jittered."""
    exponential = BACKOFF_BASE * (2 ** (attempt - 1))
    capped = min(exponential, BACKOFF_CAP)
    # Full jitter between half and all of the delay keeps retries of one outage apart.
    return capped * (0.5 + 0.5 * (rng or random).random())


def claim_next(
    session: Session,
    now: datetime | None = None,
    lease: timedelta | LeasePolicy = LEASE,
    send_intervals: Mapping[str, timedelta] | None = None,
    skip_channels: Collection[int] = (),
) -> PendingSend | None:
    """Claim the most overdue item for one send attempt, and commit.

    Returns the item's send with a new claim token, or None when no item is due. Items
    whose previous attempt is still in flight are skipped, because ``recover_abandoned_sends``
    handles them, and so are the items of a channel whose ``send_not_before`` is still
    ahead, and the items that wait for an older pending item to the same contact or for one
    in flight.
    ``lease`` is the claim's lease, or a policy that returns it for the item's channel.
    ``send_intervals`` maps a channel kind to the minimum time between two sends
    of one channel; the claim moves the channel's ``send_not_before`` that far ahead.
    The items of the channels in ``skip_channels`` are not claimed.
    """
    now = now or utcnow()
    with session.begin():
        heads = _queue_heads(skip_channels)
        candidates = session.scalars(
            select(heads.c.id)
            .where(
                or_(heads.c.send_not_before.is_(None), heads.c.send_not_before <= now),
                heads.c.next_attempt_at <= now,
            )
            .order_by(heads.c.next_attempt_at, heads.c.id)
            .limit(CLAIM_CANDIDATES)
        ).all()
        if not candidates:
            return None
        # The row lock and the conditions again, because another dispatcher may have claimed
        # a candidate since the query above.
        query = (
            select(OutboxItem)
            .where(
                OutboxItem.id.in_(candidates),
                OutboxItem.status == OutboxStatus.PENDING.value,
                OutboxItem.in_flight_since.is_(None),
            )
            .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
            .limit(1)
            .execution_options(populate_existing=True)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        item = session.scalars(query).first()
        if item is None:
            return None
        interval = (send_intervals or {}).get(item.channel.kind)
        if interval and not _take_send_slot(session, item.channel_id, now, interval):
            log.debug("channel %s: another dispatcher took the send slot first", item.channel_id)
            return None
        if not isinstance(lease, timedelta):
            lease = lease(item.channel.kind, dict(item.channel.settings or {}), item.unconfirmed_since is not None)

        # Compare-and-set, so the claim holds even where the row lock above is missing.
        token = secrets.token_hex(16)
        result = session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == item.id,
                OutboxItem.status == OutboxStatus.PENDING.value,
                OutboxItem.in_flight_since.is_(None),
            )
            .values(locked_until=now + lease, in_flight_since=now, claim_token=token)
        )
        if result.rowcount != 1:
            log.debug("outbox item %s was claimed by another dispatcher first", item.id)
            return None
        return _pending_send(item, token)


def _queue_heads(skip_channels: Collection[int] = ()) -> Subquery:
    """Return the oldest pending item of each channel and contact that may be sent next.

    The subquery has the columns ``id``, ``next_attempt_at`` and the channel's
    ``send_not_before``. The later items of a contact are left out, because they wait for the
    oldest, also while it is between parts or waiting for a retry. No item of a contact is in
    it while one of them is in flight, such as a later reply that went out while an older one
    was held. Inactive channels and channels in ``skip_channels`` are left out.
    """
    # The place in the queue comes from a window function over the pending items, in one
    # pass. A NOT EXISTS on an older pending item ran on PostgreSQL 15 as a hash anti join
    # that compares each queued reply of a contact with every other. With 15,000 replies
    # queued to one customer, that query took seconds (see tests/gateway/test_outbox_backlog.py).
    # An IN on the oldest id per contact was as slow when the planner's statistics missed a
    # burst of new replies, because the plan then computed those ids again for each item.
    queue = (OutboxItem.channel_id, Conversation.contact_id)
    place = func.row_number().over(partition_by=queue, order_by=OutboxItem.id)
    sending = func.count(OutboxItem.in_flight_since).over(partition_by=queue)
    queued = (
        select(
            OutboxItem.id,
            OutboxItem.next_attempt_at,
            Channel.send_not_before,
            place.label("place"),
            sending.label("sending"),
        )
        .join(Channel, Channel.id == OutboxItem.channel_id)
        .join(Message, Message.id == OutboxItem.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Channel.is_active.is_(True), OutboxItem.status == OutboxStatus.PENDING.value)
    )
    if skip_channels:
        queued = queued.where(OutboxItem.channel_id.not_in(skip_channels))
    ranked = queued.subquery("queued")
    return select(ranked).where(ranked.c.place == 1, ranked.c.sending == 0).subquery("heads")


def _take_send_slot(session: Session, channel_id: int, now: datetime, interval: timedelta) -> bool:
    """Take the channel's next send slot if it is due, and move ``send_not_before`` one interval on.

    The next slot counts from the slot just taken, not from ``now``, so the time a dispatcher
    takes to wake up does not stretch every interval and the rate stays at the cap. After an
    idle spell longer than one interval it counts from ``now``, so no burst makes up for it.
    Returns False when the slot is ahead or another dispatcher took it first.
    """
    current = session.scalar(select(Channel.send_not_before).where(Channel.id == channel_id))
    if current is not None and current > now:
        return False
    start = current if current is not None and now - current < interval else now
    unchanged = Channel.send_not_before.is_(None) if current is None else Channel.send_not_before == current
    result = session.execute(
        update(Channel)
        .where(Channel.id == channel_id, unchanged)
        .values(send_not_before=start + interval)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def seconds_until_next_send(
    session: Session, now: datetime | None = None, skip_channels: Collection[int] = ()
) -> float | None:
    """Return how long until an item can next be claimed, or None when nothing is pending.

    Zero means an item is due now. Items in flight, items of inactive channels, items of the
    channels in ``skip_channels`` and items that wait for an older pending item to the same
    contact or for one in flight are not counted. The dispatcher sleeps this long, at most its poll interval.
    """
    now = now or utcnow()
    heads = _queue_heads(skip_channels)
    query = (
        select(heads.c.next_attempt_at, heads.c.send_not_before)
        .order_by(heads.c.next_attempt_at)
        .limit(100)
    )
    with session.begin():
        rows = session.execute(query).all()
    if not rows:
        return None
    ready_times = [max(due, paused or due) for due, paused in rows]
    return max(0.0, (min(ready_times) - now).total_seconds())


def _pending_send(item: OutboxItem, token: str) -> PendingSend:
    message = item.message
    conversation = message.conversation
    channel = item.channel
    address_kind = AddressKind.EMAIL if channel.kind == "email" else AddressKind.PHONE
    outbound = OutboundMessage(
        to=Address(address_kind, contact_address(conversation), conversation.contact.name),
        text=message.text,
        sender=Address(address_kind, channel.address, channel.name),
        subject=message.subject,
        message_id=message.rfc_message_id,
        in_reply_to=message.in_reply_to,
        references=list(message.references or []),
        reply_to=reply_to_address(conversation),
        content_sid=message.content_sid,
        content_variables=dict(message.content_variables) if message.content_variables else None,
        template_name=message.template_name,
        template_language=message.template_language,
        # WhatsApp senders fetch each file by its reference below, and an email carries its bytes.
        attachments=email_attachments(message) if channel.kind == "email" else [],
    )
    return PendingSend(
        item_id=item.id,
        message_id=message.id,
        channel_id=channel.id,
        channel_kind=channel.kind,
        channel_address=channel.address,
        channel_settings=dict(channel.settings or {}),
        outbound=outbound,
        attempt=item.attempts + 1,
        claim_token=token,
        sent_parts=len(message.parts),
        attachments=tuple(
            AttachmentRef(a.id, a.filename, a.content_type, a.size) for a in message.attachments
        ),
        unconfirmed_since=item.unconfirmed_since,
    )


def recover_abandoned_sends(
    session: Session,
    now: datetime | None = None,
    *,
    can_look_up: LookupPolicy | None = None,
    skip_items: Collection[int] = (),
) -> int:
    """Settle every item whose send attempt outlived its lease, each in its own commit.

    The dispatcher that claimed such an item stopped (or lost the database) after it may
    have called the provider, so sending again blindly could reach the customer twice.
    When ``can_look_up`` returns True for the item's channel, the attempt counts as an
    unconfirmed one. The item is then due at once, with ``ABANDONED_SEND_NOTE`` as its retry
    reason, so its next claim looks the message up at the provider before any new send.
    Otherwise, and when the item has no attempt left, the message fails with
    ``UNKNOWN_OUTCOME_ERROR``. Either change reaches the inbox as a ``message.updated``
    event. Returns how many items were settled.

    ``skip_items`` are the items whose send the caller is still running. Such a send is
    slow, not abandoned, and its outcome is recorded when it ends.
    """
    now = now or utcnow()
    abandoned = [
        OutboxItem.status == OutboxStatus.PENDING.value,
        OutboxItem.in_flight_since.is_not(None),
        or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until < now),
    ]
    if skip_items:
        abandoned.append(OutboxItem.id.not_in(skip_items))
    with session.begin():
        item_ids = session.scalars(select(OutboxItem.id).where(*abandoned)).all()

    settled = 0
    for item_id in item_ids:
        with session.begin():
            query = (
                select(OutboxItem)
                .where(OutboxItem.id == item_id, *abandoned)
                .execution_options(populate_existing=True)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            item = session.scalar(query)
            if item is None:
                continue  # its outcome was recorded meanwhile, or another dispatcher got here first
            channel = item.channel
            lookup = can_look_up is not None and can_look_up(channel.kind, dict(channel.settings or {}))
            if lookup and item.attempts + 1 < MAX_ATTEMPTS:
                _queue_lookup(session, item, now)
            else:
                _mark_outcome_unknown(session, item)
        settled += 1
    return settled


def _queue_lookup(session: Session, item: OutboxItem, now: datetime) -> None:
    """Count the abandoned attempt as unconfirmed and make the item due for its lookup."""
    abandoned_since = item.in_flight_since
    item.attempts += 1
    item.unconfirmed_since = item.unconfirmed_since or abandoned_since
    item.in_flight_since = None
    item.locked_until = None
    item.next_attempt_at = now
    item.last_error = ABANDONED_SEND_NOTE
    session.flush()
    message: Message = item.message
    record_event(
        session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
    )
    log.warning(
        "outbox item %s (message %s): the send attempt started at %s never finished, so the "
        "provider is asked whether it created the message before it is sent again",
        item.id, message.id, abandoned_since.isoformat() if abandoned_since else "?",
    )


def _mark_outcome_unknown(session: Session, item: OutboxItem) -> None:
    # claim_token and in_flight_since stay set, so a late mark_sent can still record the send.
    item.status = OutboxStatus.FAILED.value
    item.attempts += 1
    item.locked_until = None
    item.last_error = UNKNOWN_OUTCOME_ERROR
    message: Message = item.message
    message.delivery_status = DeliveryState.FAILED.value
    message.delivery_error = UNKNOWN_OUTCOME_ERROR
    session.flush()
    record_event(
        session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
    )
    reopen_for_failed_reply(session, message)
    log.error(
        "outbox item %s (message %s): the send attempt started at %s never finished, "
        "so it is marked failed with an unknown outcome and not sent again",
        item.id, message.id, item.in_flight_since.isoformat() if item.in_flight_since else "?",
    )


def mark_sent(session: Session, item_id: int, result: SendResult, *, claim_token: str) -> bool:
    """Record a successful send: the provider's id and initial status; commit.

    Also applies delivery reports that arrived before this call. Returns True when
    recorded, and False (logged) when ``claim_token`` is not the item's current claim.
    An item marked failed with an unknown outcome under the same claim is recorded as sent.
    """
    with session.begin():
        item = session.get(OutboxItem, item_id, with_for_update=True, populate_existing=True)
        if not _holds_claim(item, claim_token):
            log.error(
                "outbox item %s: the provider accepted the send as %s, but the claim is no "
                "longer current, so the send is not recorded", item_id, result.provider_message_id,
            )
            return False
        assert item is not None  # _holds_claim returns False for a missing item

        outcome_was_unknown = item.status == OutboxStatus.FAILED.value
        if not outcome_was_unknown:
            item.attempts += 1  # recover_abandoned_sends already counted the attempt otherwise
        item.status = OutboxStatus.SENT.value
        item.locked_until = None
        item.in_flight_since = None
        item.unconfirmed_since = None
        item.last_error = None

        message = item.message
        lock_provider_message(session, message.channel_id, result.provider_message_id)
        message.provider_message_id = result.provider_message_id
        message.sent_at = utcnow()
        if outcome_was_unknown:
            # The failure was only a guess, and the provider's acceptance replaces it.
            message.delivery_status = None
            message.delivery_error = None
        current = DeliveryState(message.delivery_status) if message.delivery_status else None
        if advances(current, result.status):
            message.delivery_status = result.status.value
        session.flush()
        early_failure = _early_failure_code(session, message)
        apply_early_reports(session, message)
        session.flush()
        if early_failure is not None and message.delivery_status in FAILED_STATES:
            react_to_failed_delivery(session, message, early_failure or None)
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
    if outcome_was_unknown:
        log.warning(
            "outbox item %s: the send was reported after the item was marked with an unknown "
            "outcome, so it is recorded as sent as %s",
            item_id, result.provider_message_id,
        )
    else:
        log.info("outbox item %s sent as %s", item_id, result.provider_message_id)
    return True


def mark_part_sent(
    session: Session,
    item_id: int,
    position: int,
    result: SendResult,
    *,
    last: bool,
    claim_token: str,
) -> bool:
    """Record that the provider accepted part ``position`` (0-based) of a multi-part send.

    Stores the part with its provider id and status, applies delivery reports that
    arrived for it early, and updates the message's combined status. After the ``last``
    part the item is sent; before it, the item stays pending and due so that the next
    claim sends the next part. Commits. Returns False (logged) when ``claim_token`` is
    not the item's current claim. An item marked failed with an unknown outcome under
    the same claim still records the part. It is sent after the ``last`` part, and
    otherwise stays failed with ``PARTLY_SENT_ERROR``, because the contact's later replies
    may have gone out since the failure and the remaining parts would follow them.
    """
    with session.begin():
        item = session.get(OutboxItem, item_id, with_for_update=True, populate_existing=True)
        if not _holds_claim(item, claim_token):
            log.error(
                "outbox item %s: the provider accepted part %s as %s, but the claim is no longer "
                "current, so the part is not recorded", item_id, position + 1, result.provider_message_id,
            )
            return False
        assert item is not None  # _holds_claim returns False for a missing item

        outcome_was_unknown = item.status == OutboxStatus.FAILED.value
        message: Message = item.message
        lock_provider_message(session, message.channel_id, result.provider_message_id)
        part = MessagePart(
            message=message,
            channel_id=message.channel_id,
            position=position,
            provider_message_id=result.provider_message_id,
            delivery_status=result.status.value,
        )
        session.add(part)
        if position == 0:
            message.provider_message_id = result.provider_message_id
            message.sent_at = utcnow()
        stopped = outcome_was_unknown and not last
        if outcome_was_unknown and not stopped:
            # The provider accepted the part, so the guessed failure is replaced by the truth.
            message.delivery_status = None
            message.delivery_error = None
        session.flush()
        apply_early_part_reports(session, part)

        item.locked_until = None
        item.in_flight_since = None
        item.unconfirmed_since = None
        item.last_error = None
        if last:
            item.status = OutboxStatus.SENT.value
            if not outcome_was_unknown:
                item.attempts += 1
        elif stopped:
            # The item stays failed, which the failed message status keeps in
            # refresh_parts_status below.
            item.last_error = PARTLY_SENT_ERROR.format(sent_parts=position + 1)
            message.delivery_error = item.last_error
        else:
            # Due at once with its old place in the queue, so that no later reply of the
            # same sender goes out between two parts.
            item.status = OutboxStatus.PENDING.value
        refresh_parts_status(message, more_parts=not last)
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
    log.info(
        "outbox item %s part %s sent as %s%s", item_id, position + 1, result.provider_message_id,
        " (last part)" if last else "",
    )
    return True


def mark_attempt_failed(
    session: Session,
    item_id: int,
    error: str,
    *,
    transient: bool,
    claim_token: str,
    now: datetime | None = None,
    pause_until: datetime | None = None,
    error_code: str | None = None,
    unconfirmed: bool = False,
) -> bool:
    """Record a failed attempt and commit. Returns True when the item will be retried.

    Every failed attempt, retried or not, also counts as a send failure of the channel,
    with the provider's ``error_code`` when it gave one (``inbox.send_failures``).

    ``unconfirmed`` tells that the message may exist at the provider after this attempt:
    its request may have arrived, or the lookup of an earlier such attempt failed. The
    item then keeps the start of the earliest such attempt in ``unconfirmed_since``, and
    if it fails for good, the message shows ``UNCONFIRMED_SEND_ERROR`` before ``error``.
    Without it, ``unconfirmed_since`` is cleared, because the attempt followed a lookup
    that found no message and itself certainly created none.

    A transient error schedules a retry with backoff until ``MAX_ATTEMPTS``. With
    ``pause_until`` (a provider's HTTP 429), the retry waits until then instead, and so
    does every other send of the item's channel. A permanent
    error, or the last attempt, marks the item and its message failed with ``error``, which
    the inbox shows on the message, and resends it by email when the workspace's fallback is
    automatic, unless it may have reached the customer. Nothing changes, and False is returned, when
    ``claim_token`` is not the item's current claim or the item no longer waits for this
    outcome (for example because it was already marked failed with an unknown outcome).
    """
    now = now or utcnow()
    with session.begin():
        item = session.get(OutboxItem, item_id, with_for_update=True, populate_existing=True)
        if not _holds_claim(item, claim_token) or item.status != OutboxStatus.PENDING.value:
            log.warning(
                "outbox item %s: ignored a failed attempt from a claim that is no longer "
                "current: %s", item_id, error,
            )
            return False

        item.attempts += 1
        item.locked_until = None
        if unconfirmed:
            item.unconfirmed_since = item.unconfirmed_since or item.in_flight_since
        else:
            item.unconfirmed_since = None
        item.in_flight_since = None
        item.last_error = error[:2000]
        record_send_failure(session, item.channel_id, error, error_code=error_code, message_id=item.message_id, now=now)
        retry = transient and item.attempts < MAX_ATTEMPTS
        if pause_until is not None:
            _pause_channel(session, item.channel_id, pause_until)
        if retry:
            item.next_attempt_at = pause_until or now + backoff_delay(item.attempts)
            session.flush()
            # The agent sees the retry and its reason while the reply waits.
            record_event(
                session, "message.updated", {"message": message_to_dict(item.message)},
                item.message.conversation_id,
            )
            log.warning(
                "outbox item %s attempt %s failed, retrying at %s: %s",
                item_id, item.attempts, item.next_attempt_at.isoformat(), error,
            )
            return True

        may_have_reached = item.unconfirmed_since is not None
        if may_have_reached:
            error = f"{UNCONFIRMED_SEND_ERROR} Last error: {error}"
            item.last_error = error[:2000]
        item.status = OutboxStatus.FAILED.value
        message: Message = item.message
        message.delivery_status = DeliveryState.FAILED.value
        message.delivery_error = error[:2000]
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id
        )
        log.error("outbox item %s failed after %s attempts: %s", item_id, item.attempts, error)
        # A reply that may have reached the customer is left for an agent to check, so the
        # automatic fallback does not send it a second time by email.
        if may_have_reached or send_by_email_automatically(session, message) is None:
            reopen_for_failed_reply(session, message)
        return False


def record_window_error(
    session: Session,
    item_id: int,
    error: str,
    *,
    claim_token: str,
    now: datetime | None = None,
    error_code: str | None = None,
) -> OutboxStatus | None:
    """Record a send that WhatsApp rejected because the 24-hour window closed; commit.

    Twilio reports this as error 63016 and Meta as 131047; ``error_code`` is the one given,
    recorded with the channel's send failures.

    The reply is held until the customer writes, queued again when they wrote during the
    attempt, or failed with advice to send a template (see ``inbox.held.apply_window_error``).
    Returns the item's new status, or None (logged) when ``claim_token`` is not the item's
    current claim.
    """
    now = now or utcnow()
    with session.begin():
        item = session.get(OutboxItem, item_id, with_for_update=True, populate_existing=True)
        if not _holds_claim(item, claim_token) or item.status != OutboxStatus.PENDING.value:
            log.warning(
                "outbox item %s: ignored a window error from a claim that is no longer current: %s",
                item_id, error,
            )
            return None
        item.attempts += 1
        item.locked_until = None
        item.unconfirmed_since = None  # the provider responded, so it rejected this attempt
        item.last_error = error[:2000]
        record_send_failure(session, item.channel_id, error, error_code=error_code, message_id=item.message_id, now=now)
        status = apply_window_error(session, item, error, now)
        item.in_flight_since = None
        session.flush()
        record_event(
            session, "message.updated", {"message": message_to_dict(item.message)},
            item.message.conversation_id,
        )
        if status is OutboxStatus.FAILED:
            reopen_for_failed_reply(session, item.message)
        return status


def recorded_provider_ids(session: Session, channel_id: int, provider_message_ids: Sequence[str]) -> set[str]:
    """Return those of ``provider_message_ids`` that a message or message part of the channel
    already has, so that a lookup never adopts another message's send."""
    if not provider_message_ids:
        return set()
    with session.begin():
        on_messages = session.scalars(
            select(Message.provider_message_id).where(
                Message.channel_id == channel_id, Message.provider_message_id.in_(provider_message_ids)
            )
        ).all()
        on_parts = session.scalars(
            select(MessagePart.provider_message_id).where(
                MessagePart.channel_id == channel_id, MessagePart.provider_message_id.in_(provider_message_ids)
            )
        ).all()
    return {provider_id for provider_id in [*on_messages, *on_parts] if provider_id}


def _early_failure_code(session: Session, message: Message) -> str | None:
    """Return the error code of a stored early failure report for ``message`` ("" without a
    code), or None when no such report waits."""
    row = session.execute(
        select(EarlyDeliveryReport.error_code)
        .where(
            EarlyDeliveryReport.channel_id == message.channel_id,
            EarlyDeliveryReport.provider_message_id == message.provider_message_id,
            EarlyDeliveryReport.state.in_(FAILED_STATES),
        )
        .order_by(EarlyDeliveryReport.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return row[0] or ""


def _pause_channel(session: Session, channel_id: int, until: datetime) -> None:
    """Hold every send of the channel until ``until``, unless it is held longer already."""
    session.execute(
        update(Channel)
        .where(
            Channel.id == channel_id,
            or_(Channel.send_not_before.is_(None), Channel.send_not_before < until),
        )
        .values(send_not_before=until)
        .execution_options(synchronize_session=False)
    )
    log.warning("channel %s: sends paused until %s", channel_id, until.isoformat())


def _holds_claim(item: OutboxItem | None, claim_token: str) -> bool:
    """Return whether ``claim_token`` is the claim of an attempt whose outcome is not recorded."""
    return (
        item is not None
        and item.claim_token == claim_token
        and item.in_flight_since is not None
        and item.status != OutboxStatus.SENT.value
    )
