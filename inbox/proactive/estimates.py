"""Queue position and expected waiting times, from the team's handling in recent weeks.

The method, which docs/proactive-updates.md also explains for managers:

1. **Queue position.** Count the open conversations of the same team that no agent has
   answered yet and that an agent will take first, because the first-response rate below
   drains only those. For a conversation without a team, the team is "no team". Ahead are those with a
   higher priority, and those with the same priority whose customer wrote their latest
   message earlier. The position is that count plus one, and 0 for a
   conversation that is not open, because it is not in the queue.
2. **History.** Conversations that started in the last ``HISTORY`` * 2 (8 weeks) and reached a
   milestone in the last ``HISTORY`` (4 weeks): the first agent reply (first response) or a
   change to "resolved" (resolution). For each, the time from the start of the conversation to
   the milestone. Only agent replies that reached the customer count, as
   ``inbox.reports.counted_agent_reply`` defines them: proactive updates and failed, held or
   withdrawn replies do not.
3. **Rates and medians.** The first-response rate is the number of first responses in the
   window divided by the hours the history covers, and the resolution rate likewise. Both are
   per wall-clock hour, nights and weekends included. The history covers the window, unless
   the workspace's (or team's) first conversation started within it. Then it covers the time
   since that conversation started, but at least ``MIN_COVERED``. The medians are those of
   the handling times.
4. **First response**, for a conversation no agent has answered yet: the larger of the time
   the conversations ahead take at the first-response rate ((position - 1) / rate) and the
   median remaining wait, which is the median of ``t - waited`` over the first-response
   times ``t`` longer than the time already waited. At least ``MIN_ESTIMATE``. When fewer
   than ``MIN_LONGER_SAMPLES`` first responses took longer than the wait so far, the history
   cannot tell how much longer it will be, so the estimate is None.
5. **Resolution**, for a conversation that is not resolved: the largest of the median
   remaining time to resolution (computed like the remaining wait, from the conversation's
   age), the first-response estimate plus the median time from first response to
   resolution, and the time the conversations ahead take at the resolution rate. At least
   ``MIN_ESTIMATE``. It is None while the first-response estimate of an unanswered
   conversation is None.

Each estimate needs its own history. The first-response estimate needs at least
``MIN_SAMPLES`` first responses, and the resolution estimate at least ``MIN_SAMPLES``
resolutions. With fewer, it is None. The team's own history is used when it has that many first responses or that
many resolutions, else the whole workspace's. None means too little history to say anything
useful, and a template's placeholder is then empty.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from inbox.activity import Action
from inbox.models import (
    Conversation,
    ConversationActivity,
    ConversationStatus,
    Message,
    Priority,
)
from inbox.reports import counted_agent_reply

HISTORY = timedelta(weeks=4)
# Conversations that started longer ago than this are left out of the history, which keeps the
# queries bounded. A first reply after eight weeks would be an outlier anyway.
STARTED_WITHIN = HISTORY * 2
MIN_SAMPLES = 5
# A remaining wait needs this many past first responses (or resolutions) that took longer
# than the time already waited; fewer say little about how much longer it will take.
MIN_LONGER_SAMPLES = 3
# The shortest span a history is taken to cover, so that a workspace minutes old does not
# divide its first few replies by a few minutes and promise an implausibly fast queue.
MIN_COVERED = timedelta(hours=1)
MIN_ESTIMATE = timedelta(minutes=5)
# The statistics of one team are reused for this long within one database session.
STATS_REUSE = timedelta(minutes=10)

OPEN = ConversationStatus.OPEN.value
RESOLVED = ConversationStatus.RESOLVED.value
UNRESOLVED = (OPEN, ConversationStatus.PENDING.value, ConversationStatus.SNOOZED.value)
PRIORITY_ORDER = [priority.value for priority in Priority]

_CACHE_KEY = "switchboard.proactive.handling_stats"


@dataclass(frozen=True)
class Estimate:
    """A conversation's queue position and its expected remaining waits."""

    # 1 is next; 0 when the conversation is not open and so not in the queue.
    queue_position: int
    # None once an agent has replied, or with too little history.
    first_response: timedelta | None
    # None once resolved, or with too little history.
    resolution: timedelta | None
    # "team" or "workspace": whose history the times come from; None without enough history.
    basis: str | None = None
    # The larger of the counts of first responses and resolutions in that history.
    samples: int = 0


