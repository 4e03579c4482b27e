"""The conversation workflow: status, snooze, priority, labels, team and assignee changes.

Statuses and their transitions (``TRANSITIONS`` is the one place that allows them):

- ``open``: needs an agent.
- ``pending``: waiting on the customer.
- ``snoozed``: hidden until ``snoozed_until``; the snooze wake job opens it then.
- ``resolved``: done.
- ``closed``: merged into another conversation (``inbox.merge``). Final: nothing changes it.

Agents move a conversation between the first four freely. A customer's message opens a
pending, snoozed or resolved conversation (``reopen_for_customer_message``, called by ingest),
and so does an agent's reply that failed for good (``reopen_for_failed_reply``).

Who may change what: any agent may change a conversation that is unassigned or assigned to
them; one assigned to another agent only that agent, a manager or an admin. A change to many
conversations (``change_conversations``) is checked for every conversation before anything
is written, and applies to all of them or to none.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from inbox.activity import Action, add_activity, record_conversation_change
from inbox.assignment import assign_within_team
from inbox.errors import Conflict, Forbidden, InboxError, InvalidInput, NotFound
from inbox.models import (
    Agent,
    Conversation,
    ConversationActivity,
    ConversationStatus,
    Label,
    Message,
    Priority,
    Team,
    utcnow,
)
from inbox.serialize import agent_ref, isoformat, label_ref, team_ref
from inbox.teams import clean_label_name, find_labels, is_manager

log = logging.getLogger(__name__)

OPEN = ConversationStatus.OPEN.value
PENDING = ConversationStatus.PENDING.value
SNOOZED = ConversationStatus.SNOOZED.value
RESOLVED = ConversationStatus.RESOLVED.value
CLOSED = ConversationStatus.CLOSED.value

# The statuses an agent may set, by current status. Closed has no way out, and only a merge
# closes a conversation. Setting "snoozed" again on a snoozed conversation moves its time.
TRANSITIONS: dict[str, frozenset[str]] = {
    OPEN: frozenset({PENDING, SNOOZED, RESOLVED}),
    PENDING: frozenset({OPEN, SNOOZED, RESOLVED}),
    SNOOZED: frozenset({OPEN, PENDING, SNOOZED, RESOLVED}),
    RESOLVED: frozenset({OPEN, PENDING, SNOOZED}),
    CLOSED: frozenset(),
}
AGENT_STATUSES = (OPEN, PENDING, SNOOZED, RESOLVED)
PRIORITIES = tuple(priority.value for priority in Priority)

MAX_SNOOZE = timedelta(days=366)
MAX_BULK_CONVERSATIONS = 500
MAX_LABELS_PER_CHANGE = 20
# How many conversations one run of the snooze wake job opens per transaction.
WAKE_BATCH_SIZE = 200
# Bounds the walk along merged conversations to the one that receives a message.
MAX_MERGE_HOPS = 10


class Unchanged(enum.Enum):
    """The value of a field the change leaves alone (None means "set to none")."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED
AUTO = "auto"


@dataclass(frozen=True)
class Changes:
    """A change to apply to one or more conversations; fields left ``UNCHANGED`` stay as they are.

    ``assignee_id`` is an agent id, None to unassign, or ``"auto"`` for automatic
    assignment within the conversation's (new) team. Labels are names.
    """

    status: str | Unchanged = UNCHANGED
    snoozed_until: datetime | None = None
    priority: str | Unchanged = UNCHANGED
    assignee_id: int | None | Literal["auto"] | Unchanged = UNCHANGED
    team_id: int | None | Unchanged = UNCHANGED
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return self == Changes()


