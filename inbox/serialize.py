"""The JSON shape of conversations and messages, shared by the API and Socket.IO events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from channels.email.quotes import visible_reply
from inbox.models import (
    Agent, Attachment, ContactIdentity, Conversation, Label, Message, MessagePart, OutboxStatus, Team,
)
from inbox.proactive.satisfaction import is_low_answer
from inbox.window import WINDOW, window_closes_at
from inbox.workspace import OutsideWindow, workspace_settings

SNIPPET_LENGTH = 160


def isoformat(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def make_snippet(text: str) -> str:
    return " ".join(text.split())[:SNIPPET_LENGTH]


def contact_address(conversation: Conversation) -> str:
    """Return the contact's address on the conversation's channel, or any address it has."""
    identity = contact_identity(conversation)
    return identity.value if identity else ""


def contact_identity(conversation: Conversation) -> ContactIdentity | None:
    """Return the contact's identity on the conversation's channel, or any identity it has."""
    wanted = "email" if conversation.channel.kind == "email" else "phone"
    identities = conversation.contact.identities
    for identity in identities:
        if identity.kind == wanted:
            return identity
    return identities[0] if identities else None


def _failing_to_dict(identity: ContactIdentity | None) -> dict[str, Any] | None:
    if identity is None or identity.failing_since is None:
        return None
    return {"since": isoformat(identity.failing_since), "reason": identity.failure_reason}


def conversations_to_dicts(session: Session, conversations: Sequence[Conversation]) -> list[dict[str, Any]]:
    """Return ``conversation_to_dict`` of each, with the WhatsApp windows of all read in one query."""
    whatsapp = [c for c in conversations if c.channel.kind == "whatsapp"]
    last_inbound: dict[tuple[int, int], datetime | None] = {}
    if whatsapp:
        # Contact ids, not (contact, channel) pairs: SQLite searches an index only for the former.
        rows = session.execute(
            select(Conversation.contact_id, Conversation.channel_id, func.max(Conversation.last_inbound_at))
            .where(Conversation.contact_id.in_({c.contact_id for c in whatsapp}))
            .group_by(Conversation.contact_id, Conversation.channel_id)
        )
        last_inbound = {(contact_id, channel_id): at for contact_id, channel_id, at in rows}
    return [
        conversation_to_dict(c, window_closes_at=_closes_at(last_inbound.get((c.contact_id, c.channel_id))))
        for c in conversations
    ]


def _closes_at(last_inbound: datetime | None) -> datetime | None:
    return last_inbound + WINDOW if last_inbound is not None else None


_UNKNOWN: Any = object()


def conversation_to_dict(
    conversation: Conversation,
    window_closes_at: datetime | None = _UNKNOWN,
    *,
    session: Session | None = None,
) -> dict[str, Any]:
    """Return the JSON shape of a conversation. ``window_closes_at`` saves the WhatsApp
    window's query when the caller read it already (see ``conversations_to_dicts``).
    ``session`` supplies the workspace settings for a row that no session holds, such as
    the plain rows of ``inbox.ingest_bulk``."""
    channel = conversation.channel
    contact = conversation.contact
    return {
        "id": conversation.id,
        "channel": {"id": channel.id, "kind": channel.kind, "name": channel.name},
        "contact": {
            "id": contact.id,
            "name": contact.name,
            "name_set_by_agent": bool(contact.name_set_by_agent),
            "address": contact_address(conversation),
            "failing": _failing_to_dict(contact_identity(conversation)),
            "opted_out": (
                {"since": isoformat(contact.opted_out_at), "keyword": contact.opted_out_keyword}
                if contact.opted_out_at else None
            ),
        },
        "whatsapp": _whatsapp_to_dict(conversation, window_closes_at, session),
        "subject": conversation.subject,
        "snippet": conversation.snippet,
        "status": conversation.status,
        "snoozed_until": isoformat(conversation.snoozed_until),
        "priority": conversation.priority,
        "assignee": agent_ref(conversation.assignee),
        "team": team_ref(conversation.team),
        "labels": [label_ref(label) for label in conversation.labels],
        "merged_into_id": conversation.merged_into_id,
        "unread_count": conversation.unread_count,
        "last_message_at": isoformat(conversation.last_message_at),
        "created_at": isoformat(conversation.created_at),
        "updated_at": isoformat(conversation.updated_at),
    }


def _whatsapp_to_dict(
    conversation: Conversation, known_closes_at: datetime | None, session: Session | None
) -> dict[str, Any] | None:
    """Return when the 24-hour window closes and what a free-text reply after it does."""
    if conversation.channel.kind != "whatsapp":
        return None
    if session is None:
        session = object_session(conversation)
    if session is not None:
        closes_at = window_closes_at(session, conversation) if known_closes_at is _UNKNOWN else known_closes_at
        outside_window = workspace_settings(session).outside_window.value
    else:
        # NOTE: without a session, the window comes from this conversation's last message
        # instead of the contact's newest one on the channel, and the setting is the default.
        closes_at = conversation.last_inbound_at + WINDOW if conversation.last_inbound_at else None
        outside_window = OutsideWindow.HOLD.value
    return {"window_closes_at": isoformat(closes_at), "outside_window": outside_window}


def agent_ref(agent: Agent | None) -> dict[str, Any] | None:
    return {"id": agent.id, "name": agent.name} if agent is not None else None


def team_ref(team: Team | None) -> dict[str, Any] | None:
    return {"id": team.id, "name": team.name} if team is not None else None


def label_ref(label: Label) -> dict[str, Any]:
    return {"id": label.id, "name": label.name}


def attachment_to_dict(attachment: Attachment) -> dict[str, Any]:
    """Describe an attachment. Its status is "stored" (downloadable at ``url``), "pending"
    (provider media not downloaded yet), "failed" or "omitted" (with ``omitted_reason``)."""
    if attachment.storage_key or attachment.data is not None:
        status = "stored"
    elif attachment.fetch_status:
        status = attachment.fetch_status
    else:
        status = "omitted"
    return {
        "id": attachment.id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "inline": attachment.inline,
        "status": status,
        "url": f"/api/v1/attachments/{attachment.id}" if status == "stored" else None,
        "omitted_reason": attachment.omitted_reason,
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    if message.direction == "inbound":
        contact = message.contact
        author = {"type": "contact", "id": message.contact_id, "name": contact.name if contact else None}
    else:
        agent = message.agent
        author = {"type": "agent", "id": message.agent_id, "name": agent.name if agent else None}
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "direction": message.direction,
        "channel_kind": message.channel.kind,
        "author": author,
        "subject": message.subject,
        "text": message.text,
        "visible_text": _visible_text(message),
        "html": message.html,
        "created_at": isoformat(message.created_at),
        "thread_reason": message.thread_reason,
        "automatic": message.automatic,
        "delivery_status": message.delivery_status,
        "error": message.delivery_error,
        "retry": _retry_to_dict(message),
        "attachments": [attachment_to_dict(a) for a in message.attachments],
        "template": _template_to_dict(message),
        "held": _held_to_dict(message),
        "cancelled": _cancelled(message),
        "email_fallback": _email_fallback_to_dict(message),
        "content": message.content,
        "reply_to": _reply_to_dict(message.reply_to),
        "parts": [_part_to_dict(part) for part in message.parts],
        "satisfaction": _satisfaction_to_dict(message),
    }


def _satisfaction_to_dict(message: Message) -> dict[str, Any] | None:
    """Return the satisfaction answer that an inbound message gave, and whether it is a low one."""
    answer = message.satisfaction_answer if message.direction == "inbound" else None
    if answer is None:
        return None
    return {"kind": answer.kind, "score": answer.score, "low": is_low_answer(answer.kind, answer.score)}


def _template_to_dict(message: Message) -> dict[str, Any] | None:
    """Return the WhatsApp template a reply was sent as: Twilio's Content SID or Meta's name and language."""
    variables = message.content_variables or {}
    if message.content_sid:
        return {"content_sid": message.content_sid, "variables": variables}
    if message.template_name:
        return {"name": message.template_name, "language": message.template_language, "variables": variables}
    return None


def _reply_to_dict(message: Message | None) -> dict[str, Any] | None:
    """Return what a thread shows of the message that a reply or reaction refers to."""
    if message is None:
        return None
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "direction": message.direction,
        "snippet": make_snippet(message.text or ""),
    }


def _part_to_dict(part: MessagePart) -> dict[str, Any]:
    return {
        "position": part.position,
        "provider_message_id": part.provider_message_id,
        "delivery_status": part.delivery_status,
        "error": part.delivery_error,
    }


def _cancelled(message: Message) -> bool:
    # Only replies have an outbox item, so an inbound message loads nothing here.
    item = message.outbox_item if message.direction == "outbound" else None
    return item is not None and item.status == OutboxStatus.CANCELLED.value


def _held_to_dict(message: Message) -> dict[str, Any] | None:
    """Return why and since when a reply waits for the customer to write, or None."""
    item = message.outbox_item if message.direction == "outbound" else None
    if item is None or item.status != OutboxStatus.HELD.value:
        return None
    return {"since": isoformat(item.held_at), "reason": item.hold_reason}


def _email_fallback_to_dict(message: Message) -> dict[str, Any] | None:
    """Return the email that resent a failed WhatsApp reply, or whether one can be sent.

    None for every message but a failed outbound WhatsApp reply.
    """
    if message.email_fallback is not None:
        resent = message.email_fallback
        return {"message_id": resent.id, "conversation_id": resent.conversation_id, "available": False}
    if message.direction != "outbound" or message.channel.kind != "whatsapp":
        return None
    if message.delivery_status not in ("failed", "undelivered"):
        return None
    # Imported here because inbox.fallback builds its events with this module.
    from inbox.fallback import fallback_address

    session = object_session(message)
    available = session is not None and fallback_address(session, message) is not None
    return {"message_id": None, "conversation_id": None, "available": available}


def _visible_text(message: Message) -> str | None:
    """Return an email's reply without its quoted history and signature, or None.

    None means the whole text is to be shown: nothing folds, the message is not an email, or the
    text is all quote, such as a forward with nothing written above it.
    """
    if not isinstance(message, Message):
        # The bulk import's stand-in carries what the parser found.
        return message.visible_text
    if message.channel.kind != "email":
        return None
    return visible_reply(message.text)


def _retry_to_dict(message: Message) -> dict[str, Any] | None:
    """Return the pending retry of an outbound message after a failed attempt, else None."""
    item = message.outbox_item if message.direction == "outbound" else None
    if item is None or item.status != "pending" or not item.attempts:
        return None
    return {
        "attempts": item.attempts,
        "next_attempt_at": isoformat(item.next_attempt_at),
        "last_error": item.last_error,
    }
