"""The satisfaction report against a real database, with the answers' times set explicitly."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from inbox.models import Agent, Conversation, ProactiveSend, SatisfactionAnswer
from inbox.satisfaction_report import Answers, satisfaction_report
from tests.conftest import AGENT_PASSWORD
from tests.inbox.test_reports import BERLIN, NOW, UTC, Rows, at, rows  # noqa: F401 (rows is a fixture)


def add_answer(rows: Rows, when: datetime, kind: str, score: int, agent: Agent | None) -> SatisfactionAnswer:
    """Add a resolved conversation, the question asked at resolution, and the customer's answer at ``when``."""
    conversation: Conversation = rows.conversation(when, status="resolved")
    question = ProactiveSend(
        template_id=1, template_name="How did we do?", conversation_id=conversation.id,
        occurrence_key=f"activity:{conversation.id}", trigger="resolved", channel="whatsapp", result="sent",
        created_at=when,
    )
    rows.session.add(question)
    message = rows.inbound(conversation, when)
    answer = SatisfactionAnswer(
        conversation_id=conversation.id, agent_id=agent.id if agent else None, question_id=question.id,
        message_id=message.id, kind=kind, score=score, answer=str(score), created_at=when,
    )
    rows.session.add(answer)
    rows.session.flush()
    return answer


@pytest.fixture
def ben(rows: Rows) -> Agent:
    agent = Agent(email="ben@example.com", name="Ben Baker", password_hash=AGENT_PASSWORD, role="agent")
    rows.session.add(agent)
    rows.session.flush()
    return agent


def test_ratings_and_yes_no_counted(rows, ben):
    for score in [5, 4, 4, 2]:
        add_answer(rows, at("2026-12-09 10:00"), "rating", score, rows.agent)
    add_answer(rows, at("2026-12-09 11:00"), "rating", 5, ben)
    for score in [1, 1, 0]:
        add_answer(rows, at("2026-12-09 12:00"), "yes_no", score, ben)

    report = satisfaction_report(rows.session, date(2026, 12, 9), date(2026, 12, 9), UTC)

    assert report.total.ratings == 5
    assert report.total.by_score == {1: 0, 2: 1, 3: 0, 4: 2, 5: 2}
    assert report.total.average_rating == pytest.approx(4.0)
    assert (report.total.yes, report.total.no) == (2, 1)
    assert report.total.yes_share == pytest.approx(2 / 3)
    # Ben has four answers and Ada four; the tie goes by name.
    assert [row.name for row in report.by_agent] == ["Ada Agent", "Ben Baker"]
    ada, ben_row = report.by_agent
    assert (ada.answers.ratings, ada.answers.average_rating, ada.answers.yes_share) == (4, 3.75, None)
    assert (ben_row.answers.ratings, ben_row.answers.average_rating, ben_row.answers.yes) == (1, 5.0, 2)


def test_days_follow_workspace_zone(rows):
    # 23:30 UTC on 8 December is already 9 December in Berlin.
    add_answer(rows, at("2026-12-08 23:30"), "rating", 3, rows.agent)
    add_answer(rows, at("2026-12-09 22:59"), "rating", 5, rows.agent)
    add_answer(rows, at("2026-12-09 23:00"), "rating", 1, rows.agent)

    in_berlin = satisfaction_report(rows.session, date(2026, 12, 9), date(2026, 12, 9), BERLIN)
    in_utc = satisfaction_report(rows.session, date(2026, 12, 9), date(2026, 12, 9), UTC)

    assert in_berlin.total.by_score == {1: 0, 2: 0, 3: 1, 4: 0, 5: 1}
    assert in_utc.total.by_score == {1: 1, 2: 0, 3: 0, 4: 0, 5: 1}
    assert in_berlin.time_zone == "Europe/Berlin"


def test_answer_without_agent_listed_as_no_agent(rows):
    add_answer(rows, at("2026-12-09 10:00"), "yes_no", 0, None)

    report = satisfaction_report(rows.session, date(2026, 12, 9), date(2026, 12, 9), UTC)

    [row] = report.by_agent
    assert (row.agent_id, row.name, row.answers.no) == (None, "No agent", 1)
    assert report.to_dict()["by_agent"][0]["yes_share"] == 0.0


def test_empty_range_has_no_figures(rows):
    add_answer(rows, at("2026-12-01 10:00"), "rating", 5, rows.agent)

    report = satisfaction_report(rows.session, date(2026, 12, 9), date(NOW.year, NOW.month, NOW.day), UTC)

    assert report.total.count == 0
    assert report.total.average_rating is None
    assert report.by_agent == []
    assert report.to_dict() == {
        "from": "2026-12-09", "to": "2026-12-10", "time_zone": "UTC", "answers": 0, "ratings": 0,
        "average_rating": None, "by_score": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
        "yes": 0, "no": 0, "yes_share": None, "by_agent": [],
    }


@pytest.mark.parametrize(("scores", "shown"), [
    ([], None),
    ([5], "5.0"),
    ([5, 4, 2], "3.7"),
    ([1, 1, 2], "1.3"),
    # Exactly halfway rounds up, which formatting the float gives as "3.2" and "3.1".
    ([4, 3, 3, 3], "3.3"),
    ([4] * 3 + [3] * 17, "3.2"),
    ([1, 2], "1.5"),
])
def test_average_rating_one_decimal(scores, shown):
    answers = Answers()
    for score in scores:
        answers.add("rating", score, 1)
    answers.add("yes_no", 1, 4)

    assert answers.format_average_rating() == shown
