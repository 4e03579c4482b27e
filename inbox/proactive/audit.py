"""The audit log of proactive updates: ``ProactiveSend`` rows, filtered and keyset-paginated.

Newest first, by id. The cursor is the last id of the previous page, so a page stays
stable while new rows arrive at the top.

A row whose message exists shows the message's delivery status, which the outbox and the
provider's callbacks keep current, and its result follows that status. The stored result
moves from queued to sent or failed only at the scheduler's next sweep
(``sending.record_delivery_outcomes``), so the log would otherwise lag behind the thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session, contains_eager

from channels.types import DeliveryState

from inbox.errors import InvalidInput
from inbox.models import Message, ProactiveResult, ProactiveSend, UpdateTemplate
from inbox.proactive.triggers import TRIGGERS
from inbox.serialize import isoformat

RESULTS = tuple(result.value for result in ProactiveResult)
CHANNELS = ("email", "whatsapp")
MAX_ID = 2**63 - 1

# Delivery statuses of a message that left, and those of a message that did not arrive.
_SENT_STATES = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value, DeliveryState.READ.value)
_FAILED_STATES = (DeliveryState.FAILED.value, DeliveryState.UNDELIVERED.value)


@dataclass(frozen=True)
class SendFilter:
    """The filter of an audit listing. A field left None does not filter."""

    template_id: int | None = None
    trigger: str | None = None
    conversation_id: int | None = None
    channel: str | None = None
    result: str | None = None


@dataclass(frozen=True)
class SendPage:
    items: list[ProactiveSend]
    next_cursor: str | None


def parse_send_filter(args: Mapping[str, str]) -> SendFilter:
    """Return the filter that query arguments ask for. Raises ``InvalidInput`` naming the argument."""
    return SendFilter(
        template_id=_id_arg(args, "template_id"),
        trigger=_choice_arg(args, "trigger", TRIGGERS),
        conversation_id=_id_arg(args, "conversation_id"),
        channel=_choice_arg(args, "channel", CHANNELS),
        result=_choice_arg(args, "result", RESULTS),
    )


def _id_arg(args: Mapping[str, str], name: str) -> int | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        raise InvalidInput(f"{name} must be a positive whole number, not {value!r}.", field=name)
    return int(value)


def _choice_arg(args: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    if value not in choices:
        raise InvalidInput(f"Unknown {name} {value!r}; use one of {', '.join(choices)}.", field=name)
    return value


def list_sends(session: Session, where: SendFilter, *, limit: int = 50, cursor: str | None = None) -> SendPage:
    """Return one page of audit rows, newest first. Raises ``InvalidInput`` for a bad cursor."""
    query = (
        select(ProactiveSend)
        .outerjoin(Message, Message.id == ProactiveSend.message_id)
        .options(contains_eager(ProactiveSend.message))
        .order_by(ProactiveSend.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        if not cursor.isdigit() or not 1 <= int(cursor) <= MAX_ID:
            raise InvalidInput(f"The cursor {cursor!r} is invalid; pass the next_cursor of the previous page.",
                               field="cursor")
        query = query.where(ProactiveSend.id < int(cursor))
    for column, value in (
        (ProactiveSend.template_id, where.template_id),
        (ProactiveSend.trigger, where.trigger),
        (ProactiveSend.conversation_id, where.conversation_id),
        (ProactiveSend.channel, where.channel),
        (_current_result(), where.result),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = list(session.scalars(query).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    return SendPage(rows, str(rows[-1].id) if more and rows else None)


def _current_result() -> ColumnElement[str]:
    """Return the SQL of ``current_result``, for a query that outer-joins the row's message."""
    return case(
        (Message.delivery_status.in_(_SENT_STATES), ProactiveResult.SENT.value),
        (Message.delivery_status.in_(_FAILED_STATES), ProactiveResult.FAILED.value),
        else_=ProactiveSend.result,
    )


def current_result(row: ProactiveSend) -> str:
    """Return the row's result as its message's delivery status has it now.

    A message that left (sent, delivered or read) makes the result ``sent``, and one that
    failed or was not delivered makes it ``failed``. Without a message, or while the message
    is queued, it returns the stored result, because a cancelled outbox item leaves the
    message queued but the row failed.
    """
    status = row.message.delivery_status if row.message is not None else None
    if status in _SENT_STATES:
        return ProactiveResult.SENT.value
    if status in _FAILED_STATES:
        return ProactiveResult.FAILED.value
    return row.result


def logged_templates(session: Session) -> list[tuple[int, str, bool]]:
    """Return (id, name, deleted) for every template that exists or has rows in the log, by name.

    A deleted template keeps the name its newest log row recorded.
    """
    current = {template_id: name for template_id, name in session.execute(select(UpdateTemplate.id, UpdateTemplate.name))}
    newest_rows = (
        select(func.max(ProactiveSend.id))
        .where(ProactiveSend.template_id.not_in(list(current)))
        .group_by(ProactiveSend.template_id)
    )
    deleted = {
        template_id: name
        for template_id, name in session.execute(
            select(ProactiveSend.template_id, ProactiveSend.template_name).where(ProactiveSend.id.in_(newest_rows))
        )
    }
    listed = [(template_id, name, False) for template_id, name in current.items()]
    listed += [(template_id, name, True) for template_id, name in deleted.items()]
    return sorted(listed, key=lambda item: (item[1].casefold(), item[0]))


def send_to_dict(row: ProactiveSend) -> dict[str, Any]:
    """Return an audit row as the API shows it. ``reason_code`` is the part before the colon.

    ``delivery_status`` and ``delivery_error`` are the message's, as the conversation's thread
    shows them, and null for a row without a message.
    """
    code = row.reason.partition(":")[0] if row.reason else None
    message = row.message
    return {
        "id": row.id,
        "template": {"id": row.template_id, "name": row.template_name},
        "conversation_id": row.conversation_id,
        "trigger": row.trigger,
        "occurrence_key": row.occurrence_key,
        "channel": row.channel,
        "result": current_result(row),
        "delivery_status": message.delivery_status if message is not None else None,
        "delivery_error": message.delivery_error if message is not None else None,
        "reason_code": code,
        "reason": row.reason,
        "scheduled_for": isoformat(row.scheduled_for),
        "message_id": row.message_id,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
    }
