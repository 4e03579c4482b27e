"""Adding and listing channels. Provider settings are stored as JSON on the channel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.errors import Conflict, InvalidInput
from inbox.models import Channel

CHANNEL_KINDS = ("email", "whatsapp")
# Settings that are credentials: never shown by listings or the API.
SECRET_SETTINGS = frozenset({"imap_password", "smtp_password", "auth_token"})


def add_channel(
    session: Session, kind: str, name: str, address: str, settings: dict[str, Any]
) -> Channel:
    """Add a channel to the session. Raises ``InvalidInput`` or ``Conflict`` (same address)."""
    if kind not in CHANNEL_KINDS:
        raise InvalidInput(f"Unknown channel kind {kind!r}; use email or whatsapp.", field="kind")
    if not name.strip():
        raise InvalidInput("The channel name is empty.", field="name")
    existing = session.scalar(select(Channel).where(Channel.kind == kind, Channel.address == address))
    if existing is not None:
        raise Conflict(
            f"Channel {existing.id} ({existing.name}) already uses {address}.", field="address"
        )
    channel = Channel(kind=kind, name=name.strip(), address=address, settings=settings)
    session.add(channel)
    session.flush()
    return channel


def list_channels(session: Session) -> list[Channel]:
    return list(session.scalars(select(Channel).order_by(Channel.id)))


def public_settings(channel: Channel) -> dict[str, Any]:
    """Return the channel's settings with every credential masked."""
    return {
        key: ("********" if key in SECRET_SETTINGS and value else value)
        for key, value in (channel.settings or {}).items()
    }
