"""The backlog and trend reports against a real database, with every timestamp set explicitly.

The rows are written directly, not through ingestion, so each test controls the times that
decide ages, day boundaries and first response times.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from inbox.activity import Action
from inbox.errors import InvalidInput
from inbox.models import Agent, Channel, Contact, Conversation, ConversationActivity, Message, OutboxItem
from inbox.reports import backlog_report, day_start, parse_trend_range, trend_report
from inbox.teams import create_team
from tests.conftest import AGENT_PASSWORD

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)


def at(text: str) -> datetime:
    """Return a UTC datetime from "2026-12-09 23:10"."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


class Rows:
    """Writes conversations, messages and activities with explicit times into one session."""

    def __init__(self, session, channel: Channel, agent: Agent):
        self.session = session
        self.channel = channel
        self.agent = agent
        self._contacts = 0

    def conversation(self, created: datetime, *, status: str = "open", priority: str = "normal",
                     channel: Channel | None = None, team_id: int | None = None, assignee: Agent | None = None,
                     name: str | None = None, inbound: bool = True) -> Conversation:
        """Add a conversation; with ``inbound`` its first customer message at ``created``."""
        self._contacts += 1
        contact = Contact(name=name or f"Customer {self._contacts}", created_at=created)
        conversation = Conversation(
            channel=channel or self.channel, contact=contact, status=status, priority=priority, team_id=team_id,
            assignee=assignee, created_at=created, last_message_at=created, updated_at=created,
        )
        self.session.add(conversation)
        self.session.flush()
        if inbound:
            self.inbound(conversation, created)
        return conversation

    def inbound(self, conversation: Conversation, when: datetime, automatic: str | None = None) -> Message:
        conversation.last_inbound_at = when
        conversation.last_message_at = max(conversation.last_message_at, when)
        return self._message(conversation, "inbound", when, None, automatic)

    def reply(self, conversation: Conversation, when: datetime, agent: Agent | None = None) -> Message:
        """Add an agent's reply (``agent`` defaults to the fixture's agent)."""
        conversation.last_message_at = max(conversation.last_message_at, when)
        return self._message(conversation, "outbound", when, agent or self.agent)

    def automatic_outbound(self, conversation: Conversation, when: datetime) -> Message:
        """Add an outbound message no agent wrote, such as a proactive update."""
        conversation.last_message_at = max(conversation.last_message_at, when)
        return self._message(conversation, "outbound", when, None)

    def status(self, conversation: Conversation, when: datetime, old: str, new: str) -> None:
        self._activity(conversation, when, Action.STATUS, {"from": old, "to": new})
        conversation.status = new

    def merge(self, source: Conversation, target: Conversation, when: datetime) -> None:
        self._activity(source, when, Action.MERGED_INTO, {"conversation_id": target.id, "message_count": 1})
        self._activity(target, when, Action.MERGED_FROM, {"conversation_id": source.id, "message_count": 1})
        source.status = "closed"
        source.merged_into_id = target.id

    def _message(self, conversation, direction, when, agent, automatic=None) -> Message:
        message = Message(
            conversation=conversation, channel=conversation.channel, direction=direction, agent=agent,
            text="text", created_at=when, automatic=automatic,
        )
        self.session.add(message)
        self.session.flush()
        return message

    def _activity(self, conversation, when, action, details) -> None:
        self.session.add(ConversationActivity(
            conversation_id=conversation.id, agent=self.agent, action=action, details=details, created_at=when,
        ))
        self.session.flush()


@pytest.fixture
def rows(state, whatsapp_channel):
    with state.session_factory() as session:
        agent = Agent(email="ada@example.com", name="Ada Agent", password_hash=AGENT_PASSWORD, role="agent")
        session.add(agent)
        channel = session.get(Channel, whatsapp_channel.id)
        session.flush()
        yield Rows(session, channel, agent)


