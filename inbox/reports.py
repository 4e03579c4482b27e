"""Backlog and trend reports for managers, computed by aggregate queries in the database.

The backlog is every conversation that is open, pending or snoozed. Resolved conversations
are done, and closed ones were merged into another, so neither counts.

A conversation's wait starts at the customer's last message when no agent has replied since
(the rule of the ``no_agent_reply`` proactive trigger), else at the conversation's creation.

The trend counts per day of the workspace's time zone. The day boundaries are computed here
as UTC instants, and the queries compare rows with them (``Days``), so SQLite, which has no
time zones, and PostgreSQL count the same days.

The backlog at the end of a day is worked out backwards from the backlog now. Every
conversation created since then is taken away. Every one that left the backlog since then,
by a resolution or a merge, is added back, and every one reopened since then is taken away.
This relies on every status change having its activity row, which
``inbox.workflow.set_status`` writes.

The first response time of a conversation runs from its first customer message (automatic
mail such as an out-of-office reply aside) to the first agent reply after it that reached the
customer (``counted_agent_reply``), in wall-clock time. It counts on the day of that reply,
so a day's figures change afterwards only when one of its replies is sent late or reported
undelivered.
Medians and 90th percentiles interpolate between the two nearest values, as PostgreSQL's
``percentile_cont`` does; the database ranks the values and returns only those neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.types import Float, Integer

from channels.types import DeliveryState
from inbox.activity import Action
from inbox.errors import InvalidInput
from inbox.models import (
    Agent,
    Channel,
    Contact,
    Conversation,
    ConversationActivity,
    ConversationStatus,
    Direction,
    Message,
    OutboxItem,
    OutboxStatus,
    Priority,
    Team,
    UTCDateTime,
)

OPEN = ConversationStatus.OPEN.value
PENDING = ConversationStatus.PENDING.value
SNOOZED = ConversationStatus.SNOOZED.value
RESOLVED = ConversationStatus.RESOLVED.value
BACKLOG_STATUSES = (OPEN, PENDING, SNOOZED)
PRIORITIES = tuple(priority.value for priority in Priority)
UNDELIVERED_STATES = (DeliveryState.FAILED.value, DeliveryState.UNDELIVERED.value)

# (key, label, upper bound of the wait). The last bucket has no upper bound.
AGE_BUCKETS: tuple[tuple[str, str, timedelta | None], ...] = (
    ("under_1h", "Under 1 hour", timedelta(hours=1)),
    ("1h_4h", "1 to 4 hours", timedelta(hours=4)),
    ("4h_24h", "4 to 24 hours", timedelta(hours=24)),
    ("1d_3d", "1 to 3 days", timedelta(days=3)),
    ("over_3d", "Over 3 days", None),
)

DEFAULT_TREND_DAYS = 14
MAX_TREND_DAYS = 90
OLDEST_LIMIT = 10
# The median and the 90th percentile, as fractions, so the database computes their ranks exactly.
PERCENTILES = ((1, 2), (9, 10))


# ---- Results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """One row of a breakdown: ``key`` is a status, priority, bucket key or id (None for "none")."""

    key: str | int | None
    label: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "count": self.count}


@dataclass(frozen=True)
class WaitingConversation:
    """A backlog conversation with the time its wait started."""

    id: int
    contact: str
    subject: str | None
    status: str
    priority: str
    channel: str
    team: str | None
    assignee: str | None
    waiting_since: datetime

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "contact": self.contact,
            "subject": self.subject,
            "status": self.status,
            "priority": self.priority,
            "channel": self.channel,
            "team": self.team,
            "assignee": self.assignee,
            "waiting_since": self.waiting_since.isoformat(),
            "waiting_seconds": max(int((now - self.waiting_since).total_seconds()), 0),
        }


@dataclass(frozen=True)
class Backlog:
    """The backlog at ``generated_at``. ``by_team`` is empty when the workspace has no teams."""

    generated_at: datetime
    total: int
    unassigned: int
    by_status: list[Count]
    by_priority: list[Count]
    by_channel: list[Count]
    by_team: list[Count]
    by_age: list[Count]
    oldest: list[WaitingConversation]

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "total": self.total,
            "unassigned": self.unassigned,
            "by_status": [row.to_dict() for row in self.by_status],
            "by_priority": [row.to_dict() for row in self.by_priority],
            "by_channel": [row.to_dict() for row in self.by_channel],
            "by_team": [row.to_dict() for row in self.by_team],
            "by_age": [row.to_dict() for row in self.by_age],
            "oldest": [row.to_dict(self.generated_at) for row in self.oldest],
        }


@dataclass(frozen=True)
class TrendDay:
    """One day of the trend. Times are in seconds; None on a day without first responses."""

    day: date
    created: int
    resolved: int
    open_at_end: int
    first_responses: int
    median_first_response: float | None
    p90_first_response: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "created": self.created,
            "resolved": self.resolved,
            "open_at_end": self.open_at_end,
            "first_responses": self.first_responses,
            "median_first_response_seconds": _whole(self.median_first_response),
            "p90_first_response_seconds": _whole(self.p90_first_response),
        }


@dataclass(frozen=True)
class Trend:
    """Daily figures from ``first_day`` to ``last_day`` (both included) in ``time_zone``."""

    first_day: date
    last_day: date
    time_zone: str
    days: list[TrendDay] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "time_zone": self.time_zone,
            "days": [day.to_dict() for day in self.days],
        }


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds))


# ---- Backlog now ----------------------------------------------------------------------------


def backlog_report(session: Session, now: datetime, oldest_limit: int = OLDEST_LIMIT) -> Backlog:
    """Return the backlog at ``now`` (timezone-aware UTC), with the ``oldest_limit`` (at least 1)
    conversations that have waited longest. Reads only."""
    if oldest_limit < 1:
        raise ValueError(f"oldest_limit must be 1 or more, not {oldest_limit}")
    in_backlog = Conversation.status.in_(BACKLOG_STATUSES)

    # One grouped scan gives every breakdown but the ages; the groups number at most
    # statuses x priorities x channels x teams x 2.
    unassigned = case((Conversation.assignee_id.is_(None), 1), else_=0)
    groups = session.execute(
        select(
            Conversation.status, Conversation.priority, Conversation.channel_id, Conversation.team_id,
            unassigned, func.count(),
        )
        .where(in_backlog)
        .group_by(Conversation.status, Conversation.priority, Conversation.channel_id, Conversation.team_id, unassigned)
    ).all()
    by_status = dict.fromkeys(BACKLOG_STATUSES, 0)
    by_priority = dict.fromkeys(PRIORITIES, 0)
    by_channel: dict[int, int] = {}
    by_team: dict[int | None, int] = {}
    total = unassigned_total = 0
    for status, priority, channel_id, team_id, is_unassigned, count in groups:
        total += count
        unassigned_total += count if is_unassigned else 0
        by_status[status] = by_status.get(status, 0) + count
        by_priority[priority] = by_priority.get(priority, 0) + count
        by_channel[channel_id] = by_channel.get(channel_id, 0) + count
        by_team[team_id] = by_team.get(team_id, 0) + count

    ages, oldest = _ages_and_oldest(session, now, oldest_limit)
    return Backlog(
        generated_at=now,
        total=total,
        unassigned=unassigned_total,
        by_status=[Count(status, status.title(), count) for status, count in by_status.items()],
        by_priority=[Count(priority, priority.title(), by_priority[priority])
                     for priority in reversed(list(by_priority))],
        by_channel=_channel_counts(session, by_channel),
        by_team=_team_counts(session, by_team),
        by_age=ages,
        oldest=oldest,
    )


def waiting_since() -> ColumnElement[datetime]:
    """Return the SQL expression of when a conversation's wait started (see the module docstring)."""
    replied_since = exists().where(
        Message.conversation_id == Conversation.id,
        Message.direction == Direction.OUTBOUND.value,
        Message.agent_id.is_not(None),
        Message.created_at > Conversation.last_inbound_at,
    )
    expression = case(
        (and_(Conversation.last_inbound_at.is_not(None), ~replied_since), Conversation.last_inbound_at),
        else_=Conversation.created_at,
    )
    return type_coerce(expression, UTCDateTime)


