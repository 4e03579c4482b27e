"""Sending proactive updates: the sweep that turns due occurrences into outbox messages.

Once only: each occurrence first inserts its ``ProactiveSend`` row, whose unique key is
(template, conversation, occurrence), and creates the message and its outbox item in the
same transaction. A second scheduler process that finds the same occurrence fails on the
key (on PostgreSQL it waits for the first transaction, then fails), so it sends nothing.
A crash before the commit leaves nothing behind, and the next sweep finds the occurrence
again; after the commit the outbox delivers the message once (``inbox.outbox``).

Per occurrence, in this order: the template's conditions (a conversation they exclude gets
no row at all), the skips (recorded with the reason: opted out, channel disabled, address
failing or an automatic sender, WhatsApp outside its window without an approved template,
nothing to send on the channel, the daily cap), quiet hours (recorded as ``deferred``
until they end), then the message. A deferred row is taken up again by a compare-and-set
on its result, so one process sends it, after checking that the template is still enabled
and the occurrence is still news (``triggers.still_applies``).
"""

from __future__ import annotations

import logging
import re
import time as timer
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from channels.types import DeliveryState
from inbox.channel_config import whatsapp_provider
from inbox.conversations import lock_conversations
from inbox.events import record_event
from inbox.models import (
    Conversation,
    Direction,
    Message,
    OutboxItem,
    OutboxStatus,
    ProactiveResult,
    ProactiveSend,
    UpdateTemplate,
)
from inbox.optout import may_message_proactively
from inbox.proactive.context import update_context
from inbox.proactive.estimates import estimate_for
from inbox.proactive.quiet_hours import QuietHours, contact_zone, quiet_until
from inbox.proactive.templates import RenderedUpdate, TemplateRenderError, enabled_templates, render_update, template_applies
from inbox.proactive.triggers import TRIGGERS, BusinessHours, Occurrence, find_due, still_applies
from inbox.replies import add_email_headers, may_answer_automatically
from inbox.serialize import contact_identity, conversation_to_dict, make_snippet, message_to_dict
from inbox.window import window_is_open

log = logging.getLogger(__name__)

# ``Message.automatic`` of an outbound proactive update.
AUTOMATIC_PROACTIVE = "proactive"
QUEUED = ProactiveResult.QUEUED.value
SENT = ProactiveResult.SENT.value
DEFERRED = ProactiveResult.DEFERRED.value
SKIPPED = ProactiveResult.SKIPPED.value
FAILED = ProactiveResult.FAILED.value
# Updates that count against the daily cap: those that went, or will go, out.
COUNTED = (QUEUED, SENT)
CAP_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class ProactiveSettings:
    """The workspace's rules for proactive updates.

    ``daily_cap`` is the maximum of updates per conversation in any 24 hours (0 for no
    cap). ``catch_up`` is how far back the sweep looks for occurrences it has not handled,
    which bounds what a scheduler catches up after downtime. ``batch_size`` bounds the
    occurrences one sweep handles; the rest wait for the next sweep.
    """

    workspace_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    quiet_hours: QuietHours = field(default_factory=QuietHours)
    business_hours: BusinessHours = field(default_factory=BusinessHours)
    daily_cap: int = 3
    catch_up: timedelta = timedelta(hours=24)
    batch_size: int = 500


@dataclass
class SweepReport:
    """The outcome of one sweep: occurrences found, handled ones by result, and the duration."""

    found: int = 0
    results: Counter[str] = field(default_factory=Counter)
    # Rows moved from queued to sent or failed after their outbox item finished.
    synced: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        handled = ", ".join(f"{count} {result}" for result, count in sorted(self.results.items())) or "none handled"
        return f"{self.found} due, {handled}, {self.synced} delivery outcomes recorded, {self.seconds:.2f} s"


@dataclass(frozen=True)
class _Plan:
    """The decision for one occurrence: a skip, a deferral, or the content to queue."""

    result: str
    reason: str | None = None
    scheduled_for: datetime | None = None
    rendered: RenderedUpdate | None = None
    # The approved WhatsApp template to send instead of free text (outside the window).
    content_sid: str | None = None


