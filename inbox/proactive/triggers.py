"""The triggers of proactive updates: which conversations have a due occurrence at ``now``.

Each trigger turns the database state into ``Occurrence`` rows: a conversation, a key that
names the occurrence within the trigger, and the moment it became due. The key is what the
once-only guard (``ProactiveSend``'s unique key) is made of, so it must name the same
occurrence however often, and in however many processes, the sweep runs:

- ``status_changed`` and ``resolved``: one per status change, ``activity:<id>`` of its
  ``ConversationActivity``, while the conversation still has that status.
- ``assigned``: one per assignment to an agent, ``activity:<id>``, while that agent has it.
- ``no_agent_reply``: one per customer message left without an agent reply for ``hours``,
  ``inbound:<time of that message>``.
- ``queue_wait``: one per stay in the queue (open and unassigned) longer than ``hours``,
  ``queued:<id of the activity that unassigned it, 0 for never assigned>``.
- ``first_response_at_risk``: once per conversation, ``first-response``, when no agent has
  replied and either ``hours`` have passed or, checked when half and three quarters of them
  have, the wait so far plus the first-response estimate (``inbox.proactive.estimates``)
  exceeds ``hours``.
- ``periodic``: one per full ``every_hours`` period since the conversation started while
  it is open or pending, ``period:<n>``; only the latest period counts, so a long
  downtime sends one update, not one per missed period.

An agent reply, for ``no_agent_reply`` and ``first_response_at_risk``, is one that the
first-response figures count (``inbox.reports.counted_agent_reply``). A reply still in the
outbox counts once it is sent. A failed, held or withdrawn reply, or one that the provider
reported undelivered, never counts, because the customer did not get it.

``since`` bounds every trigger: an occurrence that became due before it is never found, so
a new template does not write to every old conversation, and a scheduler that was down for
longer than the catch-up window does not send stale updates. Hours are wall-clock hours,
or business hours with ``"business_hours": true`` (``BusinessHours``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from inbox.models import (
    Conversation,
    ConversationActivity,
    ConversationStatus,
    Message,
    UpdateTrigger,
)
from inbox.reports import counted_agent_reply

log = logging.getLogger(__name__)

STATUS_CHANGED = UpdateTrigger.STATUS_CHANGED.value
ASSIGNED = UpdateTrigger.ASSIGNED.value
NO_AGENT_REPLY = UpdateTrigger.NO_AGENT_REPLY.value
QUEUE_WAIT = UpdateTrigger.QUEUE_WAIT.value
FIRST_RESPONSE_AT_RISK = UpdateTrigger.FIRST_RESPONSE_AT_RISK.value
PERIODIC = UpdateTrigger.PERIODIC.value
RESOLVED = UpdateTrigger.RESOLVED.value
TRIGGERS = tuple(trigger.value for trigger in UpdateTrigger)

OPEN = ConversationStatus.OPEN.value
PENDING = ConversationStatus.PENDING.value
RESOLVED_STATUS = ConversationStatus.RESOLVED.value
# "While open" for periodic updates: the customer is still waiting on someone.
PERIODIC_STATUSES = (OPEN, PENDING)
# Conversations per IN list when the triggers look up messages or activities.
CHUNK = 500
# An estimate costs a few queries that grow with the queue. It is requested only when a
# wait has just passed half or three quarters of its first-response target, within
# RISK_CHECK_WINDOW, so a sweep every minute requests it twice at each point. A sweep
# requests at most MAX_ESTIMATES of them, oldest conversations first.
# NOTE: a scheduler that is down over both points judges that wait by the target alone.
RISK_CHECKPOINTS = (0.5, 0.75)
RISK_CHECK_WINDOW = timedelta(minutes=2)
MAX_ESTIMATES = 50

# The expected remaining wait for a conversation's first agent reply, or None when unknown.
FirstResponseEstimate = Callable[[Session, Conversation, datetime], timedelta | None]


@dataclass(frozen=True)
class Occurrence:
    """One due occurrence of a trigger for one conversation.

    ``agent_id`` is the agent the occurrence is about: the one who resolved the
    conversation, or the one it was assigned to; else None.
    """

    conversation_id: int
    key: str
    due_at: datetime
    agent_id: int | None = None


@dataclass(frozen=True)
class BusinessHours:
    """The workspace's working time: ``start`` to ``end`` local time on ``days`` (0 is Monday)."""

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    start: time = time(9, 0)
    end: time = time(17, 0)
    days: frozenset[int] = frozenset(range(5))

    def _day_span(self, day: date) -> tuple[datetime, datetime] | None:
        """Return the UTC span of business hours on the local ``day``, or None on a day off."""
        if day.weekday() not in self.days or self.end <= self.start:
            return None
        opens = datetime.combine(day, self.start, self.zone).astimezone(timezone.utc)
        closes = datetime.combine(day, self.end, self.zone).astimezone(timezone.utc)
        return opens, closes

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Return the business time between two UTC instants (zero when ``end`` is earlier).

        Only the first week and the days after the last whole week are walked; the weeks
        between count a normal week each, so the cost does not grow with the span.
        """
        if end <= start:
            return timedelta(0)
        first_day = start.astimezone(self.zone).date()
        last_day = end.astimezone(self.zone).date()
        skipped_weeks = max(0, (last_day - first_day).days // 7 - 2)
        if not skipped_weeks:
            return self._walk(first_day, last_day, start, end)
        # NOTE: a skipped week with a daylight saving change counts its normal length,
        # so a long span may be off by the hour of each change inside it.
        resume = first_day + timedelta(days=7 * (1 + skipped_weeks))
        return (
            self._walk(first_day, first_day + timedelta(days=6), start, end)
            + skipped_weeks * self.week_length()
            + self._walk(resume, last_day, start, end)
        )

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """Return the UTC instant when ``duration`` of business time after ``start`` has passed.

        Raises ``ValueError`` when the business hours contain no time at all.
        """
        if duration <= timedelta(0):
            return start
        week = self.week_length()
        if week <= timedelta(0):
            raise ValueError("the business hours are empty: no working day, or end not after start")
        remaining = duration
        # The same local time whole weeks later lies exactly that many business weeks on.
        skipped_weeks = int(remaining / week) - 1
        if skipped_weeks > 0:
            local = start.astimezone(self.zone).replace(tzinfo=None) + timedelta(days=7 * skipped_weeks)
            start = local.replace(tzinfo=self.zone).astimezone(timezone.utc)
            remaining -= week * skipped_weeks
        day = start.astimezone(self.zone).date()
        while True:
            span = self._day_span(day)
            if span is not None:
                opens, closes = max(span[0], start), span[1]
                if closes > opens:
                    if closes - opens >= remaining:
                        return opens + remaining
                    remaining -= closes - opens
            day += timedelta(days=1)

    def subtract(self, end: datetime, duration: timedelta) -> datetime:
        """Return the latest UTC instant from which ``duration`` of business time runs until ``end``.

        Raises ``ValueError`` when the business hours contain no time at all.
        """
        if duration <= timedelta(0):
            return end
        week = self.week_length()
        if week <= timedelta(0):
            raise ValueError("the business hours are empty: no working day, or end not after start")
        remaining = duration
        skipped_weeks = int(remaining / week) - 1
        if skipped_weeks > 0:
            local = end.astimezone(self.zone).replace(tzinfo=None) - timedelta(days=7 * skipped_weeks)
            end = local.replace(tzinfo=self.zone).astimezone(timezone.utc)
            remaining -= week * skipped_weeks
        day = end.astimezone(self.zone).date()
        while True:
            span = self._day_span(day)
            if span is not None:
                opens, closes = span[0], min(span[1], end)
                if closes > opens:
                    if closes - opens >= remaining:
                        return closes - remaining
                    remaining -= closes - opens
            day -= timedelta(days=1)

    def week_length(self) -> timedelta:
        anchor = date(2001, 1, 1)
        per_day = datetime.combine(anchor, self.end) - datetime.combine(anchor, self.start)
        return max(per_day, timedelta(0)) * len(self.days)

    def _walk(self, first: date, last: date, start: datetime, end: datetime) -> timedelta:
        """Add up the business hours of the local days ``first`` to ``last`` within [start, end]."""
        total = timedelta(0)
        day = first
        while day <= last:
            span = self._day_span(day)
            if span is not None:
                opens, closes = max(span[0], start), min(span[1], end)
                if closes > opens:
                    total += closes - opens
            day += timedelta(days=1)
        return total


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_business_hours(value: str, zone: ZoneInfo) -> BusinessHours:
    """Return the business hours in a setting like "mon-fri 09:00-17:00" or "mon,wed 08:30-12:00".

    Raises ``ValueError`` with the expected form.
    """
    form = 'give days and hours like "mon-fri 09:00-17:00"'
    try:
        days_part, hours_part = value.strip().lower().split()
        start_text, end_text = hours_part.split("-")
        start = time.fromisoformat(start_text)
        end = time.fromisoformat(end_text)
    except ValueError:
        raise ValueError(f"business hours {value!r} are invalid; {form}.") from None
    days: set[int] = set()
    for item in days_part.split(","):
        first, _, last = item.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"business hours {value!r} name an unknown day; use {', '.join(WEEKDAYS)}.")
        low, high = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if high < low:
            raise ValueError(f"business hours {value!r}: the day range {item!r} runs backwards.")
        days.update(range(low, high + 1))
    if end <= start:
        raise ValueError(f"business hours {value!r}: the end must be after the start.")
    return BusinessHours(zone=zone, start=start, end=end, days=frozenset(days))


def hours_param(params: dict[str, Any], name: str = "hours") -> timedelta:
    """Return a trigger's hours parameter as a duration. Raises ``ValueError`` when it is missing."""
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"trigger parameter {name!r} must be a positive number of hours, not {value!r}")
    return timedelta(hours=float(value))


