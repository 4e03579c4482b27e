"""Presence shared between processes: the agents online, kept in the database.

A web process tracks the agents with Socket.IO connections to it in ``OnlineAgents``
(``inbox.assignment``). It writes them to ``agent_presence`` when an agent comes or goes and
every ``HEARTBEAT_SECONDS`` while it has connections (``publish_presence``). Any process
reads the agents online from rows younger than ``FRESH_FOR`` (``shared_online_agent_ids``),
so a worker that ingests a message can assign it, and a process that died without removing
its rows stops counting after that time.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from inbox.models import Agent, AgentPresence, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
# Three heartbeats, so one late heartbeat does not take an agent offline.
FRESH_FOR = timedelta(seconds=3 * HEARTBEAT_SECONDS)


def new_process_id() -> str:
    """Return an id for this process's rows: host name, process id and a random suffix,
    which keeps a restarted process with a reused pid apart from its predecessor."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def publish_presence(
    session: Session, process_id: str, connections: Mapping[int, int], now: datetime | None = None
) -> None:
    """Replace this process's rows with ``connections`` (agent id to open connections) and
    commit. Also deletes every process's rows that are no longer fresh."""
    now = now or utcnow()
    with session.begin():
        session.execute(
            delete(AgentPresence).where(AgentPresence.seen_at < now - FRESH_FOR)
            .execution_options(synchronize_session=False)
        )
        stored = {
            row.agent_id: row
            for row in session.scalars(select(AgentPresence).where(AgentPresence.process_id == process_id))
        }
        for agent_id, row in stored.items():
            if agent_id not in connections:
                session.delete(row)
        existing = set(session.scalars(select(Agent.id).where(Agent.id.in_(list(connections))))) if connections else set()
        for agent_id, count in connections.items():
            if agent_id not in existing:
                continue  # deleted meanwhile; its connection closes at the next credential check
            row = stored.get(agent_id)
            if row is None:
                session.add(AgentPresence(process_id=process_id, agent_id=agent_id, connections=count, seen_at=now))
            else:
                row.connections = count
                row.seen_at = now


def shared_online_agent_ids(
    session: Session, now: datetime | None = None, exclude_process: str | None = None
) -> frozenset[int]:
    """Return the ids of the agents that some process, other than ``exclude_process``,
    reported connected within ``FRESH_FOR``."""
    now = now or utcnow()
    query = select(AgentPresence.agent_id).where(AgentPresence.seen_at >= now - FRESH_FOR)
    if exclude_process is not None:
        query = query.where(AgentPresence.process_id != exclude_process)
    return frozenset(session.scalars(query.distinct()))
