"""The views of the inbox's left pane and how many conversations each contains.

Each view is a named ``ConversationFilter``. ``count_views`` counts all of them in one query
(one aggregate per view over a single pass of the conversations table), so clients can
refresh the counts whenever a conversation event arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.conversations import ConversationFilter
from inbox.models import Conversation, ConversationStatus, Team

OPEN = ConversationStatus.OPEN.value


@dataclass(frozen=True)
class View:
    """A named filter. ``params`` are the list API's query parameters that show it."""

    key: str
    name: str
    group: str
    where: ConversationFilter
    params: dict[str, str]


def agent_views(session: Session, agent_id: int) -> list[View]:
    """Return the views of one agent: their own, the shared ones, one per status and per team.

    The agent's, unassigned and team views show open conversations only, because those are
    the ones waiting for someone; "All" shows every status except closed.
    """
    views = [
        View("mine", "Mine", "inbox", ConversationFilter(status=OPEN, assignee=agent_id),
             {"assignee": "me", "status": OPEN}),
        View("unassigned", "Unassigned", "inbox", ConversationFilter(status=OPEN, assignee="unassigned"),
             {"assignee": "unassigned", "status": OPEN}),
        View("all", "All", "inbox", ConversationFilter(), {}),
    ]
    for status, name in (("open", "Open"), ("pending", "Pending"), ("snoozed", "Snoozed"), ("resolved", "Resolved")):
        views.append(View(f"status:{status}", name, "status", ConversationFilter(status=status), {"status": status}))
    for team_id, team_name in session.execute(select(Team.id, Team.name).order_by(Team.name_key)):
        views.append(View(
            f"team:{team_id}", team_name, "team", ConversationFilter(status=OPEN, team_id=team_id),
            {"team": str(team_id), "status": OPEN},
        ))
    return views


def count_views(session: Session, views: list[View]) -> list[dict[str, Any]]:
    """Return each view with the number of conversations it contains."""
    if not views:
        return []
    counts = session.execute(
        select(*(func.count().filter(view.where.condition()) for view in views)).select_from(Conversation)
    ).one()
    return [
        {"key": view.key, "name": view.name, "group": view.group, "params": view.params, "count": count}
        for view, count in zip(views, counts)
    ]
