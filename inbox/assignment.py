"""Automatic assignment within a team: round robin over the members who can take more work.

A member qualifies when the agent is active, online and below their capacity
(``Agent.max_open_conversations``, counted over their open assigned conversations). The
round robin starts after the team's ``last_assigned_agent_id`` in agent id order and wraps
around. When nobody qualifies, the conversation stays unassigned in the team's queue. A team
with ``round_robin`` off only queues: nobody is chosen and a current assignee stays.

Who is online comes from ``OnlineAgents``, which the Socket.IO layer keeps up to date in the
web process, and from the presence that every web process shares through the database
(``inbox.presence``), so a worker process assigns too. The team row is locked while
choosing (on PostgreSQL), so two conversations arriving at once cannot both take an agent's
last free place.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from inbox.activity import Action, add_activity
from inbox.models import Agent, Conversation, ConversationActivity, ConversationStatus, Team
from inbox.presence import shared_online_agent_ids
from inbox.serialize import agent_ref, team_ref

log = logging.getLogger(__name__)

_ONLINE_KEY = "switchboard.online_agents"


class OnlineAgents:
    """The ids of the agents connected to this process, counted per connection."""

    def __init__(self) -> None:
        self._connections: dict[int, int] = {}
        self._lock = threading.Lock()

    def connected(self, agent_id: int) -> None:
        with self._lock:
            self._connections[agent_id] = self._connections.get(agent_id, 0) + 1

    def disconnected(self, agent_id: int) -> None:
        with self._lock:
            remaining = self._connections.get(agent_id, 0) - 1
            if remaining > 0:
                self._connections[agent_id] = remaining
            else:
                self._connections.pop(agent_id, None)

    def ids(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._connections)

    def counts(self) -> dict[int, int]:
        """Return the number of connections per connected agent id."""
        with self._lock:
            return dict(self._connections)


def use_online_agents(session_factory: sessionmaker[Session], online: OnlineAgents) -> None:
    """Make ``online`` the presence that sessions of this factory assign by."""
    session_factory.kw.setdefault("info", {})[_ONLINE_KEY] = online


def online_agent_ids(session: Session) -> frozenset[int]:
    """Return the ids of the agents online: those connected to this process, if a presence
    is bound to the session, and those that any process reported (``inbox.presence``)."""
    online: OnlineAgents | None = session.info.get(_ONLINE_KEY)
    local = online.ids() if online is not None else frozenset()
    return local | shared_online_agent_ids(session)


def open_assigned_counts(session: Session, agent_ids: list[int]) -> dict[int, int]:
    """Return how many open conversations are assigned to each of ``agent_ids``."""
    if not agent_ids:
        return {}
    rows = session.execute(
        select(Conversation.assignee_id, func.count())
        .where(Conversation.assignee_id.in_(agent_ids), Conversation.status == ConversationStatus.OPEN.value)
        .group_by(Conversation.assignee_id)
    )
    return {agent_id: count for agent_id, count in rows}


def choose_agent(session: Session, team: Team) -> Agent | None:
    """Return the next member of ``team`` who qualifies, in round-robin order, or None."""
    online = online_agent_ids(session)
    candidates = [agent for agent in team.members if agent.is_active and agent.id in online]
    counts = open_assigned_counts(session, [agent.id for agent in candidates])
    last = team.last_assigned_agent_id or 0
    ordered = sorted(candidates, key=lambda agent: (agent.id <= last, agent.id))
    for agent in ordered:
        capacity = agent.max_open_conversations
        if capacity is None or counts.get(agent.id, 0) < capacity:
            return agent
    return None


def assign_within_team(
    session: Session, conversation: Conversation, team: Team, actor: Agent | None
) -> list[ConversationActivity]:
    """Put ``conversation`` in ``team`` and assign it to the next qualifying member.

    ``actor`` is the agent who asked for it, or None when a new conversation arrived. Returns
    the activity rows added. Without a qualifying member the conversation is left unassigned
    in the team's queue.
    """
    # Locks the team until commit, so concurrent assignments see each other's counts.
    session.scalar(select(Team.id).where(Team.id == team.id).with_for_update())
    activities = []
    if conversation.team_id != team.id:
        activities.append(add_activity(
            session, conversation, actor, Action.TEAM,
            {"from": team_ref(conversation.team), "to": team_ref(team)},
        ))
        conversation.team = team
    if not team.round_robin:
        return activities  # the team's members pick from its queue themselves

    agent = choose_agent(session, team)
    if agent is None:
        log.info("conversation %s waits in team %s's queue: no member online with capacity", conversation.id, team.id)
        if conversation.assignee is not None:
            activities.append(add_activity(
                session, conversation, actor, Action.ASSIGNEE,
                {"from": agent_ref(conversation.assignee), "to": None, "automatic": True},
            ))
            conversation.assignee = None
        return activities

    if conversation.assignee_id != agent.id:
        activities.append(add_activity(
            session, conversation, actor, Action.ASSIGNEE,
            {"from": agent_ref(conversation.assignee), "to": agent_ref(agent), "automatic": True},
        ))
        conversation.assignee = agent
    team.last_assigned_agent_id = agent.id
    log.info("conversation %s assigned to agent %s in team %s", conversation.id, agent.id, team.id)
    return activities


def assign_new_conversation(session: Session, conversation: Conversation) -> None:
    """Assign a conversation that just arrived on a channel with a default team.

    The caller flushed the conversation and records its ``conversation.created`` event
    afterwards, which carries the assignment.
    """
    team = conversation.channel.default_team
    if team is not None:
        assign_within_team(session, conversation, team, None)
        session.flush()