def add_backlog(rows: Rows) -> dict[str, Conversation]:
    """Add seven conversations whose backlog figures at ``NOW`` the tests below spell out."""
    team = create_team(rows.session, "Billing", [rows.agent.id])
    email = Channel(kind="email", name="Mail", address="help@example.com", settings={})
    rows.session.add(email)
    rows.session.flush()
    made: dict[str, Conversation] = {}

    # Waits 30 minutes for a reply: under 1 hour.
    made["fresh"] = rows.conversation(NOW - timedelta(minutes=30), priority="urgent", team_id=team.id,
                                      assignee=rows.agent, name="Fresh")
    # An agent replied after the customer's last message, so the wait runs from creation, 2 days ago.
    made["answered"] = rows.conversation(NOW - timedelta(days=2), status="pending", name="Answered")
    rows.reply(made["answered"], NOW - timedelta(days=1))
    # A reply came, then the customer wrote again 5 hours ago: 4 to 24 hours.
    made["asked_again"] = rows.conversation(NOW - timedelta(days=1, hours=2), status="snoozed", priority="high",
                                            team_id=team.id, name="Asked again")
    rows.reply(made["asked_again"], NOW - timedelta(hours=6))
    rows.inbound(made["asked_again"], NOW - timedelta(hours=5))
    # A proactive update is no reply: still waiting since 10 days ago.
    made["forgotten"] = rows.conversation(NOW - timedelta(days=10), priority="low", channel=email, name="Forgotten")
    rows.automatic_outbound(made["forgotten"], NOW - timedelta(days=9))
    # Started by an agent, no customer message yet: from creation, 2 hours ago.
    made["outbound_only"] = rows.conversation(NOW - timedelta(hours=2), inbound=False, name="Outbound only")
    # Neither counts.
    made["resolved"] = rows.conversation(NOW - timedelta(days=20), status="resolved", name="Resolved")
    made["closed"] = rows.conversation(NOW - timedelta(days=30), status="closed", name="Closed")
    rows.session.commit()
    return made


def _counts(breakdown) -> dict:
    return {row.key: row.count for row in breakdown}


def test_backlog_excludes_resolved_and_closed(rows):
    add_backlog(rows)
    backlog = backlog_report(rows.session, NOW)
    assert backlog.total == 5
    assert backlog.unassigned == 4


def test_backlog_breakdowns(rows):
    made = add_backlog(rows)
    backlog = backlog_report(rows.session, NOW)

    assert _counts(backlog.by_status) == {"open": 3, "pending": 1, "snoozed": 1}
    assert _counts(backlog.by_priority) == {"urgent": 1, "high": 1, "normal": 2, "low": 1}
    assert [row.key for row in backlog.by_priority] == ["urgent", "high", "normal", "low"]
    assert [(row.label, row.count) for row in backlog.by_channel] == [
        ("WhatsApp support (whatsapp)", 4), ("Mail (email)", 1),
    ]
    assert [(row.label, row.count) for row in backlog.by_team] == [("Billing", 2), ("No team", 3)]
    assert made["fresh"].team_id == backlog.by_team[0].key


def test_backlog_ages_start_at_unanswered_message(rows):
    add_backlog(rows)
    backlog = backlog_report(rows.session, NOW)
    assert _counts(backlog.by_age) == {"under_1h": 1, "1h_4h": 1, "4h_24h": 1, "1d_3d": 1, "over_3d": 1}


def test_backlog_oldest_waiting_first(rows):
    made = add_backlog(rows)
    backlog = backlog_report(rows.session, NOW)

    assert [row.contact for row in backlog.oldest] == ["Forgotten", "Answered", "Asked again", "Outbound only", "Fresh"]
    oldest = backlog.oldest[0]
    assert oldest.id == made["forgotten"].id
    assert oldest.waiting_since == NOW - timedelta(days=10)
    assert oldest.channel == "Mail"
    assert backlog.oldest[2].waiting_since == NOW - timedelta(hours=5)
    assert backlog.oldest[-1].team == "Billing"
    assert backlog.oldest[-1].assignee == "Ada Agent"
    assert backlog.to_dict()["oldest"][0]["waiting_seconds"] == 10 * 86400


def test_backlog_oldest_respects_limit(rows):
    add_backlog(rows)
    assert len(backlog_report(rows.session, NOW, oldest_limit=2).oldest) == 2