class BulkRejected(InboxError):
    """Some conversations of a bulk change cannot take it, so none was changed.

    ``failures`` lists ``(conversation_id, error)`` for each of them, in request order. The
    code and HTTP status are those of the first failure.
    """

    def __init__(self, failures: list[tuple[int, InboxError]], total: int):
        first = failures[0][1]
        super().__init__(
            f"Nothing was changed: {len(failures)} of {total} conversations cannot take this change. "
            f"First: {first.message}",
            field="conversation_ids",
            code=first.code,
        )
        self.failures = failures

    def items(self) -> list[dict[str, Any]]:
        return [
            {"conversation_id": conversation_id, "code": error.code, "message": error.message}
            for conversation_id, error in self.failures
        ]


# ---- Reading a change from JSON ---------------------------------------------------------


def parse_changes(body: dict[str, Any], now: datetime) -> Changes:
    """Return the ``Changes`` a JSON object asks for. Raises ``InvalidInput`` naming the field.

    Keys: ``status``, ``snoozed_until`` (ISO 8601 with a time zone, required with "snoozed"),
    ``priority``, ``assignee_id``, ``team_id``, ``add_labels``, ``remove_labels``.
    """
    known = {"status", "snoozed_until", "priority", "assignee_id", "team_id", "add_labels", "remove_labels"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidInput(f"Unknown field {unknown[0]!r}; use {', '.join(sorted(known))}.", field=unknown[0])

    status: str | Unchanged = UNCHANGED
    if "status" in body:
        status = body["status"]
        if status not in AGENT_STATUSES:
            raise InvalidInput(
                f"Unknown status {status!r}; use {', '.join(AGENT_STATUSES)}.", field="status"
            )
    snoozed_until = _parse_snooze(body.get("snoozed_until"), status, now)

    priority: str | Unchanged = UNCHANGED
    if "priority" in body:
        priority = body["priority"]
        if priority not in PRIORITIES:
            raise InvalidInput(f"Unknown priority {priority!r}; use {', '.join(PRIORITIES)}.", field="priority")

    assignee_id: int | None | Literal["auto"] | Unchanged = UNCHANGED
    if "assignee_id" in body:
        assignee_id = body["assignee_id"]
        if assignee_id != AUTO and not _is_id_or_none(assignee_id):
            raise InvalidInput('assignee_id must be an agent id, null or "auto".', field="assignee_id")

    team_id: int | None | Unchanged = UNCHANGED
    if "team_id" in body:
        team_id = body["team_id"]
        if not _is_id_or_none(team_id):
            raise InvalidInput("team_id must be a team id or null.", field="team_id")

    add_labels = _parse_labels(body, "add_labels")
    remove_labels = _parse_labels(body, "remove_labels")
    both = {name.casefold() for name in add_labels} & {name.casefold() for name in remove_labels}
    if both:
        raise InvalidInput(f"The label {sorted(both)[0]!r} is both added and removed.", field="remove_labels")

    changes = Changes(status, snoozed_until, priority, assignee_id, team_id, add_labels, remove_labels)
    if changes.is_empty():
        raise InvalidInput("The change is empty: give at least one field to change.")
    return changes


def _is_id_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63)


def _parse_snooze(value: object, status: str | Unchanged, now: datetime) -> datetime | None:
    if status != SNOOZED:
        if value is not None:
            raise InvalidInput('snoozed_until goes only with status "snoozed".', field="snoozed_until")
        return None
    if not isinstance(value, str):
        raise InvalidInput('Status "snoozed" needs snoozed_until, a time in ISO 8601.', field="snoozed_until")
    try:
        until = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"snoozed_until {value!r} is not an ISO 8601 time such as 2030-01-31T09:00:00Z.", field="snoozed_until"
        ) from None
    if until.tzinfo is None:
        raise InvalidInput(
            f"snoozed_until {value!r} has no time zone; add Z or an offset such as +01:00.", field="snoozed_until"
        )
    if until <= now:
        raise InvalidInput(f"snoozed_until {value!r} is not in the future.", field="snoozed_until")
    if until > now + MAX_SNOOZE:
        raise InvalidInput(f"snoozed_until is more than {MAX_SNOOZE.days} days ahead.", field="snoozed_until")
    return until


