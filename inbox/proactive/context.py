"""The placeholder values of one conversation, as update templates see them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from inbox.models import Conversation, ConversationStatus
from inbox.proactive.estimates import Estimate, estimate_for
from inbox.proactive.templates import sample_values
from inbox.replies import reply_to_address

# The status in words a customer understands, for the ``status`` placeholder.
STATUS_WORDS = {
    ConversationStatus.OPEN.value: "being worked on",
    ConversationStatus.PENDING.value: "waiting for your reply",
    ConversationStatus.SNOOZED.value: "on hold",
    ConversationStatus.RESOLVED.value: "resolved",
    ConversationStatus.CLOSED.value: "closed",
}
# The ``customer_name`` of a contact without a name, as in "Hello there".
UNKNOWN_NAME = "there"


def update_context(session: Session, conversation: Conversation, now: datetime) -> dict[str, Any]:
    """Return every placeholder's value for ``conversation`` at ``now`` (timezone-aware UTC).

    Text values are strings (empty when unknown) and ``queue_position`` is an int.
    """
    estimate = estimate_for(session, conversation, now)
    return context_values(conversation, estimate)


def context_values(conversation: Conversation, estimate: Estimate) -> dict[str, Any]:
    """Return the placeholder values from a conversation and its estimate; reads no rows."""
    agent = conversation.assignee
    return {
        "customer_name": (conversation.contact.name or "").strip() or UNKNOWN_NAME,
        "reference": f"#{conversation.id}",
        "status": STATUS_WORDS.get(conversation.status, conversation.status),
        "agent_first_name": _first_name(agent.name) if agent is not None else "",
        "queue_position": estimate.queue_position,
        "first_response_estimate": describe_duration(estimate.first_response),
        "resolution_estimate": describe_duration(estimate.resolution),
        "reply_to": reply_to(conversation),
    }


def sample_context() -> dict[str, Any]:
    """Return sample values for every placeholder, for previews without a conversation."""
    return sample_values()


def reply_to(conversation: Conversation) -> str:
    """Return where the customer can reply: the Reply-To address for email, a wa.me link for WhatsApp."""
    channel = conversation.channel
    if channel.kind == "email":
        return reply_to_address(conversation) or channel.address
    digits = "".join(character for character in channel.address if character.isdigit())
    return f"https://wa.me/{quote(digits)}" if digits else channel.address


def _first_name(name: str) -> str:
    parts = name.split()
    return parts[0] if parts else ""


def describe_duration(duration: timedelta | None) -> str:
    """Return a rounded duration for customers, such as "about 3 hours", or "" for None.

    Under 10 minutes reads "a few minutes". Longer durations are rounded to 5-minute steps
    up to an hour, whole hours up to a day, whole days up to two weeks, then whole weeks.
    """
    if duration is None:
        return ""
    minutes = duration.total_seconds() / 60
    if minutes < 10:
        return "a few minutes"
    if minutes < 57.5:
        return f"about {_round(minutes / 5) * 5} minutes"
    hours = minutes / 60
    if hours < 23.5:
        return _about(_round(hours), "hour")
    days = hours / 24
    if days < 13.5:
        return _about(_round(days), "day")
    return _about(_round(days / 7), "week")


def _round(value: float) -> int:
    """Round half up, so 2.5 hours reads "about 3 hours" rather than Python's even 2."""
    return int(value + 0.5)


def _about(count: int, unit: str) -> str:
    return f"about {count} {unit}" if count == 1 else f"about {count} {unit}s"
