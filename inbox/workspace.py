"""Workspace settings that domain functions read, carried by the session factory.

The gateway builds one ``WorkspaceSettings`` from its configuration and attaches it with
``use_workspace_settings``. Every session of that factory then reads it with
``workspace_settings(session)``, so ``inbox`` functions read the settings without importing
the gateway. A session from a factory without settings gets the defaults.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

_SETTINGS_KEY = "switchboard.workspace_settings"


class OutsideWindow(str, enum.Enum):
    """The treatment of a free-text WhatsApp reply after the 24-hour window has closed."""

    # Keep the reply and send it as soon as the customer writes again.
    HOLD = "hold"
    # Reject the reply, so that the agent sends an approved template instead.
    REJECT = "reject"


class EmailFallback(str, enum.Enum):
    """The treatment of a failed WhatsApp reply to a contact who has an email address."""

    # The failed reply shows a "Deliver by email" button.
    OFFER = "offer"
    # The reply is resent by email at once, without waiting for an agent.
    AUTOMATIC = "automatic"


@dataclass(frozen=True)
class WorkspaceSettings:
    outside_window: OutsideWindow = OutsideWindow.HOLD
    email_fallback: EmailFallback = EmailFallback.OFFER
    # Upper-case keywords that opt a contact out of, or back into, proactive messages, in
    # addition to STOP, UNSUBSCRIBE and START (see inbox.optout).
    opt_out_keywords: frozenset[str] = field(default_factory=frozenset)
    opt_in_keywords: frozenset[str] = field(default_factory=frozenset)


DEFAULT_SETTINGS = WorkspaceSettings()


def use_workspace_settings(session_factory: sessionmaker[Session], settings: WorkspaceSettings) -> None:
    """Attach ``settings`` to every session that ``session_factory`` creates from now on."""
    session_factory.kw.setdefault("info", {})[_SETTINGS_KEY] = settings


def workspace_settings(session: Session) -> WorkspaceSettings:
    """Return the settings attached to the session's factory, or the defaults."""
    return session.info.get(_SETTINGS_KEY, DEFAULT_SETTINGS)