def _parse_labels(body: dict[str, Any], key: str) -> tuple[str, ...]:
    names = body.get(key, [])
    if not isinstance(names, list):
        raise InvalidInput(f"{key} must be a list of label names.", field=key)
    if len(names) > MAX_LABELS_PER_CHANGE:
        raise InvalidInput(f"{key} names more than {MAX_LABELS_PER_CHANGE} labels.", field=key)
    cleaned: dict[str, str] = {}
    for name in names:
        try:
            label = clean_label_name(name)
        except InvalidInput as error:
            raise InvalidInput(error.message, field=key) from None
        cleaned.setdefault(label.casefold(), label)
    return tuple(cleaned.values())


# ---- Applying a change ------------------------------------------------------------------


@dataclass
class _Targets:
    """What a change refers to, looked up once for every conversation."""

    assignee: Agent | None = None
    team: Team | None = None
    add_labels: list[Label] = field(default_factory=list)
    remove_keys: frozenset[str] = frozenset()


def check_may_change(actor: Agent, conversation: Conversation) -> None:
    """Raise ``Forbidden`` or ``Conflict`` unless ``actor`` may change ``conversation``."""
    if conversation.status == CLOSED:
        raise Conflict(
            f"Conversation {conversation.id} was merged into {conversation.merged_into_id} and cannot change.",
            field="status",
        )
    assignee = conversation.assignee
    if assignee is not None and assignee.id != actor.id and not is_manager(actor):
        raise Forbidden(
            f"Conversation {conversation.id} is assigned to {assignee.name}; "
            "only they, a manager or an admin can change it."
        )


def change_conversations(
    session: Session, actor: Agent, conversation_ids: Sequence[int], changes: Changes, now: datetime | None = None
) -> list[Conversation]:
    """Apply ``changes`` to every conversation in ``conversation_ids``, or to none.

    Every conversation is locked and checked first: a missing one, one the actor may not
    change, or a status it cannot move to makes the whole call raise ``BulkRejected`` before
    anything is written. Otherwise each conversation gets its activity rows and one
    ``conversation.updated`` event, in the caller's transaction. Returns the conversations.
    Raises ``InvalidInput``, ``NotFound`` (an unknown assignee or team) or ``Forbidden`` (a
    new label by a plain agent) for the change itself.
    """
    now = now or utcnow()
    ids = _check_ids(conversation_ids)
    targets = _look_up_targets(session, actor, changes)
    found = {
        conversation.id: conversation
        for conversation in session.scalars(
            select(Conversation)
            .where(Conversation.id.in_(ids))
            .options(selectinload(Conversation.labels), selectinload(Conversation.assignee))
            .order_by(Conversation.id)
            .with_for_update()
        )
    }

    failures: list[tuple[int, InboxError]] = []
    for conversation_id in ids:
        conversation = found.get(conversation_id)
        try:
            if conversation is None:
                raise NotFound(f"Conversation {conversation_id} not found.", field="conversation_ids")
            check_may_change(actor, conversation)
            _check_change(conversation, changes, targets)
        except InboxError as error:
            failures.append((conversation_id, error))
    if failures:
        raise BulkRejected(failures, len(ids))

    changed = [found[conversation_id] for conversation_id in ids]
    for conversation in changed:
        activities = _apply(session, actor, conversation, changes, targets, now)
        if activities:
            record_conversation_change(session, conversation, activities)
    log.info("agent %s changed conversations %s", actor.id, ids)
    return changed


def change_conversation(session: Session, actor: Agent, conversation_id: int, changes: Changes) -> Conversation:
    """Apply ``changes`` to one conversation. Raises the reason it cannot take them, if any."""
    try:
        (conversation,) = change_conversations(session, actor, [conversation_id], changes)
    except BulkRejected as rejected:
        raise rejected.failures[0][1] from None
    return conversation


