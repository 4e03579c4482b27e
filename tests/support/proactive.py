"""Helpers for proactive-update tests: templates, a movable clock, times set on rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update

from gateway import Switchboard
from inbox.models import Conversation, ConversationActivity, Message, UpdateTemplate
from inbox.proactive.quiet_hours import QuietHours
from inbox.proactive.sending import ProactiveSettings
from inbox.proactive.triggers import BusinessHours

# A Tuesday, 10:00 UTC: inside the default quiet-free daytime and business hours.
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
CONTENT_SID = "HX" + "ab" * 16


@dataclass
class Clock:
    """A clock that tests move by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def settings(**changes: Any) -> ProactiveSettings:
    """Return settings with no quiet hours and no cap unless a test sets them."""
    values: dict[str, Any] = {
        "workspace_zone": ZoneInfo("UTC"),
        # start == end: never quiet.
        "quiet_hours": QuietHours(time(0), time(0)),
        "business_hours": BusinessHours(),
        "daily_cap": 0,
        "catch_up": timedelta(hours=24),
        "batch_size": 500,
    }
    values.update(changes)
    return ProactiveSettings(**values)


def add_template(state: Switchboard, trigger: str, params: dict[str, Any] | None = None, **fields: Any) -> int:
    """Store an enabled update template created at ``created_at`` (default a day before T0)."""
    values: dict[str, Any] = {
        "name": f"{trigger} {len(fields)} {id(fields)}",
        "trigger": trigger,
        "trigger_params": params or {},
        "conditions": {},
        "email_subject": "Update on your request",
        "email_body": "Hello {{ customer_name }}, your request {{ reference }} is {{ status }}.",
        "whatsapp_body": "Hello {{ customer_name }}, your request {{ reference }} is {{ status }}.",
        "whatsapp_content_sid": None,
        "whatsapp_variables": {},
        "enabled": True,
        "created_at": T0 - timedelta(days=1),
    }
    values.update(fields)
    with state.session_factory() as session:
        template = UpdateTemplate(**values)
        session.add(template)
        session.commit()
        return template.id


def set_times(state: Switchboard, conversation_id: int, **columns: datetime | None) -> None:
    """Set datetime columns of a conversation, such as created_at or last_inbound_at."""
    with state.session_factory() as session:
        session.execute(update(Conversation).where(Conversation.id == conversation_id).values(**columns))
        session.commit()


def date_activities(state: Switchboard, conversation_id: int, when: datetime) -> None:
    """Give every activity of a conversation the time ``when``."""
    with state.session_factory() as session:
        session.execute(
            update(ConversationActivity)
            .where(ConversationActivity.conversation_id == conversation_id)
            .values(created_at=when)
        )
        session.commit()


def date_message(state: Switchboard, message_id: int, when: datetime) -> None:
    with state.session_factory() as session:
        session.execute(update(Message).where(Message.id == message_id).values(created_at=when))
        session.commit()
