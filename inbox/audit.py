"""The audit log of administrative changes: agents, roles, passwords, tokens, teams, channels
and proactive update templates.

``record_audit`` adds the row to the caller's session, so it commits or rolls back with the
change it describes. Callers pass what changed, never a secret: a password or token is
recorded as the fact that it changed, and a channel setting by its name only.

Pages of the log are read newest first with a keyset cursor: the id of the last row seen,
so a page never repeats or skips rows that arrive while an admin reads.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.errors import InvalidInput
from inbox.models import Agent, AuditEvent, Team
from inbox.serialize import isoformat

# The actor label of changes made with the ``switchboard`` command line.
CLI_ACTOR = "command line"
TARGET_TYPES = ("agent", "team", "channel", "token", "update_template")
MAX_DETAIL_TEXT = 500
# Channel settings that are never shown, even as an old or new value in the log.
SECRET_SETTING_HINTS = ("password", "token", "secret")


class Action:
    """The actions the log records; ``GET /api/v1/audit?action=`` takes these names."""

    AGENT_CREATED = "agent.created"
    AGENT_ROLE_CHANGED = "agent.role_changed"
    AGENT_DISABLED = "agent.disabled"
    AGENT_ENABLED = "agent.enabled"
    AGENT_CAPACITY_CHANGED = "agent.capacity_changed"
    PASSWORD_RESET = "agent.password_reset"
    PASSWORD_CHANGED = "agent.password_changed"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    TEAM_CREATED = "team.created"
    TEAM_CHANGED = "team.changed"
    CHANNEL_ADDED = "channel.added"
    CHANNEL_CHANGED = "channel.changed"
    CHANNEL_DISABLED = "channel.disabled"
    CHANNEL_ENABLED = "channel.enabled"
    UPDATE_TEMPLATE_CREATED = "update_template.created"
    UPDATE_TEMPLATE_CHANGED = "update_template.changed"
    UPDATE_TEMPLATE_ENABLED = "update_template.enabled"
    UPDATE_TEMPLATE_DISABLED = "update_template.disabled"
    UPDATE_TEMPLATE_DELETED = "update_template.deleted"

    @classmethod
    def names(cls) -> list[str]:
        return sorted(value for key, value in vars(cls).items() if key.isupper())


def actor_label(actor: Agent | None) -> str:
    return actor.email if actor is not None else CLI_ACTOR


def record_audit(
    session: Session,
    actor: Agent | None,
    action: str,
    target_type: str,
    target_id: int | None,
    target_label: str | None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit row for a change made in ``session``'s transaction and return it.

    ``actor`` is the agent who made the change, or None for the command line.
    """
    if action not in Action.names():
        raise ValueError(f"unknown audit action {action!r}")
    if target_type not in TARGET_TYPES:
        raise ValueError(f"unknown audit target type {target_type!r}")
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        actor_label=actor_label(actor),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        details=dict(details or {}),
    )
    session.add(event)
    return event


def setting_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Return the channel settings that differ, old and new values, with secrets masked.

    A secret setting (a password, token or secret) appears as ``{"changed": true}`` only.
    """
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if any(hint in key for hint in SECRET_SETTING_HINTS):
            changes[key] = {"changed": True}
        else:
            changes[key] = {"from": _shown(before.get(key)), "to": _shown(after.get(key))}
    return changes


def _shown(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT:
        return value[:MAX_DETAIL_TEXT] + "…"
    return value


def team_snapshot(team: Team) -> dict[str, Any]:
    """Return the fields of ``team`` the log compares before and after a change."""
    return {"name": team.name, "member_ids": sorted(agent.id for agent in team.members), "round_robin": team.round_robin}


def team_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Return what changed between two ``team_snapshot`` values: the name, members, round robin."""
    changes: dict[str, Any] = {}
    if before["name"] != after["name"]:
        changes["name"] = {"from": before["name"], "to": after["name"]}
    added = sorted(set(after["member_ids"]) - set(before["member_ids"]))
    removed = sorted(set(before["member_ids"]) - set(after["member_ids"]))
    if added:
        changes["members_added"] = added
    if removed:
        changes["members_removed"] = removed
    if before["round_robin"] != after["round_robin"]:
        changes["round_robin"] = {"from": before["round_robin"], "to": after["round_robin"]}
    return changes