def test_backlog_without_teams_has_no_team_rows(rows):
    rows.conversation(NOW - timedelta(hours=1))
    rows.session.commit()
    backlog = backlog_report(rows.session, NOW)
    assert backlog.by_team == []
    assert backlog.total == 1


def test_empty_backlog(rows):
    backlog = backlog_report(rows.session, NOW)
    assert backlog.total == 0
    assert backlog.oldest == []
    assert all(row.count == 0 for row in backlog.by_age)


# ---- The trend ----------------------------------------------------------------------------


def add_history(rows: Rows) -> dict[str, Conversation]:
    """Add conversations whose creation, resolution, reopening and merge fall around
    midnight in Berlin (23:00 UTC in December)."""
    made: dict[str, Conversation] = {}
    made["steady"] = rows.conversation(at("2026-12-01 10:00"))
    # Created 23:30 Berlin on the 8th; resolved 00:10 Berlin on the 10th; reopened the 10th.
    made["late"] = rows.conversation(at("2026-12-08 22:30"))
    rows.status(made["late"], at("2026-12-09 23:10"), "open", "resolved")
    rows.status(made["late"], at("2026-12-10 08:00"), "resolved", "open")
    # Created 00:30 Berlin on the 9th (still the 8th in UTC); resolved on the 9th.
    made["early"] = rows.conversation(at("2026-12-08 23:30"))
    rows.status(made["early"], at("2026-12-09 10:00"), "open", "resolved")
    # Created on the 9th, merged away while open on the 10th.
    made["merged"] = rows.conversation(at("2026-12-09 12:00"))
    rows.merge(made["merged"], made["steady"], at("2026-12-10 09:00"))
    # Resolved before the range, merged while resolved on the 9th: no change to the backlog.
    made["old"] = rows.conversation(at("2026-12-07 09:00"))
    rows.status(made["old"], at("2026-12-07 12:00"), "open", "resolved")
    rows.merge(made["old"], made["steady"], at("2026-12-09 09:00"))
    # Created on the 10th, then pending: still in the backlog.
    made["today"] = rows.conversation(at("2026-12-10 11:00"))
    rows.status(made["today"], at("2026-12-10 11:30"), "open", "pending")
    rows.session.commit()
    return made


def _column(trend, name: str) -> list:
    return [getattr(day, name) for day in trend.days]


def test_trend_counts_days_in_workspace_zone(rows):
    add_history(rows)
    trend = trend_report(rows.session, date(2026, 12, 8), date(2026, 12, 10), BERLIN)

    assert [day.day for day in trend.days] == [date(2026, 12, 8), date(2026, 12, 9), date(2026, 12, 10)]
    assert trend.time_zone == "Europe/Berlin"
    assert _column(trend, "created") == [1, 2, 1]
    assert _column(trend, "resolved") == [0, 1, 1]
    assert _column(trend, "open_at_end") == [2, 3, 3]


def test_trend_counts_days_in_utc(rows):
    add_history(rows)
    trend = trend_report(rows.session, date(2026, 12, 8), date(2026, 12, 10), UTC)

    assert _column(trend, "created") == [2, 1, 1]
    assert _column(trend, "resolved") == [0, 2, 0]
    # At the end of the 9th in UTC "late" is resolved already and "merged" still open.
    assert _column(trend, "open_at_end") == [3, 2, 3]


def test_trend_range_before_today(rows):
    add_history(rows)
    # A range that ends before today: the changes of the 10th are taken back first.
    trend = trend_report(rows.session, date(2026, 12, 7), date(2026, 12, 8), BERLIN)
    assert _column(trend, "open_at_end") == [1, 2]
    assert _column(trend, "created") == [1, 1]
    assert _column(trend, "resolved") == [1, 0]


def test_trend_resolved_counts_once_daily(rows):
    conversation = rows.conversation(at("2026-12-09 08:00"))
    rows.status(conversation, at("2026-12-09 09:00"), "open", "resolved")
    rows.status(conversation, at("2026-12-09 10:00"), "resolved", "open")
    rows.status(conversation, at("2026-12-09 11:00"), "open", "resolved")
    rows.session.commit()

    trend = trend_report(rows.session, date(2026, 12, 9), date(2026, 12, 10), UTC)
    assert _column(trend, "resolved") == [1, 0]
    assert _column(trend, "open_at_end") == [0, 0]


