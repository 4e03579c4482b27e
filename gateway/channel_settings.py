"""Provider settings of a channel: from CLI options to the stored JSON, and back to the
settings objects that ``channels`` adapters take.

An email channel that signs in with OAuth 2.0 keeps its refresh token and its latest access
token (with the expiry) in its settings. ``ChannelTokens`` hands that access token to the
IMAP reader and the SMTP sender of every process, and refreshes it when it is about to
expire or a server rejected it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from channels.email.imap import ImapSettings
from channels.email.oauth import (
    OAuthClient,
    OAuthError,
    OAuthGrantError,
    TokenGrant,
    is_fresh,
    refresh_access_token,
)
from channels.email.smtp import SmtpSettings
from channels.whatsapp import TwilioSettings
from channels.whatsapp.meta import DEFAULT_API_BASE_URL, DEFAULT_API_VERSION, MetaSettings
from gateway.config import Config
from inbox.channel_config import store_oauth_tokens, whatsapp_provider
from inbox.mailboxes import record_channel_error
from inbox.models import Channel, utcnow

log = logging.getLogger(__name__)

SMTP_SECURITY = ("starttls", "ssl", "none")


def imap_settings(channel: Channel, tokens: ChannelTokens | None = None) -> ImapSettings:
    """Return the reader's settings; ``tokens`` is required for a channel using OAuth 2.0."""
    settings = channel.settings
    return ImapSettings(
        host=settings["imap_host"],
        port=int(settings["imap_port"]),
        username=settings["imap_username"],
        password=settings.get("imap_password") or "",
        oauth2_tokens=_required_tokens(settings, tokens),
        use_ssl=bool(settings.get("imap_ssl", True)),
        folder=settings.get("imap_folder") or "INBOX",
        **({"max_message_bytes": int(settings["max_message_bytes"])} if settings.get("max_message_bytes") else {}),
    )


def smtp_settings(
    channel_name: str, address: str, settings: dict[str, Any], tokens: ChannelTokens | None = None
) -> SmtpSettings:
    """Return the sender's settings; ``tokens`` is required for a channel using OAuth 2.0."""
    return SmtpSettings(
        host=settings["smtp_host"],
        port=int(settings["smtp_port"]),
        username=settings.get("smtp_username") or None,
        password=settings.get("smtp_password") or None,
        security=settings.get("smtp_security", "starttls"),
        from_address=address,
        from_name=channel_name,
        oauth2_tokens=_required_tokens(settings, tokens),
    )


def twilio_settings(address: str, settings: dict[str, Any], config: Config) -> TwilioSettings:
    return TwilioSettings(
        account_sid=settings["account_sid"],
        auth_token=settings["auth_token"],
        from_number=address,
        api_base_url=config.twilio_api_base_url,
    )


def uses_oauth(settings: dict[str, Any]) -> bool:
    return settings.get("auth") == "oauth2"


def channel_tokens(
    session_factory: sessionmaker[Session], channel_id: int, settings: dict[str, Any]
) -> ChannelTokens | None:
    """Return the token source of a channel that signs in with OAuth 2.0, else None."""
    return ChannelTokens(session_factory, channel_id) if uses_oauth(settings) else None


def _required_tokens(settings: dict[str, Any], tokens: ChannelTokens | None) -> ChannelTokens | None:
    if not uses_oauth(settings):
        return None
    if tokens is None:
        raise ValueError("this channel signs in with OAuth 2.0: pass its ChannelTokens")
    return tokens


def oauth_client(settings: dict[str, Any]) -> OAuthClient:
    """Return the app registration stored in an OAuth 2.0 channel's settings."""
    return OAuthClient(
        token_url=settings["oauth_token_url"],
        client_id=settings["oauth_client_id"],
        client_secret=settings.get("oauth_client_secret") or "",
        scopes=tuple((settings.get("oauth_scopes") or "").split()),
    )