def _check_ids(conversation_ids: Sequence[int]) -> list[int]:
    if not isinstance(conversation_ids, (list, tuple)) or not conversation_ids:
        raise InvalidInput("conversation_ids must be a non-empty list of ids.", field="conversation_ids")
    if len(conversation_ids) > MAX_BULK_CONVERSATIONS:
        raise InvalidInput(
            f"One request changes at most {MAX_BULK_CONVERSATIONS} conversations.", field="conversation_ids"
        )
    if not all(_is_id_or_none(value) and value is not None for value in conversation_ids):
        raise InvalidInput("conversation_ids must contain conversation ids only.", field="conversation_ids")
    return list(dict.fromkeys(conversation_ids))


def _look_up_targets(session: Session, actor: Agent, changes: Changes) -> _Targets:
    targets = _Targets()
    if isinstance(changes.assignee_id, int):
        agent = session.get(Agent, changes.assignee_id)
        if agent is None or not agent.is_active:
            raise NotFound(f"No active agent with id {changes.assignee_id}.", field="assignee_id")
        targets.assignee = agent
    if isinstance(changes.team_id, int):
        team = session.get(Team, changes.team_id)
        if team is None:
            raise NotFound(f"Team {changes.team_id} not found.", field="team_id")
        targets.team = team
    if changes.add_labels:
        targets.add_labels = find_labels(session, changes.add_labels, create_for=actor)
    targets.remove_keys = frozenset(name.casefold() for name in changes.remove_labels)
    return targets


def _check_change(conversation: Conversation, changes: Changes, targets: _Targets) -> None:
    """Raise the reason ``conversation`` cannot take ``changes``, checked before any write."""
    if changes.status is not UNCHANGED and changes.status != conversation.status:
        if changes.status not in TRANSITIONS[conversation.status]:
            raise Conflict(
                f"Conversation {conversation.id} cannot go from {conversation.status} to {changes.status}.",
                field="status",
            )
    if changes.assignee_id == AUTO:
        team_after = targets.team if changes.team_id is not UNCHANGED else conversation.team
        if team_after is None:
            raise InvalidInput(
                f"Conversation {conversation.id} has no team to assign within; give team_id too.",
                field="assignee_id",
            )


def _apply(
    session: Session, actor: Agent, conversation: Conversation, changes: Changes, targets: _Targets, now: datetime
) -> list[ConversationActivity]:
    activities = []

    if changes.status is not UNCHANGED:
        moved = changes.status != conversation.status
        snooze_moved = changes.status == SNOOZED and conversation.snoozed_until != changes.snoozed_until
        if moved or snooze_moved:
            activities.append(set_status(session, conversation, changes.status, actor, changes.snoozed_until))

    if changes.priority is not UNCHANGED and changes.priority != conversation.priority:
        activities.append(add_activity(
            session, conversation, actor, Action.PRIORITY, {"from": conversation.priority, "to": changes.priority}
        ))
        conversation.priority = changes.priority

    activities.extend(_apply_labels(session, actor, conversation, targets))

    if changes.assignee_id == AUTO:
        team = targets.team if changes.team_id is not UNCHANGED else conversation.team
        assert team is not None  # _check_change rejected the rest
        activities.extend(assign_within_team(session, conversation, team, actor))
        return activities

    if changes.team_id is not UNCHANGED and changes.team_id != conversation.team_id:
        activities.append(add_activity(
            session, conversation, actor, Action.TEAM, {"from": team_ref(conversation.team), "to": team_ref(targets.team)}
        ))
        conversation.team = targets.team
    if changes.assignee_id is not UNCHANGED and changes.assignee_id != conversation.assignee_id:
        activities.append(add_activity(
            session, conversation, actor, Action.ASSIGNEE,
            {"from": agent_ref(conversation.assignee), "to": agent_ref(targets.assignee), "automatic": False},
        ))
        conversation.assignee = targets.assignee
    return activities


