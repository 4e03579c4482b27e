"""Queue position and estimated times, against histories generated with known numbers."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from inbox.activity import Action
from inbox.agents import create_agent
from inbox.models import (
    Agent,
    Channel,
    Contact,
    Conversation,
    ConversationActivity,
    Message,
    OutboxItem,
    Team,
)
from inbox.proactive.context import describe_duration, update_context
from inbox.proactive.estimates import HISTORY, MIN_ESTIMATE, estimate_for, handling_stats, queue_position
from tests.conftest import AGENT_PASSWORD

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
_SIDS = itertools.count(1)


class History:
    """Builds conversations, agent replies and resolutions with chosen timestamps."""

    def __init__(self, session, channel: Channel, now: datetime = NOW):
        self.session = session
        self.channel = channel
        self.now = now
        self.agent = create_agent(session, "hist@example.com", "Hana Historian", AGENT_PASSWORD)
        self.contact = Contact(name="Maria Lopez")
        session.add(self.contact)
        session.flush()

    def conversation(self, started: datetime, *, status: str = "open", priority: str = "normal",
                     team: Team | None = None, last_inbound: datetime | None = None) -> Conversation:
        conversation = Conversation(
            channel_id=self.channel.id, contact_id=self.contact.id, status=status, priority=priority,
            team_id=team.id if team else None, created_at=started, last_message_at=started,
            last_inbound_at=last_inbound or started,
        )
        self.session.add(conversation)
        self.session.flush()
        return conversation

    def reply(self, conversation: Conversation, at: datetime, *, by_agent: bool = True) -> None:
        self.session.add(Message(
            conversation_id=conversation.id, channel_id=self.channel.id, direction="outbound",
            agent_id=self.agent.id if by_agent else None, provider_message_id=f"SM{next(_SIDS):032x}",
            text="On it", created_at=at,
        ))

    def resolve(self, conversation: Conversation, at: datetime) -> None:
        conversation.status = "resolved"
        self.session.add(ConversationActivity(
            conversation_id=conversation.id, action=Action.STATUS, details={"from": "open", "to": "resolved"},
            created_at=at,
        ))

    def handled(self, count: int, *, first_response: timedelta, resolution: timedelta,
                team: Team | None = None) -> None:
        """Add ``count`` conversations spread over the history window, each handled in the given times."""
        spacing = (HISTORY - resolution) / count
        for index in range(count):
            started = self.now - HISTORY + spacing * index
            conversation = self.conversation(started, team=team)
            self.reply(conversation, started + first_response)
            self.resolve(conversation, started + resolution)
        self.session.flush()


@pytest.fixture
def history(state, whatsapp_channel):
    with state.session_factory() as session:
        yield History(session, session.get(Channel, whatsapp_channel.id))


def _team(session, name: str) -> Team:
    team = Team(name=name, name_key=name.casefold())
    session.add(team)
    session.flush()
    return team


def test_queue_position_counts_backlog_ahead(history):
    session = history.session
    team = _team(session, "Billing")
    other = _team(session, "Shipping")
    subject = history.conversation(NOW - timedelta(hours=3), team=team)

    history.conversation(NOW - timedelta(hours=5), team=team)                      # older, same priority
    history.conversation(NOW - timedelta(hours=1), team=team, priority="urgent")   # newer but higher
    history.conversation(NOW - timedelta(hours=1), team=team)                      # newer, same priority
    history.conversation(NOW - timedelta(hours=9), team=team, priority="low")      # older but lower
    history.conversation(NOW - timedelta(hours=9), team=other)                     # another team
    history.conversation(NOW - timedelta(hours=9), team=team, status="pending")    # not waiting for an agent
    history.conversation(NOW - timedelta(hours=9))                                 # no team
    session.flush()

    assert queue_position(session, subject) == 3


def test_queue_position_skips_answered_conversations(history):
    session = history.session
    subject = history.conversation(NOW - timedelta(hours=1))
    answered = history.conversation(NOW - timedelta(hours=4))
    history.reply(answered, NOW - timedelta(hours=3))
    automatic_only = history.conversation(NOW - timedelta(hours=5))
    history.reply(automatic_only, NOW - timedelta(hours=4), by_agent=False)
    session.flush()

    # Only the conversation that had nothing but an automatic reply still waits for an agent.
    assert queue_position(session, subject) == 2


def test_queue_position_uses_latest_customer_message(history):
    session = history.session
    first = history.conversation(NOW - timedelta(days=2), last_inbound=NOW - timedelta(minutes=10))
    second = history.conversation(NOW - timedelta(hours=1))
    session.flush()

    assert queue_position(session, second) == 1
    assert queue_position(session, first) == 2


def test_queue_position_ties_break_by_id(history):
    session = history.session
    same_time = NOW - timedelta(hours=2)
    earlier = history.conversation(same_time)
    later = history.conversation(same_time)
    session.flush()

    assert queue_position(session, earlier) == 1
    assert queue_position(session, later) == 2


@pytest.mark.parametrize("status", ["pending", "snoozed", "resolved"])
def test_queue_position_zero_outside_queue(history, status):
    conversation = history.conversation(NOW - timedelta(hours=2), status=status)
    history.session.flush()

    assert queue_position(history.session, conversation) == 0


def test_estimate_without_history_has_no_times(history):
    history.handled(4, first_response=timedelta(hours=1), resolution=timedelta(hours=5))
    conversation = history.conversation(NOW - timedelta(minutes=5))
    history.session.flush()

    estimate = estimate_for(history.session, conversation, NOW)

    assert estimate.queue_position == 1
    assert estimate.first_response is None
    assert estimate.resolution is None
    assert estimate.basis is None


def test_estimate_uses_median_times_when_queue_is_empty(history):
    history.handled(40, first_response=timedelta(hours=2), resolution=timedelta(hours=10))
    conversation = history.conversation(NOW - timedelta(minutes=30))
    history.session.flush()

    estimate = estimate_for(history.session, conversation, NOW)

    assert estimate.queue_position == 1
    assert estimate.first_response == timedelta(hours=1, minutes=30)
    # The median from first response to resolution (8 hours) after the first response.
    assert estimate.resolution == timedelta(hours=9, minutes=30)
    assert estimate.basis == "workspace"
    assert estimate.samples == 40


def test_estimate_grows_with_queue_ahead(history):
    # 672 first responses in 4 weeks: one an hour.
    history.handled(672, first_response=timedelta(minutes=20), resolution=timedelta(hours=1))
    for hours in range(10, 16):
        history.conversation(NOW - timedelta(hours=hours))
    conversation = history.conversation(NOW - timedelta(minutes=1))
    history.session.flush()

    estimate = estimate_for(history.session, conversation, NOW)

    assert estimate.queue_position == 7
    assert estimate.first_response == pytest.approx(timedelta(hours=6), abs=timedelta(seconds=1))
    assert estimate.resolution == pytest.approx(timedelta(hours=6, minutes=40), abs=timedelta(seconds=1))


def test_estimate_never_below_minimum(history):
    history.handled(10, first_response=timedelta(hours=1), resolution=timedelta(hours=2))
    conversation = history.conversation(NOW - timedelta(minutes=58))
    history.session.flush()

    estimate = estimate_for(history.session, conversation, NOW)

    assert estimate.first_response == MIN_ESTIMATE
    # The minimum first-response estimate plus the median hour from first response to resolution.
    assert estimate.resolution == timedelta(hours=1, minutes=5)


def test_estimate_counts_time_already_waited(history):
    # Nine first responses after 1 to 9 minutes, one after 40 minutes.
    minutes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 40]
    for index, wait in enumerate(minutes):
        started = NOW - timedelta(days=10 - index)
        conversation = history.conversation(started)
        history.reply(conversation, started + timedelta(minutes=wait))
        history.resolve(conversation, started + timedelta(minutes=wait + 10))
    waiting = history.conversation(NOW - timedelta(minutes=34))
    history.session.flush()

    estimate = estimate_for(history.session, waiting, NOW)

    # Only one past wait was longer than 34 minutes: too few to tell how much longer.
    assert estimate.first_response is None
    assert estimate.resolution is None
    assert update_context(history.session, waiting, NOW)["first_response_estimate"] == ""


def test_estimate_remaining_wait_from_longer_waits(history):
    minutes = [5, 10, 20, 30, 50, 70, 90]
    for index, wait in enumerate(minutes):
        started = NOW - timedelta(days=10 - index)
        conversation = history.conversation(started)
        history.reply(conversation, started + timedelta(minutes=wait))
    waiting = history.conversation(NOW - timedelta(minutes=40))
    history.session.flush()

    estimate = estimate_for(history.session, waiting, NOW)

    # The waits longer than 40 minutes (50, 70, 90) have 30 minutes left at the median.
    assert estimate.first_response == timedelta(minutes=30)


def test_estimate_young_workspace_uses_covered_time(history):
    # A workspace 40 minutes old: five first replies and two resolutions within minutes.
    session = history.session
    for index in range(5):
        started = NOW - timedelta(minutes=40 - 5 * index)
        conversation = history.conversation(started)
        history.reply(conversation, started + timedelta(minutes=2))
        if index < 2:
            history.resolve(conversation, started + timedelta(minutes=6))
    history.conversation(NOW - timedelta(minutes=4))  # ahead in the queue
    waiting = history.conversation(NOW - timedelta(minutes=1))
    session.flush()

    estimate = estimate_for(session, waiting, NOW)
    stats = handling_stats(session, None, NOW)

    assert queue_position(session, waiting) == 2
    # Two resolutions are too few for a resolution estimate.
    assert estimate.resolution is None
    # Five first responses over the minimum covered hour, not over four weeks.
    assert stats.first_response_rate == pytest.approx(5.0)
    assert estimate.first_response is not None
    assert estimate.first_response < timedelta(hours=1)


def test_history_rate_over_covered_days(history):
    # A workspace two days old with 48 first responses: one an hour.
    started_at = NOW - timedelta(days=2)
    for index in range(48):
        conversation = history.conversation(started_at + timedelta(hours=index))
        history.reply(conversation, started_at + timedelta(hours=index, minutes=10))
    history.session.flush()

    stats = handling_stats(history.session, None, NOW)

    assert stats.first_response_rate == pytest.approx(1.0)
    assert stats.resolution_rate == 0


def test_estimate_ignores_replies_that_failed(history):
    session = history.session
    history.handled(10, first_response=timedelta(hours=1), resolution=timedelta(hours=3))
    conversation = history.conversation(NOW - timedelta(minutes=10))
    history.reply(conversation, NOW - timedelta(minutes=5))
    session.flush()
    reply = session.scalars(select(Message).where(Message.conversation_id == conversation.id)).one()
    session.add(OutboxItem(message_id=reply.id, channel_id=history.channel.id, status="failed"))
    reply.delivery_status = "failed"
    session.flush()

    estimate = estimate_for(session, conversation, NOW)

    assert estimate.first_response is not None
    assert queue_position(session, history.conversation(NOW - timedelta(minutes=1))) == 2


def test_estimate_skips_answered_and_resolved(history):
    history.handled(10, first_response=timedelta(hours=1), resolution=timedelta(hours=3))
    answered = history.conversation(NOW - timedelta(hours=2))
    history.reply(answered, NOW - timedelta(hours=1))
    resolved = history.conversation(NOW - timedelta(hours=2), status="resolved")
    history.session.flush()

    answered_estimate = estimate_for(history.session, answered, NOW)
    resolved_estimate = estimate_for(history.session, resolved, NOW)

    assert answered_estimate.first_response is None
    assert answered_estimate.resolution == timedelta(hours=2)
    assert resolved_estimate.first_response is None
    assert resolved_estimate.resolution is None


def test_history_ignores_replies_without_agent(history):
    for index in range(10):
        conversation = history.conversation(NOW - timedelta(days=3, hours=index))
        history.reply(conversation, NOW - timedelta(days=2), by_agent=False)
    history.session.flush()

    assert handling_stats(history.session, None, NOW) is None


def test_history_ignores_older_than_window(history):
    history.handled(20, first_response=timedelta(hours=1), resolution=timedelta(hours=2))
    old_start = NOW - HISTORY - timedelta(days=3)
    for index in range(20):
        conversation = history.conversation(old_start + timedelta(minutes=index))
        history.reply(conversation, old_start + timedelta(hours=5))
    history.session.flush()

    stats = handling_stats(history.session, None, NOW)

    assert stats.first_responses == 20
    assert stats.median_first_response == timedelta(hours=1)


def test_team_history_preferred_when_large_enough(history):
    session = history.session
    team = _team(session, "Returns")
    history.handled(30, first_response=timedelta(hours=6), resolution=timedelta(hours=12))
    history.handled(10, first_response=timedelta(minutes=30), resolution=timedelta(hours=2), team=team)
    small = _team(session, "Tiny")
    history.handled(1, first_response=timedelta(minutes=30), resolution=timedelta(hours=2), team=small)

    team_stats = handling_stats(session, team.id, NOW)
    fallback = handling_stats(session, small.id, NOW)

    assert team_stats.basis == "team"
    assert team_stats.median_first_response == timedelta(minutes=30)
    assert fallback.basis == "workspace"
    assert fallback.first_responses == 41


def test_context_fills_every_placeholder(history):
    session = history.session
    history.handled(40, first_response=timedelta(hours=2), resolution=timedelta(hours=10))
    agent = session.get(Agent, history.agent.id)
    conversation = history.conversation(NOW - timedelta(minutes=30))
    conversation.assignee_id = agent.id
    session.flush()
    session.refresh(conversation)

    context = update_context(session, conversation, NOW)

    assert context == {
        "customer_name": "Maria Lopez",
        "reference": f"#{conversation.id}",
        "status": "being worked on",
        "agent_first_name": "Hana",
        "queue_position": 1,
        "first_response_estimate": "about 2 hours",
        "resolution_estimate": "about 10 hours",
        "reply_to": "https://wa.me/14155238886",
    }


@pytest.mark.parametrize(("duration", "words"), [
    (None, ""),
    (timedelta(minutes=3), "a few minutes"),
    (timedelta(minutes=22), "about 20 minutes"),
    (timedelta(minutes=23), "about 25 minutes"),
    (timedelta(minutes=58), "about 1 hour"),
    (timedelta(hours=2, minutes=30), "about 3 hours"),
    (timedelta(hours=23, minutes=40), "about 1 day"),
    (timedelta(days=3, hours=11), "about 3 days"),
    (timedelta(days=20), "about 3 weeks"),
])
def test_describe_duration_rounds_for_people(duration, words):
    assert describe_duration(duration) == words