@dataclass(frozen=True)
class Clock:
    """Measures waits in wall-clock or business time, as a trigger's parameters ask."""

    business_hours: BusinessHours | None

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        if self.business_hours is None:
            return max(end - start, timedelta(0))
        return self.business_hours.elapsed(start, end)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        if self.business_hours is None:
            return start + duration
        return self.business_hours.add(start, duration)

    def earliest_start(self, since: datetime, duration: timedelta) -> datetime:
        """Return a time before which a wait of ``duration`` cannot end at ``since`` or later.

        Queries use it to leave out rows whose occurrence fell before the catch-up window.
        A wait that starts earlier has more than ``duration`` before ``since``.
        """
        if self.business_hours is None:
            return since - duration
        return self.business_hours.subtract(since, duration + timedelta(seconds=1))


def find_due(
    session: Session,
    trigger: str,
    params: dict[str, Any],
    *,
    since: datetime,
    now: datetime,
    business_hours: BusinessHours,
    recorded: Collection[tuple[int, str]] = frozenset(),
    first_response_estimate: FirstResponseEstimate | None = None,
) -> list[Occurrence]:
    """Return the occurrences of ``trigger`` that became due between ``since`` and ``now``.

    ``recorded`` contains the (conversation id, key) pairs already handled; they are left
    out before the costlier checks. Raises ``ValueError`` for an unknown trigger or invalid
    parameters.
    """
    clock = Clock(business_hours if params.get("business_hours") else None)
    if trigger == STATUS_CHANGED:
        to_status = params.get("to_status")
        if not isinstance(to_status, str):
            raise ValueError(f"trigger parameter 'to_status' must be a status, not {to_status!r}")
        return _status_changes(session, to_status, params.get("from_status"), since, now, recorded)
    if trigger == RESOLVED:
        return _status_changes(session, RESOLVED_STATUS, None, since, now, recorded)
    if trigger == ASSIGNED:
        return _assignments(session, since, now, recorded)
    if trigger == NO_AGENT_REPLY:
        return _no_agent_reply(session, hours_param(params), clock, since, now, recorded)
    if trigger == QUEUE_WAIT:
        return _queue_wait(session, hours_param(params), clock, since, now, recorded)
    if trigger == FIRST_RESPONSE_AT_RISK:
        return _first_response_at_risk(
            session, hours_param(params), clock, since, now, recorded, first_response_estimate
        )
    if trigger == PERIODIC:
        return _periodic(session, hours_param(params, "every_hours"), clock, since, now, recorded)
    raise ValueError(f"unknown trigger {trigger!r}; use one of {', '.join(TRIGGERS)}")