@dataclass(frozen=True)
class HandlingStats:
    """The handling of one team (or the workspace) over ``HISTORY``."""

    basis: str
    first_responses: int
    resolutions: int
    # Events per wall-clock hour of the covered span.
    first_response_rate: float
    resolution_rate: float
    # The handling times in seconds, sorted, from the start of each conversation.
    first_response_seconds: tuple[float, ...]
    resolution_seconds: tuple[float, ...]
    # From the first agent reply to resolution, for resolved conversations that had one.
    median_response_to_resolution: timedelta | None

    @property
    def median_first_response(self) -> timedelta | None:
        return _median_of_seconds(self.first_response_seconds)

    @property
    def median_resolution(self) -> timedelta | None:
        return _median_of_seconds(self.resolution_seconds)

    @property
    def samples(self) -> int:
        """The larger of the counts of first responses and resolutions."""
        return max(self.first_responses, self.resolutions)


def estimate_for(session: Session, conversation: Conversation, now: datetime) -> Estimate:
    """Return the conversation's queue position and estimated first-response and resolution times.

    ``now`` is timezone-aware UTC. It only reads, and this module's docstring explains the method.
    """
    position = queue_position(session, conversation)
    stats = handling_stats(session, conversation.team_id, now)
    if stats is None:
        return Estimate(position, None, None)

    ahead = max(position - 1, 0)
    age = now - conversation.created_at
    first_response = None
    unanswered = _first_agent_reply_at(session, conversation.id) is None
    if unanswered and conversation.status in UNRESOLVED and stats.first_responses >= MIN_SAMPLES:
        remaining = _median_remaining(stats.first_response_seconds, age)
        if remaining is not None:
            first_response = _at_least_minimum([_drain_time(ahead, stats.first_response_rate), remaining])

    resolution = None
    waits_for_first_response = unanswered and first_response is None
    if conversation.status in UNRESOLVED and stats.resolutions >= MIN_SAMPLES and not waits_for_first_response:
        candidates = [
            _drain_time(ahead, stats.resolution_rate),
            _median_remaining(stats.resolution_seconds, age),
        ]
        if stats.median_response_to_resolution is not None:
            candidates.append((first_response or timedelta(0)) + stats.median_response_to_resolution)
        resolution = _at_least_minimum(candidates)

    return Estimate(position, first_response, resolution, stats.basis, stats.samples)


def _median_remaining(sorted_seconds: tuple[float, ...], waited: timedelta) -> timedelta | None:
    """Return the median of ``t - waited`` over the times ``t`` longer than ``waited``.

    None when fewer than ``MIN_LONGER_SAMPLES`` times are longer, because then the history
    holds too few waits like this one to tell how it ends.
    """
    waited_seconds = waited.total_seconds()
    longer = [seconds - waited_seconds for seconds in sorted_seconds if seconds > waited_seconds]
    if len(longer) < MIN_LONGER_SAMPLES:
        return None
    return timedelta(seconds=statistics.median(longer))


def _drain_time(count: int, rate_per_hour: float) -> timedelta | None:
    if rate_per_hour <= 0:
        return None
    return timedelta(hours=count / rate_per_hour)


def _at_least_minimum(candidates: list[timedelta | None]) -> timedelta | None:
    """Return the largest known candidate, but at least ``MIN_ESTIMATE``; None if none is known."""
    known = [value for value in candidates if value is not None]
    return max(MIN_ESTIMATE, *known) if known else None


# ---- The queue ----------------------------------------------------------------------------


def _same_team(team_id: int | None) -> ColumnElement[bool]:
    return Conversation.team_id.is_(None) if team_id is None else Conversation.team_id == team_id


def _ahead(conversation: Conversation, since_column: Any, since: datetime) -> ColumnElement[bool]:
    """Return the condition for conversations an agent takes before ``conversation``."""
    rank = PRIORITY_ORDER.index(conversation.priority) if conversation.priority in PRIORITY_ORDER else 1
    higher = PRIORITY_ORDER[rank + 1:]
    same_and_older = and_(
        Conversation.priority == conversation.priority,
        or_(since_column < since, and_(since_column == since, Conversation.id < conversation.id)),
    )
    return or_(Conversation.priority.in_(higher), same_and_older)


def queue_position(session: Session, conversation: Conversation) -> int:
    """Return 1 plus the unanswered open conversations ahead of ``conversation``, or 0 if it is not open."""
    if conversation.status != OPEN:
        return 0
    waiting_since = func.coalesce(Conversation.last_inbound_at, Conversation.created_at)
    since = conversation.last_inbound_at or conversation.created_at
    ahead = session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(
            Conversation.status == OPEN,
            Conversation.id != conversation.id,
            _same_team(conversation.team_id),
            _ahead(conversation, waiting_since, since),
            ~_answered_by_agent(),
        )
    )
    return int(ahead or 0) + 1


