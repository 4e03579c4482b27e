"""Teams, labels and the settings automatic assignment reads: agent capacity, channel default team.

Team and label names are unique without regard to case. Each row stores its name as typed
and a ``name_key``, the case-folded name, which carries the unique constraint. So two agents
creating "Billing" and "billing" at the same time end up with one label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from inbox.audit import Action, record_audit, team_changes, team_snapshot
from inbox.errors import Conflict, Forbidden, InvalidInput, NotFound
from inbox.events import savepoint
from inbox.models import Agent, Channel, Label, Role, Team

MAX_TEAM_NAME = 80
MAX_LABEL_NAME = 50
# The maximum of agents that one team request may name.
MAX_TEAM_MEMBERS = 500
# The maximum capacity setting of an agent (``Agent.max_open_conversations``).
MAX_CAPACITY = 1000

# Letters and digits of any script, then also spaces and - _ . / & inside the name.
_LABEL_NAME = re.compile(r"^\w(?:[\w .&/-]*[\w.])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_manager(agent: Agent) -> bool:
    return agent.role in (Role.MANAGER.value, Role.ADMIN.value)


def name_key(name: str) -> str:
    return name.casefold()


def _clean_name(name: object, field: str, maximum: int) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"{field} must be a string.", field=field)
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInput(f"The {field} is empty.", field=field)
    if len(cleaned) > maximum:
        raise InvalidInput(f"The {field} {cleaned[:20]!r}… is longer than {maximum} characters.", field=field)
    if _CONTROL.search(cleaned):
        raise InvalidInput(f"The {field} {cleaned!r} contains control characters.", field=field)
    return cleaned


def clean_label_name(name: object) -> str:
    """Return ``name`` with its spaces collapsed. Raises ``InvalidInput`` for an invalid name."""
    cleaned = _clean_name(name, "label", MAX_LABEL_NAME)
    if not _LABEL_NAME.match(cleaned):
        raise InvalidInput(
            f"The label {cleaned!r} is invalid: use letters, digits, spaces and - _ . / &, "
            "starting with a letter or digit.",
            field="label",
        )
    return cleaned


# ---- Teams ------------------------------------------------------------------------------


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).options(selectinload(Team.members)).order_by(Team.name_key)))


def get_team_or_404(session: Session, team_id: int) -> Team:
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"Team {team_id} not found.", field="team_id")
    return team


def create_team(session: Session, name: object, agent_ids: Sequence[int] = ()) -> Team:
    """Add a team with the given members. Raises ``InvalidInput``, ``NotFound`` or ``Conflict``."""
    cleaned = _clean_name(name, "name", MAX_TEAM_NAME)
    members = _active_agents(session, agent_ids)
    team = Team(name=cleaned, name_key=name_key(cleaned), members=members)
    _insert_unique(session, team, f"A team named {cleaned!r} already exists.")
    return team


def update_team(
    session: Session, team_id: int, name: object | None = None, agent_ids: Sequence[int] | None = None
) -> Team:
    """Rename a team and/or replace its members. Raises like ``create_team``."""
    team = get_team_or_404(session, team_id)
    if agent_ids is not None:
        team.members = _active_agents(session, agent_ids)
    if name is not None:
        cleaned = _clean_name(name, "name", MAX_TEAM_NAME)
        team.name = cleaned
        team.name_key = name_key(cleaned)
    _insert_unique(session, team, f"A team named {team.name!r} already exists.")
    return team


def _active_agents(session: Session, agent_ids: Sequence[int]) -> list[Agent]:
    if not isinstance(agent_ids, (list, tuple)) or not all(
        isinstance(agent_id, int) and not isinstance(agent_id, bool) for agent_id in agent_ids
    ):
        raise InvalidInput("agent_ids must be a list of agent ids.", field="agent_ids")
    if len(agent_ids) > MAX_TEAM_MEMBERS:
        raise InvalidInput(f"A team has at most {MAX_TEAM_MEMBERS} members.", field="agent_ids")
    requested = sorted(set(agent_ids))
    found = {agent.id: agent for agent in session.scalars(select(Agent).where(Agent.id.in_(requested)))}
    missing = [agent_id for agent_id in requested if agent_id not in found or not found[agent_id].is_active]
    if missing:
        raise NotFound(f"No active agent with id {missing[0]}.", field="agent_ids")
    return [found[agent_id] for agent_id in requested]


def _insert_unique(session: Session, row: Team | Label, message: str) -> None:
    """Flush ``row`` in a savepoint, turning a clash on its unique name into ``Conflict``."""
    try:
        # Added inside the savepoint, so its rollback also takes a new row out of the session.
        with savepoint(session):
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(message, field="name") from None


# ---- Labels -----------------------------------------------------------------------------


def list_labels(session: Session) -> list[Label]:
    return list(session.scalars(select(Label).order_by(Label.name_key)))


def create_label(session: Session, name: object) -> Label:
    """Add a label. Raises ``InvalidInput`` for an invalid name, ``Conflict`` when it exists."""
    cleaned = clean_label_name(name)
    label = Label(name=cleaned, name_key=name_key(cleaned))
    _insert_unique(session, label, f"The label {cleaned!r} already exists.")
    return label


def find_labels(session: Session, names: Iterable[str], *, create_for: Agent | None = None) -> list[Label]:
    """Return the labels with these (already cleaned) names, in the given order.

    A name that no label has is created when ``create_for`` is a manager or admin. For anyone
    else it raises ``Forbidden``, because managers keep the list of labels.
    """
    keys = {name_key(name): name for name in names}
    found = {label.name_key: label for label in session.scalars(select(Label).where(Label.name_key.in_(keys)))}
    labels = []
    for key, name in keys.items():
        label = found.get(key)
        if label is None:
            if create_for is None or not is_manager(create_for):
                raise Forbidden(
                    f"There is no label {name!r}; only managers and admins can create labels.", field="labels"
                )
            label = _create_label_once(session, name)
        labels.append(label)
    return labels


def _create_label_once(session: Session, name: str) -> Label:
    """Create a label, or return the one a concurrent transaction created under the same name."""
    try:
        return create_label(session, name)
    except Conflict:
        existing = session.scalar(select(Label).where(Label.name_key == name_key(name)))
        if existing is None:
            raise
        return existing


# ---- Settings automatic assignment reads -------------------------------------------------


def set_agent_capacity(session: Session, agent_id: int, capacity: object) -> Agent:
    """Set the most open conversations automatic assignment gives an agent; None for no limit."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"Agent {agent_id} not found.", field="agent_id")
    valid = capacity is None or (isinstance(capacity, int) and not isinstance(capacity, bool) and 0 <= capacity)
    if not valid or (capacity is not None and capacity > MAX_CAPACITY):
        raise InvalidInput(
            f"max_open_conversations must be a whole number from 0 to {MAX_CAPACITY}, or null for no limit.",
            field="max_open_conversations",
        )
    agent.max_open_conversations = capacity
    return agent