def test_trend_day_across_daylight_saving_change(rows):
    # Berlin leaves summer time on 25 October 2026 at 01:00 UTC, so that day has 25 hours.
    assert day_start(date(2026, 10, 25), BERLIN) == at("2026-10-24 22:00")
    assert day_start(date(2026, 10, 26), BERLIN) == at("2026-10-25 23:00")
    rows.conversation(at("2026-10-24 21:30"))  # 23:30 summer time on the 24th
    rows.conversation(at("2026-10-24 22:30"))  # 00:30 summer time on the 25th
    rows.conversation(at("2026-10-25 22:30"))  # 23:30 winter time on the 25th
    rows.conversation(at("2026-10-25 23:30"))  # 00:30 on the 26th
    rows.session.commit()

    trend = trend_report(rows.session, date(2026, 10, 24), date(2026, 10, 26), BERLIN)
    assert _column(trend, "created") == [1, 2, 1]
    assert _column(trend, "open_at_end") == [1, 3, 4]


def add_first_responses(rows: Rows) -> None:
    """Add first responses of 600, 2400, 3600 and 7200 seconds on 9 December in Berlin, one of
    1200 seconds on the 10th, and conversations whose first response must not count."""
    first = rows.conversation(at("2026-12-08 22:30"))
    rows.reply(first, at("2026-12-08 23:10"))  # 00:10 Berlin on the 9th: 2400 s
    rows.reply(first, at("2026-12-09 09:00"))  # a later reply is no first response

    # A customer's out-of-office mail and a proactive update come first: 3600 s from 23:30.
    second = rows.conversation(at("2026-12-08 23:30"), inbound=False)
    rows.inbound(second, at("2026-12-08 23:20"), automatic="auto_reply")
    rows.inbound(second, at("2026-12-08 23:30"))
    rows.automatic_outbound(second, at("2026-12-08 23:35"))
    rows.reply(second, at("2026-12-09 00:30"))

    third = rows.conversation(at("2026-12-09 12:00"))
    rows.reply(third, at("2026-12-09 12:10"))  # 600 s

    # Started by an agent: the clock starts at the customer's first message.
    fourth = rows.conversation(at("2026-12-09 13:00"), inbound=False)
    rows.reply(fourth, at("2026-12-09 13:00"))
    rows.inbound(fourth, at("2026-12-09 14:00"))
    rows.reply(fourth, at("2026-12-09 16:00"))  # 7200 s

    # First replied to before the range: a reply in the range is not its first response.
    before = rows.conversation(at("2026-12-01 10:00"))
    rows.reply(before, at("2026-12-01 11:00"))
    rows.reply(before, at("2026-12-09 15:00"))

    # Unanswered: no first response at all.
    rows.conversation(at("2026-12-09 15:00"))

    today = rows.conversation(at("2026-12-10 11:00"))
    rows.reply(today, at("2026-12-10 11:20"))  # 1200 s
    rows.session.commit()


def test_first_response_median_and_p90(rows):
    add_first_responses(rows)
    trend = trend_report(rows.session, date(2026, 12, 8), date(2026, 12, 10), BERLIN)

    assert _column(trend, "first_responses") == [0, 4, 1]
    # 600, 2400, 3600, 7200: the median is halfway between 2400 and 3600, and the 90th
    # percentile 0.7 of the way from 3600 to 7200.
    assert trend.days[1].median_first_response == pytest.approx(3000, abs=1)
    assert trend.days[1].p90_first_response == pytest.approx(6120, abs=1)
    assert trend.days[2].median_first_response == pytest.approx(1200, abs=1)
    assert trend.days[2].p90_first_response == pytest.approx(1200, abs=1)
    assert trend.days[0].median_first_response is None
    assert trend.to_dict()["days"][1]["p90_first_response_seconds"] == 6120


def test_first_response_day_in_utc(rows):
    add_first_responses(rows)
    trend = trend_report(rows.session, date(2026, 12, 8), date(2026, 12, 10), UTC)

    # The 23:10 UTC reply falls on the 8th in UTC.
    assert _column(trend, "first_responses") == [1, 3, 1]
    assert trend.days[0].median_first_response == pytest.approx(2400, abs=1)
    assert trend.days[1].median_first_response == pytest.approx(3600, abs=1)