def still_applies(session: Session, trigger: str, params: dict[str, Any], conversation: Conversation, key: str) -> bool:
    """Return whether a deferred occurrence should still go out now that its time has come.

    A status update whose status has changed since, an assignment taken back, or a wait
    that an agent ended by replying, is no longer news.
    """
    if trigger in (STATUS_CHANGED, RESOLVED):
        to_status = RESOLVED_STATUS if trigger == RESOLVED else params.get("to_status")
        return conversation.status == to_status
    if trigger == ASSIGNED:
        activity = session.get(ConversationActivity, _activity_id(key))
        target = (activity.details or {}).get("to") if activity is not None else None
        return isinstance(target, dict) and conversation.assignee_id == target.get("id")
    if trigger == NO_AGENT_REPLY:
        waiting_since = datetime.fromisoformat(key.removeprefix("inbound:"))
        replied = _last_agent_replies(session, [conversation.id]).get(conversation.id)
        return conversation.status == OPEN and (replied is None or replied <= waiting_since)
    if trigger == QUEUE_WAIT:
        return conversation.status == OPEN and conversation.assignee_id is None
    if trigger == FIRST_RESPONSE_AT_RISK:
        return conversation.status == OPEN and conversation.id not in _last_agent_replies(session, [conversation.id])
    if trigger == PERIODIC:
        return conversation.status in PERIODIC_STATUSES
    return False


