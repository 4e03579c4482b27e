"""The views of the inbox's left pane and how many conversations each contains.

Each view is a named ``ConversationFilter`` on status, assignee and team only. ``count_views``
counts every view from one query that groups the conversations by those three columns, which
``ix_conversations_status_assignee_team`` covers (SQLite scans only that index), so clients
can refresh the counts whenever a conversation event arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.conversations import ConversationFilter
from inbox.models import Conversation, ConversationStatus, Team

OPEN = ConversationStatus.OPEN.value
CLOSED = ConversationStatus.CLOSED.value


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
    the ones waiting for someone. "All" shows every status except closed.
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
    """Return each view with the number of conversations it contains.

    Raises ``ValueError`` for a view that filters on more than status, assignee and team.
    """
    groups = session.execute(
        select(Conversation.status, Conversation.assignee_id, Conversation.team_id, func.count())
        .group_by(Conversation.status, Conversation.assignee_id, Conversation.team_id)
    ).all()
    return [
        {"key": view.key, "name": view.name, "group": view.group, "params": view.params,
         "count": _count(view.where, groups)}
        for view in views
    ]


def _count(where: ConversationFilter, groups: Iterable[tuple[str, int | None, int | None, int]]) -> int:
    """Return how many conversations of ``groups`` ``where`` selects, by the rules of its SQL."""
    if (where.channel_id, where.label_id, where.priority, where.contact_id, where.search) != (None,) * 5:
        raise ValueError(f"a view can count by status, assignee and team only, not {where}")
    total = 0
    for status, assignee_id, team_id, count in groups:
        if (status != where.status) if where.status is not None else status == CLOSED:
            continue
        if where.assignee == "unassigned" and assignee_id is not None:
            continue
        if isinstance(where.assignee, int) and assignee_id != where.assignee:
            continue
        if where.team_id is not None and team_id != where.team_id:
            continue
        total += count
    return total