def _answered_by_agent() -> ColumnElement[bool]:
    """Return the condition for conversations with at least one agent reply that reached the customer."""
    return (
        select(Message.id)
        .where(Message.conversation_id == Conversation.id, counted_agent_reply(Message))
        .exists()
    )


def _first_agent_reply_at(session: Session, conversation_id: int) -> datetime | None:
    return session.scalar(
        select(func.min(Message.created_at)).where(
            Message.conversation_id == conversation_id, counted_agent_reply(Message)
        )
    )


# ---- The history --------------------------------------------------------------------------


def handling_stats(session: Session, team_id: int | None, now: datetime) -> HandlingStats | None:
    """Return the team's handling statistics, the workspace's if the team has too few, or None.

    The result is kept in ``session.info`` for ``STATS_REUSE``, so a scheduler run that
    estimates many conversations reads the history once per team.
    """
    cache: dict[Any, tuple[datetime, HandlingStats | None]] = session.info.setdefault(_CACHE_KEY, {})
    cached = cache.get(team_id)
    if cached is not None and timedelta(0) <= now - cached[0] < STATS_REUSE:
        return cached[1]

    stats = None
    if team_id is not None:
        stats = _compute_stats(session, team_id, now)
    if stats is None or stats.samples < MIN_SAMPLES:
        stats = _compute_stats(session, None, now)
        if stats.samples < MIN_SAMPLES:
            stats = None
    cache[team_id] = (now, stats)
    return stats


def _compute_stats(session: Session, team_id: int | None, now: datetime) -> HandlingStats:
    window_start = now - HISTORY
    started_after = now - STARTED_WITHIN
    scope = [Conversation.created_at >= started_after, Conversation.created_at <= now]
    if team_id is not None:
        scope.append(Conversation.team_id == team_id)

    first_reply = (
        select(Message.conversation_id.label("conversation_id"), func.min(Message.created_at).label("at"))
        .where(counted_agent_reply(Message))
        .group_by(Message.conversation_id)
        .subquery()
    )
    responded = session.execute(
        select(Conversation.created_at, first_reply.c.at)
        .join(first_reply, first_reply.c.conversation_id == Conversation.id)
        .where(*scope, first_reply.c.at >= window_start, first_reply.c.at <= now)
    ).all()

    resolved_at = (
        select(
            ConversationActivity.conversation_id.label("conversation_id"),
            func.max(ConversationActivity.created_at).label("at"),
        )
        .where(
            ConversationActivity.action == Action.STATUS,
            ConversationActivity.details["to"].as_string() == RESOLVED,
            ConversationActivity.created_at >= window_start,
            ConversationActivity.created_at <= now,
        )
        .group_by(ConversationActivity.conversation_id)
        .subquery()
    )
    resolved = session.execute(
        select(Conversation.created_at, resolved_at.c.at, first_reply.c.at)
        .join(resolved_at, resolved_at.c.conversation_id == Conversation.id)
        .outerjoin(first_reply, first_reply.c.conversation_id == Conversation.id)
        .where(*scope)
    ).all()

    hours = _covered(session, scope, window_start, now).total_seconds() / 3600
    return HandlingStats(
        basis="workspace" if team_id is None else "team",
        first_responses=len(responded),
        resolutions=len(resolved),
        first_response_rate=len(responded) / hours,
        resolution_rate=len(resolved) / hours,
        first_response_seconds=_sorted_seconds([answered - started for started, answered in responded]),
        resolution_seconds=_sorted_seconds([done - started for started, done, _ in resolved]),
        median_response_to_resolution=_median(
            [done - answered for _, done, answered in resolved if answered is not None and answered <= done]
        ),
    )


def _covered(session: Session, scope: list[ColumnElement[bool]], window_start: datetime, now: datetime) -> timedelta:
    """Return the span of the window that the history covers, at least ``MIN_COVERED``.

    That is the whole window, unless the first conversation in scope started within it:
    a new workspace (or team) has handled conversations only since then.
    """
    first_started = session.scalar(select(func.min(Conversation.created_at)).where(*scope))
    start = window_start if first_started is None else max(window_start, first_started)
    return max(now - start, MIN_COVERED)


def _sorted_seconds(durations: list[timedelta]) -> tuple[float, ...]:
    return tuple(sorted(duration.total_seconds() for duration in durations))


def _median_of_seconds(seconds: tuple[float, ...]) -> timedelta | None:
    return timedelta(seconds=statistics.median(seconds)) if seconds else None


def _median(durations: list[timedelta]) -> timedelta | None:
    if not durations:
        return None
    return timedelta(seconds=statistics.median(duration.total_seconds() for duration in durations))