def _activity_id(key: str) -> int:
    return int(key.removeprefix("activity:"))


# ---- Triggers on activity rows ------------------------------------------------------------


def _status_changes(
    session: Session, to_status: str, from_status: Any, since: datetime, now: datetime,
    recorded: Collection[tuple[int, str]],
) -> list[Occurrence]:
    rows = session.execute(
        select(
            ConversationActivity.id, ConversationActivity.conversation_id, ConversationActivity.agent_id,
            ConversationActivity.details, ConversationActivity.created_at,
            Conversation.status, Conversation.assignee_id,
        )
        .join(Conversation, Conversation.id == ConversationActivity.conversation_id)
        .where(
            ConversationActivity.action == "status",
            ConversationActivity.created_at >= since,
            ConversationActivity.created_at <= now,
            Conversation.status == to_status,
        )
        .order_by(ConversationActivity.id)
    ).all()
    found = []
    for activity_id, conversation_id, agent_id, details, created_at, _, assignee_id in rows:
        details = details or {}
        if details.get("to") != to_status:
            continue
        if from_status and details.get("from") != from_status:
            continue
        key = f"activity:{activity_id}"
        if (conversation_id, key) in recorded:
            continue
        found.append(Occurrence(conversation_id, key, created_at, agent_id or assignee_id))
    return _latest_per_conversation(found)


def _assignments(
    session: Session, since: datetime, now: datetime, recorded: Collection[tuple[int, str]]
) -> list[Occurrence]:
    rows = session.execute(
        select(
            ConversationActivity.id, ConversationActivity.conversation_id, ConversationActivity.details,
            ConversationActivity.created_at, Conversation.assignee_id,
        )
        .join(Conversation, Conversation.id == ConversationActivity.conversation_id)
        .where(
            ConversationActivity.action == "assignee",
            ConversationActivity.created_at >= since,
            ConversationActivity.created_at <= now,
            Conversation.assignee_id.is_not(None),
        )
        .order_by(ConversationActivity.id)
    ).all()
    found = []
    for activity_id, conversation_id, details, created_at, assignee_id in rows:
        target = (details or {}).get("to")
        if not isinstance(target, dict) or target.get("id") != assignee_id:
            continue
        key = f"activity:{activity_id}"
        if (conversation_id, key) not in recorded:
            found.append(Occurrence(conversation_id, key, created_at, assignee_id))
    return _latest_per_conversation(found)