def sweep(
    session_factory: sessionmaker[Session],
    settings: ProactiveSettings,
    now: datetime,
    *,
    stop: Callable[[], bool] = lambda: False,
) -> SweepReport:
    """Record delivery outcomes, send deferred updates whose time has come, then new occurrences.

    Each occurrence is handled in its own transaction; an error in one is logged and the
    sweep goes on. ``stop`` is polled between occurrences so a shutdown does not wait for
    a long sweep. Returns what the sweep did.
    """
    started = timer.perf_counter()
    report = SweepReport()
    budget = settings.batch_size
    with session_factory() as session:
        report.synced = record_delivery_outcomes(session)

    with session_factory() as session:
        with session.begin():
            deferred_ids = list(session.scalars(
                select(ProactiveSend.id)
                .where(ProactiveSend.result == DEFERRED, ProactiveSend.scheduled_for <= now)
                .order_by(ProactiveSend.scheduled_for, ProactiveSend.id)
                .limit(budget)
            ))
    report.found += len(deferred_ids)
    for send_id in deferred_ids:
        if stop():
            break
        result = _guarded(lambda: send_deferred(session_factory, send_id, settings, now), f"deferred update {send_id}")
        if result:
            report.results[result] += 1
    budget -= len(deferred_ids)

    for trigger in TRIGGERS:
        if budget <= 0 or stop():
            break
        with session_factory() as session:
            with session.begin():
                templates = [(t.id, t.name, dict(t.trigger_params or {}), t.enabled_at or t.created_at)
                             for t in enabled_templates(session, trigger)]
        for template_id, name, params, enabled_at in templates:
            if budget <= 0 or stop():
                break
            # Nothing from before the template was (last) enabled: it was off then.
            since = max(enabled_at, now - settings.catch_up)
            try:
                occurrences = _due_occurrences(session_factory, template_id, trigger, params, since, now, settings)
            except ValueError as error:
                log.warning("update template %s (%r): trigger %s skipped: %s", template_id, name, trigger, error)
                continue
            report.found += len(occurrences)
            for occurrence in occurrences[:budget]:
                if stop():
                    break
                result = _guarded(
                    lambda: handle_occurrence(session_factory, template_id, trigger, params, occurrence, settings, now),
                    f"template {template_id} conversation {occurrence.conversation_id} {occurrence.key}",
                )
                budget -= 1
                if result:
                    report.results[result] += 1
    report.seconds = timer.perf_counter() - started
    return report


def _guarded(action: Callable[[], str | None], what: str) -> str | None:
    """Run one occurrence's work; log an unexpected error so the sweep goes on."""
    try:
        return action()
    except Exception:
        log.exception("proactive update failed: %s", what)
        return None


def _due_occurrences(
    session_factory: sessionmaker[Session], template_id: int, trigger: str, params: dict,
    since: datetime, now: datetime, settings: ProactiveSettings,
) -> list[Occurrence]:
    with session_factory() as session:
        with session.begin():
            recorded = {
                (conversation_id, key) for conversation_id, key in session.execute(
                    select(ProactiveSend.conversation_id, ProactiveSend.occurrence_key)
                    .where(ProactiveSend.template_id == template_id, ProactiveSend.created_at >= since)
                )
            }
            return find_due(
                session, trigger, params, since=since, now=now, business_hours=settings.business_hours,
                recorded=recorded, first_response_estimate=_first_response_estimate,
            )


def _first_response_estimate(session: Session, conversation: Conversation, now: datetime) -> timedelta | None:
    return estimate_for(session, conversation, now).first_response


# ---- One occurrence -----------------------------------------------------------------------


def handle_occurrence(
    session_factory: sessionmaker[Session],
    template_id: int,
    trigger: str,
    params: dict,
    occurrence: Occurrence,
    settings: ProactiveSettings,
    now: datetime,
) -> str | None:
    """Record and carry out one new occurrence in one transaction, and commit.

    ``trigger`` and ``params`` are the template's as the sweep listed it. A template disabled
    or given another trigger or parameters since then gets a skipped row with the reason, so
    an edit made during a long sweep stops the sends the sweep has not reached yet.
    Returns the recorded result, or None when the template does not apply to the
    conversation or another process recorded the occurrence first.
    """
    with session_factory() as session:
        try:
            with session.begin():
                template = session.get(UpdateTemplate, template_id)
                conversation = lock_conversations(session, [occurrence.conversation_id]).get(occurrence.conversation_id)
                if template is None or conversation is None or not template_applies(template, conversation):
                    return None
                # The row goes in first: its unique key is the once-only guard.
                row = ProactiveSend(
                    template_id=template.id, template_name=template.name, conversation_id=conversation.id,
                    occurrence_key=occurrence.key, trigger=trigger, channel=conversation.channel.kind,
                    result=QUEUED, created_at=now, updated_at=now,
                )
                session.add(row)
                session.flush()
                if not template.enabled:
                    _mark(row, SKIPPED, "template_disabled: the template was disabled during the sweep", now)
                elif template.trigger != trigger or dict(template.trigger_params or {}) != params:
                    _mark(row, SKIPPED, "template_changed: the template's trigger changed during the sweep", now)
                else:
                    _carry_out(session, row, template, conversation, settings, now)
        except IntegrityError:
            log.info(
                "update template %s for conversation %s (%s) was recorded by another process",
                template_id, occurrence.conversation_id, occurrence.key,
            )
            return None
        _log_outcome(row)
        return row.result