def set_channel_default_team(session: Session, channel_id: int, team_id: object) -> Channel:
    """Set the team that new conversations on a channel go to; None for none."""
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"Channel {channel_id} not found.", field="channel_id")
    if team_id is not None and (not isinstance(team_id, int) or isinstance(team_id, bool)):
        raise InvalidInput("default_team_id must be a team id or null.", field="default_team_id")
    channel.default_team = get_team_or_404(session, team_id) if team_id is not None else None
    return channel


# ---- Audited changes that managers make -------------------------------------------------


def set_team_round_robin(session: Session, team_id: int, enabled: object) -> Team:
    """Turn automatic round-robin assignment in a team on or off. Raises ``NotFound``, ``InvalidInput``."""
    team = get_team_or_404(session, team_id)
    if not isinstance(enabled, bool):
        raise InvalidInput("round_robin must be true or false.", field="round_robin")
    team.round_robin = enabled
    return team


def create_team_audited(
    session: Session, actor: Agent, name: object, agent_ids: Sequence[int] = (), round_robin: object = True
) -> Team:
    """Create a team like ``create_team`` and write its audit row in the same transaction."""
    if not isinstance(round_robin, bool):
        raise InvalidInput("round_robin must be true or false.", field="round_robin")
    team = create_team(session, name, agent_ids)
    team.round_robin = round_robin
    session.flush()
    record_audit(session, actor, Action.TEAM_CREATED, "team", team.id, team.name, team_snapshot(team))
    return team


def update_team_audited(
    session: Session, actor: Agent, team_id: int, name: object | None = None,
    agent_ids: Sequence[int] | None = None, round_robin: object | None = None,
) -> Team:
    """Change a team like ``update_team``, and its round robin; log what changed, if anything."""
    before = team_snapshot(get_team_or_404(session, team_id))
    team = update_team(session, team_id, name, agent_ids)
    if round_robin is not None:
        set_team_round_robin(session, team_id, round_robin)
    changes = team_changes(before, team_snapshot(team))
    if changes:
        record_audit(session, actor, Action.TEAM_CHANGED, "team", team.id, team.name, changes)
    return team


def set_agent_capacity_audited(session: Session, actor: Agent, agent_id: int, capacity: object) -> Agent:
    """Set an agent's capacity like ``set_agent_capacity`` and log the change."""
    agent = session.get(Agent, agent_id)
    before = agent.max_open_conversations if agent is not None else None
    agent = set_agent_capacity(session, agent_id, capacity)
    if before != agent.max_open_conversations:
        record_audit(session, actor, Action.AGENT_CAPACITY_CHANGED, "agent", agent.id, agent.email,
                     {"from": before, "to": agent.max_open_conversations})
    return agent


def set_channel_default_team_audited(session: Session, actor: Agent, channel_id: int, team_id: object) -> Channel:
    """Set a channel's default team like ``set_channel_default_team`` and log the change."""
    channel = session.get(Channel, channel_id)
    before = channel.default_team_id if channel is not None else None
    channel = set_channel_default_team(session, channel_id, team_id)
    # The team is set through the relationship, so its id column is filled in only by a flush.
    session.flush()
    if before != channel.default_team_id:
        record_audit(session, actor, Action.CHANNEL_CHANGED, "channel", channel.id, channel.name,
                     {"default_team_id": {"from": before, "to": channel.default_team_id}})
    return channel