def _latest_per_conversation(found: Iterable[Occurrence]) -> list[Occurrence]:
    """Keep the newest occurrence of each conversation: two changes in one sweep make one update."""
    latest: dict[int, Occurrence] = {}
    for occurrence in found:
        latest[occurrence.conversation_id] = occurrence
    return sorted(latest.values(), key=lambda occurrence: (occurrence.due_at, occurrence.conversation_id))


# ---- Triggers on waits --------------------------------------------------------------------


def _last_agent_replies(session: Session, conversation_ids: list[int]) -> dict[int, datetime]:
    """Return the time of the newest agent reply of each conversation that has one.

    Only replies that ``counted_agent_reply`` counts are taken, as in the first-response
    figures, so a reply that did not reach the customer leaves them waiting.
    """
    replies: dict[int, datetime] = {}
    for index in range(0, len(conversation_ids), CHUNK):
        chunk = conversation_ids[index:index + CHUNK]
        rows = session.execute(
            select(Message.conversation_id, func.max(Message.created_at))
            .where(Message.conversation_id.in_(chunk), counted_agent_reply(Message))
            .group_by(Message.conversation_id)
        ).all()
        for conversation_id, created_at in rows:
            # func.max bypasses the column type, so SQLite returns the stored text.
            replies[conversation_id] = _as_utc(created_at)
    return replies


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _no_agent_reply(
    session: Session, hours: timedelta, clock: Clock, since: datetime, now: datetime,
    recorded: Collection[tuple[int, str]],
) -> list[Occurrence]:
    # Business time never runs faster than the wall clock, so this bound holds for both.
    rows = session.execute(
        select(Conversation.id, Conversation.last_inbound_at, Conversation.assignee_id)
        .where(
            Conversation.status == OPEN,
            Conversation.last_inbound_at.is_not(None),
            Conversation.last_inbound_at <= now - hours,
            Conversation.last_inbound_at >= clock.earliest_start(since, hours),
        )
    ).all()
    candidates = []
    for conversation_id, waiting_since, assignee_id in rows:
        key = f"inbound:{waiting_since.isoformat()}"
        if (conversation_id, key) in recorded:
            continue
        due_at = clock.add(waiting_since, hours)
        if since <= due_at <= now:
            candidates.append(Occurrence(conversation_id, key, due_at, assignee_id))
    replies = _last_agent_replies(session, [occurrence.conversation_id for occurrence in candidates])
    return [
        occurrence for occurrence in candidates
        if occurrence.conversation_id not in replies
        or replies[occurrence.conversation_id] <= datetime.fromisoformat(occurrence.key.removeprefix("inbound:"))
    ]


def _queue_wait(
    session: Session, hours: timedelta, clock: Clock, since: datetime, now: datetime,
    recorded: Collection[tuple[int, str]],
) -> list[Occurrence]:
    earliest = clock.earliest_start(since, hours)
    # A stay in the queue starts when the conversation does or when its agent is taken away,
    # so only conversations with one of those after ``earliest`` can be due in the window.
    recently_unassigned = (
        select(ConversationActivity.conversation_id)
        .where(ConversationActivity.action == "assignee", ConversationActivity.created_at >= earliest)
    )
    rows = session.execute(
        select(Conversation.id, Conversation.created_at)
        .where(
            Conversation.status == OPEN,
            Conversation.assignee_id.is_(None),
            Conversation.created_at <= now - hours,
            or_(Conversation.created_at >= earliest, Conversation.id.in_(recently_unassigned)),
        )
    ).all()
    unassigned = _last_unassignments(session, [conversation_id for conversation_id, _ in rows])
    found = []
    for conversation_id, created_at in rows:
        activity_id, queued_since = unassigned.get(conversation_id, (0, created_at))
        key = f"queued:{activity_id}"
        if (conversation_id, key) in recorded:
            continue
        due_at = clock.add(queued_since, hours)
        if since <= due_at <= now:
            found.append(Occurrence(conversation_id, key, due_at))
    return found