def _apply_labels(
    session: Session, actor: Agent, conversation: Conversation, targets: _Targets
) -> list[ConversationActivity]:
    activities = []
    present = {label.id for label in conversation.labels}
    for label in targets.add_labels:
        if label.id not in present:
            conversation.labels.append(label)
            activities.append(add_activity(session, conversation, actor, Action.LABEL_ADDED, {"label": label_ref(label)}))
    for label in list(conversation.labels):
        if label.name_key in targets.remove_keys:
            conversation.labels.remove(label)
            activities.append(add_activity(session, conversation, actor, Action.LABEL_REMOVED, {"label": label_ref(label)}))
    return activities


def set_status(
    session: Session,
    conversation: Conversation,
    status: str,
    actor: Agent | None,
    snoozed_until: datetime | None = None,
    reason: str | None = None,
) -> ConversationActivity:
    """Set the status (and snooze time, cleared outside "snoozed") and return its activity row.

    The caller has checked the transition. ``reason`` says why the system made the change.
    """
    details: dict[str, Any] = {"from": conversation.status, "to": status}
    if status == SNOOZED:
        details["snoozed_until"] = isoformat(snoozed_until)
    if reason:
        details["reason"] = reason
    activity = add_activity(session, conversation, actor, Action.STATUS, details)
    conversation.status = status
    conversation.snoozed_until = snoozed_until if status == SNOOZED else None
    return activity


# ---- Changes the system makes -----------------------------------------------------------


def wake_snoozed_conversations(session: Session, now: datetime) -> list[int]:
    """Open every snoozed conversation whose ``snoozed_until`` has passed, and commit.

    Works in batches of ``WAKE_BATCH_SIZE``, one transaction each. Rows another process is
    waking are skipped (PostgreSQL), so several schedulers never wake one twice. Returns the
    ids of the conversations it opened.
    """
    woken: list[int] = []
    while True:
        with session.begin():
            due = list(
                session.scalars(
                    select(Conversation)
                    .where(Conversation.status == SNOOZED, Conversation.snoozed_until <= now)
                    .order_by(Conversation.snoozed_until, Conversation.id)
                    .limit(WAKE_BATCH_SIZE)
                    .with_for_update(skip_locked=True)
                )
            )
            for conversation in due:
                activity = set_status(session, conversation, OPEN, None, reason="snooze_ended")
                record_conversation_change(session, conversation, [activity])
        woken.extend(conversation.id for conversation in due)
        if len(due) < WAKE_BATCH_SIZE:
            break
    if woken:
        log.info("snooze ended for conversations %s", woken)
    return woken


def follow_merges(session: Session, conversation: Conversation | None) -> Conversation | None:
    """Return the conversation that receives messages threaded to ``conversation``.

    That is ``conversation`` itself, or for a merged one the conversation it was merged into.
    """
    for _ in range(MAX_MERGE_HOPS):
        if conversation is None or conversation.merged_into_id is None:
            return conversation
        conversation = session.get(Conversation, conversation.merged_into_id)
    log.warning("conversation %s: merge chain longer than %s", conversation.id if conversation else None, MAX_MERGE_HOPS)
    return conversation


def reopen_for_customer_message(session: Session, conversation: Conversation) -> None:
    """Open a pending, snoozed or resolved conversation because its customer wrote.

    Adds the status activity; the ingest's own ``conversation.updated`` event carries the
    new status.
    """
    if conversation.status in (PENDING, SNOOZED, RESOLVED):
        set_status(session, conversation, OPEN, None, reason="customer_message")


def reopen_for_failed_reply(session: Session, message: Message) -> None:
    """Open the pending, snoozed or resolved conversation of an agent's reply that failed for
    good, so that the failure shows in the open queue and not only in a conversation that is
    out of view. Records the ``conversation.updated`` event. The caller records the message's.

    Automatic messages, such as proactive updates, have no agent and reopen nothing.
    """
    conversation = message.conversation
    if message.agent_id is None or conversation.status not in (PENDING, SNOOZED, RESOLVED):
        return
    activity = set_status(session, conversation, OPEN, None, reason="reply_failed")
    record_conversation_change(session, conversation, [activity])
    log.info("conversation %s reopened: reply %s failed", conversation.id, message.id)