class ChannelTokens:
    """The access tokens of one OAuth 2.0 email channel, cached in its stored settings.

    Every reader and sender, in any process, reads the cached token from the database, so
    one refresh serves all of them. Each database session ends before the HTTP call to the
    token endpoint. A refresh failure that needs an admin is stored as the channel's error.
    ``clock`` exists for tests that move time.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        channel_id: int,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.session_factory = session_factory
        self.channel_id = channel_id
        self.clock = clock

    def __repr__(self) -> str:
        return f"ChannelTokens(channel_id={self.channel_id})"

    def access_token(self) -> str:
        """Return the cached access token, or a new one when it expires within a minute."""
        settings = self._load()
        if _fresh_token(settings, self.clock()):
            return settings["oauth_access_token"]
        with _refresh_lock(self.channel_id):
            settings = self._load()  # another thread may have refreshed while this one waited
            if _fresh_token(settings, self.clock()):
                return settings["oauth_access_token"]
            return self._refresh(settings)

    def renew_access_token(self, rejected: str) -> str:
        """Return a new access token in place of ``rejected``, which a server refused."""
        with _refresh_lock(self.channel_id):
            settings = self._load()
            if settings.get("oauth_access_token") != rejected and _fresh_token(settings, self.clock()):
                return settings["oauth_access_token"]
            return self._refresh(settings)

    def _refresh(self, settings: dict[str, Any]) -> str:
        """Refresh with the stored refresh token and store the result.

        When the token endpoint rejects the refresh token, the stored one is read again: if
        another process rotated it or an admin replaced it meanwhile, the new one is tried.
        """
        for _ in range(3):
            used = settings["oauth_refresh_token"]
            try:
                grant = refresh_access_token(oauth_client(settings), used, now=self.clock())
            except OAuthGrantError as error:
                latest = self._load()
                if latest.get("oauth_refresh_token") not in (None, used):
                    settings = latest
                    continue
                raise self._grant_failed(error) from error
            self._store(used, grant)
            return grant.access_token
        raise self._grant_failed(OAuthGrantError("the refresh token kept changing while it was used"))

    def _store(self, used: str, grant: TokenGrant) -> None:
        with self.session_factory() as session:
            stored = store_oauth_tokens(
                session, self.channel_id, used, grant.access_token, grant.expires_at, grant.refresh_token
            )
        if grant.refresh_token:
            log.info("channel %s: the token endpoint rotated the refresh token", self.channel_id)
        if not stored:
            log.info(
                "channel %s: the refresh token changed during the refresh, so the stored one is kept",
                self.channel_id,
            )

    def _grant_failed(self, error: OAuthGrantError) -> OAuthGrantError:
        """Store the error for the admin, with the command that fixes it, and return it."""
        message = (
            f"OAuth 2.0 sign-in failed: {error}. Authorize Switchboard for this mailbox again and "
            f"store the new refresh token with `switchboard channel reauthorize {self.channel_id}`, "
            "which also replaces a wrong client id or secret."
        )
        log.warning("channel %s: %s", self.channel_id, message)
        with self.session_factory() as session:
            record_channel_error(session, self.channel_id, message)
        return OAuthGrantError(message)

    def _load(self) -> dict[str, Any]:
        with self.session_factory() as session:
            channel = session.get(Channel, self.channel_id)
            if channel is None:
                raise OAuthError(f"channel {self.channel_id} not found", transient=False)
            return dict(channel.settings or {})


def _fresh_token(settings: dict[str, Any], now: datetime) -> bool:
    expires_at = settings.get("oauth_access_token_expires_at")
    if not settings.get("oauth_access_token") or not expires_at:
        return False
    return is_fresh(datetime.fromisoformat(expires_at), now)


# One refresh per channel at a time in this process, so the reader and the sender do not
# both spend a refresh token. Across processes, store_oauth_tokens stores only the first
# result for a refresh token, and ChannelTokens._refresh retries with a rotated one.
_refresh_locks: dict[int, threading.Lock] = {}
_refresh_locks_guard = threading.Lock()


def _refresh_lock(channel_id: int) -> threading.Lock:
    with _refresh_locks_guard:
        return _refresh_locks.setdefault(channel_id, threading.Lock())


def meta_settings(settings: dict[str, Any], config: Config) -> MetaSettings:
    """Return a Meta channel's send settings. Its own api_base_url wins over the service's."""
    return MetaSettings(
        phone_number_id=settings["phone_number_id"],
        access_token=settings["access_token"],
        api_base_url=settings.get("api_base_url") or config.meta_api_base_url or DEFAULT_API_BASE_URL,
        api_version=settings.get("api_version") or DEFAULT_API_VERSION,
    )


def webhook_url(channel: Channel, base_url: str) -> str | None:
    """Return the URL to enter in the provider's console for inbound messages, or None for email.

    ``base_url`` is the public URL of the service, such as https://support.example.com.
    """
    provider = whatsapp_provider(channel)
    base = base_url.rstrip("/")
    if provider == "meta":
        return f"{base}/webhooks/meta/{channel.id}"
    if provider == "twilio":
        return f"{base}/webhooks/twilio/{channel.id}/messages"
    return None