def _ages_and_oldest(session: Session, now: datetime, limit: int) -> tuple[list[Count], list[WaitingConversation]]:
    """Return the count per age bucket and the ``limit`` conversations that have waited longest.

    One scan serves both: each bucket's count is a window aggregate over every backlog row,
    computed before ``LIMIT`` keeps the oldest rows, so every returned row carries all counts.
    """
    since = waiting_since()
    bounded = [(index, now - upper) for index, (_, _, upper) in enumerate(AGE_BUCKETS) if upper is not None]
    bucket = case(*[(since > cutoff, index) for index, cutoff in bounded], else_=len(AGE_BUCKETS) - 1)
    waiting = (
        select(Conversation.id.label("id"), since.label("since"), bucket.label("bucket"))
        .where(Conversation.status.in_(BACKLOG_STATUSES))
        .subquery("waiting")
    )
    bucket_counts = [
        func.count(case((waiting.c.bucket == index, 1))).over().label(f"bucket_{index}")
        for index in range(len(AGE_BUCKETS))
    ]
    oldest = (
        select(waiting.c.id, waiting.c.since, *bucket_counts)
        .order_by(waiting.c.since, waiting.c.id)
        .limit(limit)
        .subquery("oldest")
    )
    rows = session.execute(
        select(
            oldest, Contact.name, Conversation.subject, Conversation.status, Conversation.priority,
            Channel.name, Team.name, Agent.name,
        )
        .join(Conversation, Conversation.id == oldest.c.id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .join(Channel, Channel.id == Conversation.channel_id)
        .outerjoin(Team, Team.id == Conversation.team_id)
        .outerjoin(Agent, Agent.id == Conversation.assignee_id)
        .order_by(oldest.c.since, oldest.c.id)
    ).all()

    buckets = len(AGE_BUCKETS)
    counts = list(rows[0][2:2 + buckets]) if rows else [0] * buckets
    ages = [Count(key, label, counts[index]) for index, (key, label, _) in enumerate(AGE_BUCKETS)]
    waits = []
    for row in rows:
        contact, subject, status, priority, channel, team, assignee = row[2 + buckets:]
        waits.append(WaitingConversation(
            id=row.id, contact=contact or f"Contact {row.id}", subject=subject, status=status, priority=priority,
            channel=channel, team=team, assignee=assignee, waiting_since=row.since,
        ))
    return ages, waits


def _channel_counts(session: Session, counts: dict[int, int]) -> list[Count]:
    """Return a row per active channel and per channel with backlog, largest backlog first."""
    channels = session.execute(
        select(Channel.id, Channel.name, Channel.kind)
        .where(or_(Channel.is_active.is_(True), Channel.id.in_(list(counts))))
        .order_by(Channel.id)
    ).all()
    rows = [Count(channel_id, f"{name} ({kind})", counts.get(channel_id, 0)) for channel_id, name, kind in channels]
    return sorted(rows, key=lambda row: -row.count)


def _team_counts(session: Session, counts: dict[int | None, int]) -> list[Count]:
    """Return a row per team and one for conversations without a team; none without teams."""
    teams = session.execute(select(Team.id, Team.name).order_by(Team.name_key)).all()
    if not teams:
        return []
    rows = [Count(team_id, name, counts.get(team_id, 0)) for team_id, name in teams]
    rows.sort(key=lambda row: -row.count)
    return [*rows, Count(None, "No team", counts.get(None, 0))]


# ---- The trend --------------------------------------------------------------------------------


def parse_trend_range(args: Mapping[str, str], today: date) -> tuple[date, date]:
    """Return the (first, last) day that query parameters ask for. Raises ``InvalidInput``.

    ``days`` counts back from ``today`` (default 14); ``from`` and ``to`` are ISO dates, both
    included, and ``to`` defaults to ``today``. At most ``MAX_TREND_DAYS`` days, none after today.
    """
    days_text = (args.get("days") or "").strip()
    from_text = (args.get("from") or "").strip()
    to_text = (args.get("to") or "").strip()
    if days_text and from_text:
        raise InvalidInput("Give either days or from, not both.", field="days")

    last = _parse_day(to_text, "to") if to_text else today
    if last > today:
        raise InvalidInput(f"to must be today ({today.isoformat()}) or earlier, not {to_text}.", field="to")
    if from_text:
        first = _parse_day(from_text, "from")
        if first > last:
            raise InvalidInput(f"from ({from_text}) must not be after to ({last.isoformat()}).", field="from")
        span = (last - first).days + 1
        if span > MAX_TREND_DAYS:
            raise InvalidInput(
                f"The range has {span} days; choose at most {MAX_TREND_DAYS}.", field="from"
            )
        return first, last

    count = DEFAULT_TREND_DAYS
    if days_text:
        if not days_text.isdigit() or not 1 <= int(days_text) <= MAX_TREND_DAYS:
            raise InvalidInput(
                f"days must be a whole number from 1 to {MAX_TREND_DAYS}, not {days_text!r}.", field="days"
            )
        count = int(days_text)
    return last - timedelta(days=count - 1), last


def _parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a date such as 2026-01-31, not {text!r}.", field=name) from None


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """Return the UTC instant at which ``day`` begins in ``zone``.

    NOTE: where a daylight-saving change skips midnight, the day begins at the first
    instant after the gap, which ``zoneinfo`` gives for the skipped wall time with fold=0.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)


def trend_report(session: Session, first_day: date, last_day: date, zone: ZoneInfo) -> Trend:
    """Return the daily trend from ``first_day`` to ``last_day`` in ``zone``. Reads only.

    The last day's backlog at its end is the backlog now, whether or not that day has ended.
    """
    day_count = (last_day - first_day).days + 1
    days = [first_day + timedelta(days=offset) for offset in range(day_count)]
    starts = [day_start(day, zone) for day in days]
    range_end = day_start(last_day + timedelta(days=1), zone)
    table = Days([*starts, range_end])

    created = _per_day(session, table, Conversation, Conversation.created_at, [])
    resolved = _per_day(
        session, table, ConversationActivity, ConversationActivity.created_at, _to_resolved(),
        distinct=ConversationActivity.conversation_id,
    )
    exits = _per_day(session, table, ConversationActivity, ConversationActivity.created_at, _to_resolved())
    merged = _per_day(session, table, ConversationActivity, ConversationActivity.created_at, _merged_from_backlog())
    entries = _per_day(session, table, ConversationActivity, ConversationActivity.created_at, _from_resolved())
    responses = _first_responses(session, table)

    # Counting back from the backlog now: first the changes after the range, then day by day.
    def since_range(source: Any, column: Any, conditions: list[ColumnElement[bool]]) -> int:
        return session.scalar(select(func.count()).select_from(source).where(column >= range_end, *conditions)) or 0

    activity_time = ConversationActivity.created_at
    open_now = session.scalar(
        select(func.count()).select_from(Conversation).where(Conversation.status.in_(BACKLOG_STATUSES))
    ) or 0
    backlog = (
        open_now
        - since_range(Conversation, Conversation.created_at, [])
        + since_range(ConversationActivity, activity_time, _to_resolved())
        + since_range(ConversationActivity, activity_time, _merged_from_backlog())
        - since_range(ConversationActivity, activity_time, _from_resolved())
    )

    rows: list[TrendDay] = []
    for index in reversed(range(day_count)):
        count, median, p90 = responses.get(index, (0, None, None))
        rows.append(TrendDay(
            day=days[index],
            created=created.get(index, 0),
            resolved=resolved.get(index, 0),
            open_at_end=backlog,
            first_responses=count,
            median_first_response=median,
            p90_first_response=p90,
        ))
        backlog = backlog - created.get(index, 0) + exits.get(index, 0) + merged.get(index, 0) - entries.get(index, 0)
    rows.reverse()
    return Trend(first_day, last_day, str(zone.key), rows)


class Days:
    """Consecutive days, given by their boundaries as UTC instants, to group rows by.

    A row's day is found by a binary search written as nested ``CASE`` expressions, about
    seven comparisons for 90 days, because a join against a list of days compared every
    row with every day.
    """

    def __init__(self, bounds: list[datetime]):
        self.bounds = bounds

    def covers(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.bounds[0], column < self.bounds[-1])

    def index(self, column: Any) -> ColumnElement[int]:
        """Return the 0-based day of ``column``, for values that ``covers`` admits."""
        return self._search(column, 0, len(self.bounds) - 1)

    def _search(self, column: Any, low: int, high: int) -> Any:
        if high - low == 1:
            return literal_column(str(low), Integer)
        middle = (low + high) // 2
        bound = literal(self.bounds[middle], UTCDateTime)
        return case((column < bound, self._search(column, low, middle)), else_=self._search(column, middle, high))


def _per_day(
    session: Session, days: Days, source: Any, column: Any, conditions: list[ColumnElement[bool]],
    distinct: Any = None,
) -> dict[int, int]:
    """Count the rows of ``source`` that match ``conditions`` per day, by the time in ``column``."""
    columns = [days.index(column).label("day")]
    if distinct is not None:
        columns.append(distinct.label("distinct_key"))
    rows = select(*columns).select_from(source).where(days.covers(column), *conditions).subquery("rows")
    counted = func.count(rows.c.distinct_key.distinct()) if distinct is not None else func.count()
    return dict(session.execute(select(rows.c.day, counted).group_by(rows.c.day)).all())


def _to_resolved() -> list[ColumnElement[bool]]:
    return [
        ConversationActivity.action == Action.STATUS,
        ConversationActivity.details["to"].as_string() == RESOLVED,
        ConversationActivity.details["from"].as_string() != RESOLVED,
    ]


def _from_resolved() -> list[ColumnElement[bool]]:
    return [
        ConversationActivity.action == Action.STATUS,
        ConversationActivity.details["from"].as_string() == RESOLVED,
        ConversationActivity.details["to"].as_string() != RESOLVED,
    ]


def _merged_from_backlog() -> list[ColumnElement[bool]]:
    """Return the conditions that select the merges which took a conversation out of the backlog.

    A merge writes no status activity, so the status before it is the ``to`` of the latest
    status activity before the merge, or open for a conversation that never changed status.
    """
    earlier = aliased(ConversationActivity)
    status_before = (
        select(earlier.details["to"].as_string())
        .where(
            earlier.conversation_id == ConversationActivity.conversation_id,
            earlier.action == Action.STATUS,
            earlier.id < ConversationActivity.id,
        )
        .order_by(earlier.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return [ConversationActivity.action == Action.MERGED_INTO, func.coalesce(status_before, OPEN) != RESOLVED]


def _seconds_between(session: Session, later: Any, earlier: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "sqlite":
        return cast((func.julianday(later) - func.julianday(earlier)) * 86400.0, Float)
    return cast(extract("epoch", later - earlier), Float)


def counted_agent_reply(message: Any = Message) -> ColumnElement[bool]:
    """Return the condition for a ``message`` that counts as an agent's response to the customer.

    That is an outbound message written by an agent (so no proactive update, which has no
    agent) whose outbox item, if it has one, was sent, and that the provider did not report
    failed or undelivered. A reply still waiting or retrying in the outbox counts once sent.
    A failed, held or withdrawn reply never counts, because the customer did not get it.
    """
    not_sent = (
        select(OutboxItem.id)
        .where(OutboxItem.message_id == message.id, OutboxItem.status != OutboxStatus.SENT.value)
        .exists()
    )
    return and_(
        message.direction == Direction.OUTBOUND.value,
        message.agent_id.is_not(None),
        message.automatic.is_(None),
        or_(message.delivery_status.is_(None), message.delivery_status.not_in(UNDELIVERED_STATES)),
        ~not_sent,
    )


def _first_responses(session: Session, days: Days) -> dict[int, tuple[int, float | None, float | None]]:
    """Return (count, median, 90th percentile) of first response times per day index."""
    agent_reply = counted_agent_reply(Message)

    # Only a conversation with an agent reply in the range can have its first response there.
    candidates = (
        select(Message.conversation_id)
        .where(agent_reply, days.covers(Message.created_at))
        .distinct()
    )
    first_inbound = (
        select(Message.conversation_id.label("conversation_id"), func.min(Message.created_at).label("at"))
        .where(
            Message.conversation_id.in_(candidates),
            Message.direction == Direction.INBOUND.value,
            Message.automatic.is_(None),
        )
        .group_by(Message.conversation_id)
        .subquery("first_inbound")
    )
    reply = aliased(Message)
    first_reply = (
        select(
            first_inbound.c.conversation_id,
            type_coerce(first_inbound.c.at, UTCDateTime).label("inbound_at"),
            type_coerce(func.min(reply.created_at), UTCDateTime).label("reply_at"),
        )
        .join(reply, and_(
            reply.conversation_id == first_inbound.c.conversation_id,
            counted_agent_reply(reply),
            reply.created_at >= first_inbound.c.at,
        ))
        .group_by(first_inbound.c.conversation_id, first_inbound.c.at)
        .subquery("first_reply")
    )
    timed = (
        select(
            days.index(first_reply.c.reply_at).label("day"),
            _seconds_between(session, first_reply.c.reply_at, first_reply.c.inbound_at).label("seconds"),
        )
        .where(days.covers(first_reply.c.reply_at))
        .subquery("timed")
    )
    ranked = select(
        timed.c.day,
        timed.c.seconds,
        func.row_number().over(partition_by=timed.c.day, order_by=timed.c.seconds).label("position"),
        func.count().over(partition_by=timed.c.day).label("total"),
    ).subquery("ranked")
    # The 0-based ranks around each percentile: floor and ceiling of p * (n - 1), in integers.
    neighbours = []
    for numerator, denominator in PERCENTILES:
        scaled = numerator * (ranked.c.total - 1)
        neighbours += [scaled // denominator, (scaled + denominator - 1) // denominator]
    rows = session.execute(
        select(ranked.c.day, ranked.c.total, ranked.c.position, ranked.c.seconds)
        .where(or_(*[ranked.c.position - 1 == rank for rank in neighbours]))
    ).all()

    values: dict[int, dict[int, float]] = {}
    totals: dict[int, int] = {}
    for day, total, position, value in rows:
        values.setdefault(day, {})[position - 1] = float(value)
        totals[day] = total
    return {
        day: (totals[day], *[_percentile(ranks, totals[day], *fraction) for fraction in PERCENTILES])
        for day, ranks in values.items()
    }


def _percentile(ranks: dict[int, float], total: int, numerator: int, denominator: int) -> float:
    """Interpolate between the values at the floor and ceiling of ``numerator / denominator * (total - 1)``."""
    lower, remainder = divmod(numerator * (total - 1), denominator)
    if remainder == 0:
        return ranks[lower]
    return ranks[lower] + (ranks[lower + 1] - ranks[lower]) * remainder / denominator