def send_deferred(
    session_factory: sessionmaker[Session], send_id: int, settings: ProactiveSettings, now: datetime
) -> str | None:
    """Send one deferred update whose time has come, in one transaction, and commit.

    The update moves from deferred to queued by compare-and-set, so of several processes
    exactly one takes it. Returns the new result, or None when another process took it.
    """
    with session_factory() as session:
        with session.begin():
            taken = session.execute(
                update(ProactiveSend)
                .where(
                    ProactiveSend.id == send_id,
                    ProactiveSend.result == DEFERRED,
                    ProactiveSend.scheduled_for <= now,
                )
                .values(result=QUEUED, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:
                return None
            row = session.get(ProactiveSend, send_id, populate_existing=True)
            assert row is not None
            template = session.get(UpdateTemplate, row.template_id)
            conversation = row.conversation
            if template is None:
                _mark(row, SKIPPED, "template_deleted: the template was deleted while the update waited", now)
            elif not template.enabled:
                _mark(row, SKIPPED, "template_disabled: the template was disabled while the update waited", now)
            elif not template_applies(template, conversation) or not still_applies(
                session, row.trigger, dict(template.trigger_params or {}), conversation, row.occurrence_key
            ):
                _mark(row, SKIPPED, "no_longer_applies: the conversation changed while the update waited", now)
            else:
                row.scheduled_for = None
                _carry_out(session, row, template, conversation, settings, now)
        _log_outcome(row)
        return row.result


def _carry_out(
    session: Session, row: ProactiveSend, template: UpdateTemplate, conversation: Conversation,
    settings: ProactiveSettings, now: datetime,
) -> None:
    """Decide what becomes of the occurrence and record it on ``row``; queue the message if it goes."""
    plan = _plan(session, row.id, template, conversation, settings, now)
    if plan.result != QUEUED:
        _mark(row, plan.result, plan.reason, now, plan.scheduled_for)
        return
    assert plan.rendered is not None
    message = _queue_message(session, conversation, plan, template, now)
    row.message_id = message.id
    _mark(row, QUEUED, None, now)


def _mark(row: ProactiveSend, result: str, reason: str | None, now: datetime, scheduled_for: datetime | None = None) -> None:
    row.result = result
    row.reason = reason
    row.scheduled_for = scheduled_for
    row.updated_at = now


def _log_outcome(row: ProactiveSend) -> None:
    log.info(
        "update template %s for conversation %s (%s %s): %s%s",
        row.template_id, row.conversation_id, row.trigger, row.occurrence_key, row.result,
        f" ({row.reason})" if row.reason else "",
    )


def quiet_hours_end(
    conversation: Conversation, settings: ProactiveSettings, now: datetime
) -> tuple[ZoneInfo, datetime | None]:
    """Return the zone of the conversation's contact and the end (UTC) of their quiet hours.

    The end is None unless ``now`` falls in the quiet hours. An update may go from the end on.
    """
    contact = conversation.contact
    zone = contact_zone(
        contact.time_zone, [i.value for i in contact.identities if i.kind == "phone"], settings.workspace_zone, now
    )
    return zone, quiet_until(now, zone, settings.quiet_hours)


def _plan(
    session: Session, row_id: int, template: UpdateTemplate, conversation: Conversation,
    settings: ProactiveSettings, now: datetime,
) -> _Plan:
    """Return the skip, deferral or content for one update to ``conversation`` at ``now``."""
    channel = conversation.channel
    contact = conversation.contact
    if not channel.is_active:
        return _Plan(SKIPPED, f"channel_disabled: channel {channel.id} ({channel.name}) is disabled")
    if not may_message_proactively(contact):
        return _Plan(SKIPPED, f"opted_out: the contact opted out with {contact.opted_out_keyword or 'a keyword'}")
    identity = contact_identity(conversation)
    if identity is None:
        return _Plan(SKIPPED, "no_address: the contact has no address on this channel")
    if channel.kind == "email" and not may_answer_automatically(session, conversation):
        if identity.failing_since is not None:
            return _Plan(SKIPPED, "failing_address: mail to the contact's address bounced")
        return _Plan(SKIPPED, "automatic_sender: the customer's last mail was an auto-reply or a bounce")
    if settings.daily_cap and _sent_today(session, conversation.id, row_id, now) >= settings.daily_cap:
        return _Plan(SKIPPED, f"daily_cap: {settings.daily_cap} updates went to this conversation in the last 24 hours")

    zone, quiet_end = quiet_hours_end(conversation, settings, now)
    if quiet_end is not None:
        return _Plan(DEFERRED, f"quiet_hours: quiet hours in {zone.key}", scheduled_for=quiet_end)

    try:
        rendered = render_update(template, update_context(session, conversation, now))
    except TemplateRenderError as error:
        return _Plan(FAILED, f"render_failed: {error.message}")

    if channel.kind == "email":
        if not rendered.email_body:
            return _Plan(SKIPPED, "no_content: the template has no email body")
        return _Plan(QUEUED, rendered=rendered)
    if window_is_open(session, conversation, now) and rendered.whatsapp_body:
        return _Plan(QUEUED, rendered=rendered)
    if template.whatsapp_content_sid and whatsapp_provider(channel) != "meta":
        return _Plan(QUEUED, rendered=rendered, content_sid=template.whatsapp_content_sid)
    if rendered.whatsapp_body:
        return _Plan(
            SKIPPED, "outside_window: the customer's last WhatsApp message is over 24 hours old "
            "and the template has no approved WhatsApp template for this channel",
        )
    return _Plan(SKIPPED, "no_content: the template has no WhatsApp text or approved template")


def _sent_today(session: Session, conversation_id: int, row_id: int, now: datetime) -> int:
    """Return how many other updates went to the conversation in the last 24 hours."""
    return session.scalar(
        select(func.count())
        .select_from(ProactiveSend)
        .where(
            ProactiveSend.conversation_id == conversation_id,
            ProactiveSend.id != row_id,
            ProactiveSend.result.in_(COUNTED),
            ProactiveSend.updated_at > now - CAP_WINDOW,
        )
    ) or 0


def _queue_message(
    session: Session, conversation: Conversation, plan: _Plan, template: UpdateTemplate, now: datetime
) -> Message:
    """Add the update's outbound message and outbox item, marked automatic, and the events."""
    rendered = plan.rendered
    assert rendered is not None
    channel = conversation.channel
    if channel.kind == "email":
        text = rendered.email_body
    else:
        text = rendered.whatsapp_body or f"[approved template {plan.content_sid}]"
    message = Message(
        conversation=conversation,
        channel=channel,
        direction=Direction.OUTBOUND.value,
        text=text,
        created_at=now,
        automatic=AUTOMATIC_PROACTIVE,
        delivery_status=DeliveryState.QUEUED.value,
        content_sid=plan.content_sid,
        content_variables=dict(rendered.whatsapp_variables) if plan.content_sid else None,
        parts=[],
        attachments=[],
    )
    session.add(message)
    if channel.kind == "email":
        with session.no_autoflush:
            add_email_headers(session, conversation, message)
        if rendered.subject:
            message.subject = subject_with_reference(rendered.subject, conversation.id)
    session.add(OutboxItem(message=message, channel=channel, next_attempt_at=now))
    conversation.last_message_at = now
    conversation.snippet = make_snippet(text)
    session.flush()

    conversation_data = conversation_to_dict(conversation)
    record_event(
        session, "message.created", {"message": message_to_dict(message), "conversation": conversation_data},
        conversation.id,
    )
    record_event(session, "conversation.updated", {"conversation": conversation_data}, conversation.id)
    return message


def subject_with_reference(subject: str, conversation_id: int) -> str:
    """Return an update's email subject with the ``[#<id>]`` reference, which threads the
    customer's reply into the conversation (see ``inbox.threader``).

    A subject that shows the reference already, as ``{{ reference }}`` renders it (``#42``),
    gets its first one bracketed rather than a second one at its end.
    """
    bracketed = f"[#{conversation_id}]"
    if bracketed in subject:
        return subject
    bare = re.compile(rf"(?<![\w\[])#{conversation_id}(?![\w\]])")
    if bare.search(subject):
        return bare.sub(bracketed, subject, count=1)
    return f"{subject} {bracketed}"


# ---- Delivery outcomes --------------------------------------------------------------------


def record_delivery_outcomes(session: Session, limit: int = 1000) -> int:
    """Move queued updates whose outbox item finished to sent or failed, and commit.

    Returns how many rows changed.
    """
    with session.begin():
        rows = session.execute(
            select(ProactiveSend.id, OutboxItem.status, Message.delivery_error)
            .join(OutboxItem, OutboxItem.message_id == ProactiveSend.message_id)
            .join(Message, Message.id == ProactiveSend.message_id)
            .where(
                ProactiveSend.result == QUEUED,
                OutboxItem.status.in_((OutboxStatus.SENT.value, OutboxStatus.FAILED.value, OutboxStatus.CANCELLED.value)),
            )
            .limit(limit)
        ).all()
        for send_id, status, error in rows:
            if status == OutboxStatus.SENT.value:
                values = {"result": SENT, "reason": None}
            else:
                values = {"result": FAILED, "reason": f"delivery_failed: {error or status}"[:2000]}
            session.execute(
                update(ProactiveSend)
                .where(ProactiveSend.id == send_id, ProactiveSend.result == QUEUED)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
    return len(rows)