def test_first_response_percentiles_of_odd_count(rows):
    for minutes in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100]:
        conversation = rows.conversation(at("2026-12-09 08:00"))
        rows.reply(conversation, at("2026-12-09 08:00") + timedelta(minutes=minutes))
    rows.session.commit()

    day = trend_report(rows.session, date(2026, 12, 9), date(2026, 12, 9), UTC).days[0]
    assert day.first_responses == 11
    assert day.median_first_response == pytest.approx(6 * 60, abs=1)
    # The rank is 0.9 * 10 = 9 exactly: the tenth smallest, 10 minutes.
    assert day.p90_first_response == pytest.approx(10 * 60, abs=1)


@pytest.mark.parametrize("outbox_status, delivery_status", [
    ("pending", "queued"),     # still retrying
    ("failed", "failed"),      # given up after the retries
    ("held", None),            # outside WhatsApp's 24-hour window
    ("cancelled", None),       # held, then withdrawn by the agent
    ("sent", "undelivered"),   # accepted, then reported undelivered by the provider
])
def test_first_response_skips_undelivered_reply(rows, outbox_status, delivery_status):
    conversation = rows.conversation(at("2026-12-09 08:00"))
    lost = rows.reply(conversation, at("2026-12-09 08:05"))
    lost.delivery_status = delivery_status
    rows.session.add(OutboxItem(message=lost, channel=rows.channel, status=outbox_status))
    delivered = rows.reply(conversation, at("2026-12-09 09:00"))
    rows.session.add(OutboxItem(message=delivered, channel=rows.channel, status="sent"))
    rows.session.commit()

    day = trend_report(rows.session, date(2026, 12, 9), date(2026, 12, 9), UTC).days[0]

    assert day.first_responses == 1
    assert day.median_first_response == pytest.approx(3600, abs=1)


def test_first_response_skips_proactive_update(rows):
    conversation = rows.conversation(at("2026-12-09 08:00"))
    update = rows.automatic_outbound(conversation, at("2026-12-09 08:30"))
    update.automatic = "proactive"
    rows.session.commit()

    day = trend_report(rows.session, date(2026, 12, 9), date(2026, 12, 9), UTC).days[0]

    assert day.first_responses == 0


# ---- The range ------------------------------------------------------------------------------


TODAY = date(2026, 12, 10)


@pytest.mark.parametrize(("args", "expected"), [
    ({}, (date(2026, 11, 27), TODAY)),
    ({"days": "1"}, (TODAY, TODAY)),
    ({"days": "90"}, (TODAY - timedelta(days=89), TODAY)),
    ({"from": "2026-12-01"}, (date(2026, 12, 1), TODAY)),
    ({"from": "2026-11-01", "to": "2026-11-30"}, (date(2026, 11, 1), date(2026, 11, 30))),
    ({"to": "2026-11-30", "days": "7"}, (date(2026, 11, 24), date(2026, 11, 30))),
])
def test_trend_range_accepted(args, expected):
    assert parse_trend_range(args, TODAY) == expected


@pytest.mark.parametrize(("args", "field", "words"), [
    ({"days": "0"}, "days", "from 1 to 90"),
    ({"days": "91"}, "days", "from 1 to 90"),
    ({"days": "two"}, "days", "from 1 to 90"),
    ({"from": "2026-13-01"}, "from", "a date such as"),
    ({"to": "tomorrow"}, "to", "a date such as"),
    ({"to": "2026-12-11"}, "to", "or earlier"),
    ({"from": "2026-12-05", "to": "2026-12-01"}, "from", "must not be after"),
    ({"from": "2026-09-01", "to": "2026-11-30"}, "from", "at most 90"),
    ({"from": "2026-12-01", "days": "3"}, "days", "not both"),
])
def test_trend_range_rejected(args, field, words):
    with pytest.raises(InvalidInput, match=words) as raised:
        parse_trend_range(args, TODAY)
    assert raised.value.field == field