# ---- Reading the log ---------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Conditions on audit rows; every field that is set must match."""

    actor_id: int | None = None
    command_line: bool = False
    actions: tuple[str, ...] = ()
    target_type: str | None = None
    target_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEvent]
    next_cursor: str | None


def parse_audit_filter(args: Mapping[str, str]) -> AuditFilter:
    """Read the filter from query parameters. Raises ``InvalidInput`` naming the bad one.

    ``actor`` is an agent id or ``cli``. ``action`` is a comma-separated list of actions or
    of prefixes ending in a dot (``agent.``). ``target`` is ``TYPE`` or ``TYPE:ID``. ``since``
    and ``until`` are ISO 8601 times with an offset.
    """
    actor_id = None
    command_line = False
    actor = args.get("actor")
    if actor:
        if actor == "cli":
            command_line = True
        else:
            actor_id = _positive_int(actor, "actor", "an agent id or cli")

    actions: list[str] = []
    known = Action.names()
    for name in (args.get("action") or "").split(","):
        name = name.strip()
        if not name:
            continue
        matches = [action for action in known if action == name or (name.endswith(".") and action.startswith(name))]
        if not matches:
            raise InvalidInput(f"Unknown action {name!r}; use one of {', '.join(known)}, or a prefix such as agent.", field="action")
        actions.extend(matches)

    target_type = None
    target_id = None
    target = args.get("target")
    if target:
        target_type, _, raw_id = target.partition(":")
        if target_type not in TARGET_TYPES:
            raise InvalidInput(f"Unknown target {target!r}; use TYPE or TYPE:ID with TYPE one of {', '.join(TARGET_TYPES)}.", field="target")
        if raw_id:
            target_id = _positive_int(raw_id, "target", "TYPE:ID with a whole number ID")

    since = _time(args.get("since"), "since")
    until = _time(args.get("until"), "until")
    if since and until and since > until:
        raise InvalidInput(
            f"since ({since.isoformat()}) is later than until ({until.isoformat()}). "
            "Pass a since before the until, or leave one out.",
            field="since",
        )
    return AuditFilter(actor_id, command_line, tuple(sorted(set(actions))), target_type, target_id, since, until)


def _positive_int(value: str, field: str, expected: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{field} must be {expected}, not {value!r}.", field=field) from None
    if not 0 < number < 2**63:
        raise InvalidInput(f"{field} must be {expected}, not {value!r}.", field=field)
    return number


def _time(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field} must be an ISO 8601 time such as 2026-01-31T09:00:00Z, not {value!r}.", field=field) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{field} needs a UTC offset, such as 2026-01-31T09:00:00Z.", field=field)
    return parsed


def list_audit_events(session: Session, where: AuditFilter, limit: int = 50, cursor: str | None = None) -> AuditPage:
    """Return one page of matching rows, newest first. Raises ``InvalidInput`` for a bad cursor."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if cursor:
        query = query.where(AuditEvent.id < _decode_cursor(cursor))
    if where.command_line:
        query = query.where(AuditEvent.actor_id.is_(None))
    if where.actor_id is not None:
        query = query.where(AuditEvent.actor_id == where.actor_id)
    if where.actions:
        query = query.where(AuditEvent.action.in_(where.actions))
    if where.target_type is not None:
        query = query.where(AuditEvent.target_type == where.target_type)
    if where.target_id is not None:
        query = query.where(AuditEvent.target_id == where.target_id)
    if where.since is not None:
        query = query.where(AuditEvent.created_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.created_at < where.until)

    rows = list(session.scalars(query))
    next_cursor = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return AuditPage(rows[:limit], next_cursor)


def _encode_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{event_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("a"):
            raise ValueError(text)
        event_id = int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("The cursor is invalid; use next_cursor from the previous page.", field="cursor") from None
    if not 0 < event_id < 2**63:
        raise InvalidInput("The cursor is invalid; use next_cursor from the previous page.", field="cursor")
    return event_id


def audit_event_to_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "created_at": isoformat(event.created_at),
        "actor": {"id": event.actor_id, "label": event.actor_label},
        "action": event.action,
        "target": {"type": event.target_type, "id": event.target_id, "label": event.target_label},
        "details": event.details,
    }

