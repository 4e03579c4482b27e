"""The satisfaction report: what customers answered to the question asked at resolution.

A ``resolved`` update template can ask a rating from 1 to 5 or a yes/no question
(``inbox.proactive.satisfaction`` records the answers). The report counts the answers given
on the days of a range, in the workspace's time zone like the trend: the ratings with their
average and their spread over the five scores, the yes/no answers with the share of yes, and
both per agent, the agent being the one who resolved the conversation (else its assignee then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.models import Agent, SatisfactionAnswer
from inbox.reports import day_start

RATING = "rating"
YES_NO = "yes_no"
SCORES = (1, 2, 3, 4, 5)


@dataclass
class Answers:
    """The answers of one group: ratings by score, and yes/no answers."""

    by_score: dict[int, int] = field(default_factory=lambda: dict.fromkeys(SCORES, 0))
    yes: int = 0
    no: int = 0

    @property
    def ratings(self) -> int:
        return sum(self.by_score.values())

    @property
    def count(self) -> int:
        """All answers: ratings and yes/no answers."""
        return self.ratings + self.yes + self.no

    @property
    def average_rating(self) -> float | None:
        """The mean rating, or None without ratings."""
        if not self.ratings:
            return None
        return sum(score * count for score, count in self.by_score.items()) / self.ratings

    def format_average_rating(self) -> str | None:
        """Return the mean rating with one decimal, as the Reports page and the command line show it.

        Returns None without ratings. The rounding works on the whole-number sum and count, so a
        mean that lies halfway rounds up: 3.25 (four ratings) gives "3.3" and 3.15 (twenty) gives
        "3.2", where formatting the float gives "3.2" and "3.1".
        """
        if not self.ratings:
            return None
        total = sum(score * count for score, count in self.by_score.items())
        # round(10 * total / ratings) with halves up, in integers: floor((20 * total + ratings) / (2 * ratings)).
        tenths = (20 * total + self.ratings) // (2 * self.ratings)
        return f"{tenths // 10}.{tenths % 10}"

    @property
    def yes_share(self) -> float | None:
        """The share of yes among the yes/no answers (0 to 1), or None without any."""
        answered = self.yes + self.no
        return self.yes / answered if answered else None

    def score_rows(self) -> list[dict[str, Any]]:
        """Return a row per score, best first, each with its ``label`` and ``count``."""
        labels = {5: "5 (best)", 1: "1 (worst)"}
        return [{"label": labels.get(score, str(score)), "count": self.by_score[score]} for score in reversed(SCORES)]

    def add(self, kind: str, score: int, count: int) -> None:
        if kind == RATING and score in self.by_score:
            self.by_score[score] += count
        elif kind == YES_NO:
            if score:
                self.yes += count
            else:
                self.no += count

    def to_dict(self) -> dict[str, Any]:
        average = self.average_rating
        share = self.yes_share
        return {
            "answers": self.count,
            "ratings": self.ratings,
            "average_rating": None if average is None else round(average, 2),
            "by_score": {str(score): count for score, count in self.by_score.items()},
            "yes": self.yes,
            "no": self.no,
            "yes_share": None if share is None else round(share, 4),
        }


@dataclass(frozen=True)
class AgentAnswers:
    """The answers about the conversations one agent resolved; ``agent_id`` None for nobody."""

    agent_id: int | None
    name: str
    answers: Answers

    def to_dict(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "name": self.name, **self.answers.to_dict()}


@dataclass(frozen=True)
class SatisfactionReport:
    """The answers given from ``first_day`` to ``last_day`` (both included) in ``time_zone``."""

    first_day: date
    last_day: date
    time_zone: str
    total: Answers
    by_agent: list[AgentAnswers]

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "time_zone": self.time_zone,
            **self.total.to_dict(),
            "by_agent": [row.to_dict() for row in self.by_agent],
        }


def satisfaction_report(session: Session, first_day: date, last_day: date, zone: ZoneInfo) -> SatisfactionReport:
    """Return the answers given from ``first_day`` to ``last_day`` in ``zone``. Reads only.

    Agents are listed by their number of answers, most first, then by name.
    """
    start = day_start(first_day, zone)
    end = day_start(last_day + timedelta(days=1), zone)
    groups = session.execute(
        select(SatisfactionAnswer.agent_id, SatisfactionAnswer.kind, SatisfactionAnswer.score, func.count())
        .where(SatisfactionAnswer.created_at >= start, SatisfactionAnswer.created_at < end)
        .group_by(SatisfactionAnswer.agent_id, SatisfactionAnswer.kind, SatisfactionAnswer.score)
    ).all()

    total = Answers()
    per_agent: dict[int | None, Answers] = {}
    for agent_id, kind, score, count in groups:
        total.add(kind, score, count)
        per_agent.setdefault(agent_id, Answers()).add(kind, score, count)

    agent_ids = [agent_id for agent_id in per_agent if agent_id is not None]
    names = {
        agent_id: name or email
        for agent_id, name, email in session.execute(
            select(Agent.id, Agent.name, Agent.email).where(Agent.id.in_(agent_ids))
        )
    }
    by_agent = [
        AgentAnswers(agent_id, names.get(agent_id, f"Agent {agent_id}") if agent_id else "No agent", answers)
        for agent_id, answers in per_agent.items()
    ]
    by_agent.sort(key=lambda row: (-row.answers.count, row.name.casefold()))
    return SatisfactionReport(first_day, last_day, str(zone.key), total, by_agent)