def _last_unassignments(session: Session, conversation_ids: list[int]) -> dict[int, tuple[int, datetime]]:
    """Return the newest assignee activity of each conversation that has one: (id, time).

    For an unassigned conversation that activity is the one that took its agent away.
    """
    found: dict[int, tuple[int, datetime]] = {}
    for index in range(0, len(conversation_ids), CHUNK):
        chunk = conversation_ids[index:index + CHUNK]
        newest = (
            select(func.max(ConversationActivity.id))
            .where(ConversationActivity.conversation_id.in_(chunk), ConversationActivity.action == "assignee")
            .group_by(ConversationActivity.conversation_id)
        )
        rows = session.execute(
            select(ConversationActivity.conversation_id, ConversationActivity.id, ConversationActivity.created_at)
            .where(ConversationActivity.id.in_(newest))
        ).all()
        for conversation_id, activity_id, created_at in rows:
            found[conversation_id] = (activity_id, created_at)
    return found


def _first_response_at_risk(
    session: Session, hours: timedelta, clock: Clock, since: datetime, now: datetime,
    recorded: Collection[tuple[int, str]], estimate: FirstResponseEstimate | None,
) -> list[Occurrence]:
    key = "first-response"
    rows = session.execute(
        select(Conversation.id, Conversation.created_at)
        .where(
            Conversation.status == OPEN,
            Conversation.created_at <= now,
            Conversation.created_at >= clock.earliest_start(since, hours),
        )
        .order_by(Conversation.created_at, Conversation.id)
    ).all()
    candidates = [(conversation_id, created_at) for conversation_id, created_at in rows
                  if (conversation_id, key) not in recorded]
    replied = _last_agent_replies(session, [conversation_id for conversation_id, _ in candidates])
    found = []
    estimates_left = MAX_ESTIMATES
    for conversation_id, created_at in candidates:
        if conversation_id in replied:
            continue
        target = clock.add(created_at, hours)
        if target <= now:
            due_at = target
        elif estimate is not None and estimates_left > 0 and _at_checkpoint(clock.elapsed(created_at, now), hours):
            estimates_left -= 1
            conversation = session.get(Conversation, conversation_id)
            remaining = estimate(session, conversation, now) if conversation is not None else None
            if remaining is None or now + remaining <= target:
                continue
            due_at = now  # the estimate says the target will be missed
        else:
            continue
        if since <= due_at <= now:
            found.append(Occurrence(conversation_id, key, due_at))
    return found


def _at_checkpoint(elapsed: timedelta, hours: timedelta) -> bool:
    """Return whether a wait has just passed one of the points where its estimate is asked."""
    return any(hours * share <= elapsed < hours * share + RISK_CHECK_WINDOW for share in RISK_CHECKPOINTS)


def _periodic(
    session: Session, every: timedelta, clock: Clock, since: datetime, now: datetime,
    recorded: Collection[tuple[int, str]],
) -> list[Occurrence]:
    rows = session.execute(
        select(Conversation.id, Conversation.created_at)
        .where(Conversation.status.in_(PERIODIC_STATUSES), Conversation.created_at <= now - every)
    ).all()
    found = []
    for conversation_id, created_at in rows:
        period = int(clock.elapsed(created_at, now) / every)
        if period < 1:
            continue
        key = f"period:{period}"
        if (conversation_id, key) in recorded:
            continue
        due_at = clock.add(created_at, every * period)
        if since <= due_at <= now:
            found.append(Occurrence(conversation_id, key, due_at))
    return found
