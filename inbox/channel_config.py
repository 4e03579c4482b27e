"""Adding and listing channels. Provider settings are stored as JSON on the channel."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.errors import Conflict, InvalidInput, NotFound
from inbox.models import Channel

CHANNEL_KINDS = ("email", "whatsapp")
# Settings that are credentials: never shown by listings or the API.
SECRET_SETTINGS = frozenset({"imap_password", "smtp_password", "auth_token"})
SMTP_SECURITY = ("starttls", "ssl", "none")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


def _require_text(settings: dict[str, Any], key: str, label: str) -> None:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{label} is missing.", field=key)


def _require_port(settings: dict[str, Any], key: str, label: str) -> None:
    value = settings.get(key)
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{label} must be a port number from 1 to 65535, not {value!r}.", field=key)


def validate_channel(kind: str, address: str, settings: dict[str, Any]) -> None:
    """Check a channel's address and provider settings. Raises ``InvalidInput``."""
    if kind == "email":
        if not _EMAIL.match(address):
            raise InvalidInput(f"{address!r} is not a valid email address.", field="address")
        _require_text(settings, "imap_host", "The IMAP host")
        _require_port(settings, "imap_port", "The IMAP port")
        _require_text(settings, "imap_username", "The IMAP username")
        _require_text(settings, "imap_password", "The IMAP password")
        _require_text(settings, "smtp_host", "The SMTP host")
        _require_port(settings, "smtp_port", "The SMTP port")
        if settings.get("smtp_security") not in SMTP_SECURITY:
            raise InvalidInput("The SMTP security must be starttls, ssl or none.", field="smtp_security")
        if settings.get("smtp_username") and not settings.get("smtp_password"):
            raise InvalidInput("The SMTP password is missing for the SMTP username.", field="smtp_password")
        for key in ("max_message_bytes", "max_attachment_bytes"):
            value = settings.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidInput(f"The {key} setting must be a positive number of bytes.", field=key)
    elif kind == "whatsapp":
        if not _E164.match(address):
            raise InvalidInput(f"{address!r} is not a phone number in E.164 form (+14155238886).", field="address")
        if not _ACCOUNT_SID.match(str(settings.get("account_sid", ""))):
            raise InvalidInput(
                "The Twilio Account SID must be AC followed by 32 hexadecimal digits.", field="account_sid"
            )
        # An empty token would make every webhook signature "valid" for anyone.
        _require_text(settings, "auth_token", "The Twilio auth token")


def add_channel(
    session: Session, kind: str, name: str, address: str, settings: dict[str, Any]
) -> Channel:
    """Add a channel to the session. Raises ``InvalidInput`` or ``Conflict`` (same address)."""
    if kind not in CHANNEL_KINDS:
        raise InvalidInput(f"Unknown channel kind {kind!r}; use email or whatsapp.", field="kind")
    if not name.strip():
        raise InvalidInput("The channel name is empty.", field="name")
    validate_channel(kind, address, settings)
    existing = session.scalar(select(Channel).where(Channel.kind == kind, Channel.address == address))
    if existing is not None:
        raise Conflict(
            f"Channel {existing.id} ({existing.name}) already uses {address}.", field="address"
        )
    channel = Channel(kind=kind, name=name.strip(), address=address, settings=settings)
    session.add(channel)
    session.flush()
    return channel


def set_channel_active(session: Session, channel_id: int, active: bool) -> Channel:
    """Enable or disable a channel.

    A disabled channel stops reading its mailbox and sending; its queued replies wait until it
    is enabled again. Its webhooks are still accepted, so nothing a customer sends is lost.

    Raises ``NotFound`` for an unknown channel.
    """
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"Channel {channel_id} not found.", field="channel_id")
    channel.is_active = active
    return channel


def list_channels(session: Session) -> list[Channel]:
    return list(session.scalars(select(Channel).order_by(Channel.id)))


def public_settings(channel: Channel) -> dict[str, Any]:
    """Return the channel's settings with every credential masked."""
    return {
        key: ("********" if key in SECRET_SETTINGS and value else value)
        for key, value in (channel.settings or {}).items()
    }
