"""OAuth 2.0 sign-in for mailboxes: access tokens from a refresh token, and XOAUTH2.

Gmail and Microsoft 365 accept an OAuth 2.0 access token in place of a password, through
the SASL mechanism XOAUTH2 (IMAP AUTHENTICATE, SMTP AUTH). The client response is
``user=<mailbox>\\x01auth=Bearer <access token>\\x01\\x01``, base64-encoded on the wire.
A server that rejects the token first sends an error as a challenge, and the client ends
the exchange with an empty response.

An access token lives about an hour. New ones come from the refresh token that the app
received when the mailbox's owner authorized it: a form POST of
``grant_type=refresh_token`` to the provider's token endpoint (RFC 6749, section 6). The
reply may carry a new refresh token, which replaces the old one (Microsoft rotates them).
An ``invalid_grant`` reply means the grant was revoked or has expired, and only a person
who authorizes the app again can fix that.

This module makes that HTTP call and builds the SASL response. Where the tokens are stored
and cached belongs to the caller, behind ``AccessTokenSource``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

import requests

from channels.errors import ChannelError

logger = logging.getLogger(__name__)

# A cached access token is used only while more than this remains of its lifetime.
EXPIRY_MARGIN = timedelta(seconds=60)
# RFC 6749 only recommends expires_in; this is assumed when a server leaves it out.
DEFAULT_LIFETIME_SECONDS = 3600
MAX_LIFETIME_SECONDS = 24 * 3600
# A token reply is a small JSON object; anything this large is not one.
MAX_REPLY_BYTES = 1024 * 1024

# Token endpoint errors (RFC 6749, section 5.2) that a retry with the same credentials
# cannot fix.
GRANT_ERRORS = frozenset({
    "invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope",
    "unsupported_grant_type", "invalid_request",
})


@dataclass(frozen=True)
class OAuthProvider:
    """The token endpoint and the mail scopes of a provider."""

    name: str
    token_url: str
    scopes: tuple[str, ...]


PROVIDERS = {
    "google": OAuthProvider(
        name="google",
        token_url="https://oauth2.googleapis.com/token",
        scopes=("https://mail.google.com/",),
    ),
    # "common" serves apps registered for any Microsoft Entra tenant; an app registered for
    # one tenant only needs that tenant's id in place of "common".
    "microsoft": OAuthProvider(
        name="microsoft",
        token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
        scopes=(
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ),
    ),
}


class OAuthError(ChannelError):
    """Getting an access token failed. ``transient`` is True when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class OAuthGrantError(OAuthError):
    """The token endpoint rejected the refresh token or the client credentials.

    A retry with the same credentials cannot succeed: someone must authorize the app for
    the mailbox again, or correct the client id or secret.
    """

    def __init__(self, message: str):
        super().__init__(message, transient=False)


@dataclass(frozen=True)
class OAuthClient:
    """The app registration that refreshes tokens: where, as whom, and for which scopes.

    ``client_secret`` may be empty for a public client. ``timeout`` is in seconds.
    """

    token_url: str
    client_id: str
    client_secret: str = ""
    scopes: tuple[str, ...] = ()
    timeout: float = 30


@dataclass(frozen=True)
class TokenGrant:
    """A token endpoint's reply. ``refresh_token`` is set only when the server rotated it."""

    access_token: str
    expires_at: datetime
    refresh_token: str | None = None


class AccessTokenSource(Protocol):
    """Hands out access tokens of one mailbox and refreshes them when needed."""

    def access_token(self) -> str:
        """Return an access token that is not known to be expired. Raises ``OAuthError``."""
        ...

    def renew_access_token(self, rejected: str) -> str:
        """Return an access token other than ``rejected``, which a server refused.

        Raises ``OAuthError``.
        """
        ...


def is_fresh(expires_at: datetime | None, now: datetime) -> bool:
    """Return whether a token expiring at ``expires_at`` may still be used at ``now``."""
    return expires_at is not None and expires_at - EXPIRY_MARGIN > now


def refresh_access_token(
    client: OAuthClient, refresh_token: str, *, now: datetime | None = None
) -> TokenGrant:
    """Exchange a refresh token for a new access token at the client's token endpoint.

    Returns the grant, with its expiry computed from ``now`` (default: the current time).
    Raises ``OAuthGrantError`` when the endpoint rejects the refresh token or the client,
    and ``OAuthError`` for network errors, timeouts, HTTP 429 and 5xx (transient) and for
    any other reply that is not a token (permanent).
    """
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client.client_id,
    }
    if client.client_secret:
        form["client_secret"] = client.client_secret
    if client.scopes:
        form["scope"] = " ".join(client.scopes)
    now = now or datetime.now(timezone.utc)
    try:
        with requests.post(
            client.token_url, data=form, timeout=client.timeout, headers={"Accept": "application/json"},
            stream=True,
        ) as response:
            body = _read_capped(response, client.token_url, time.monotonic() + client.timeout)
    except requests.RequestException as error:
        raise OAuthError(
            f"token endpoint {client.token_url} could not be reached: {type(error).__name__}",
            transient=True,
        ) from error
    return _read_token_reply(client.token_url, response.status_code, body, now)


def _read_capped(response: requests.Response, url: str, deadline: float) -> bytes:
    """Read a token reply of at most ``MAX_REPLY_BYTES`` before ``deadline`` (monotonic seconds).

    ``timeout`` bounds each read only, so a server trickling bytes could otherwise hold the
    channel's refresh lock, and with it the mailbox, for as long as it likes.
    """
    chunks = []
    received = 0
    for chunk in response.iter_content(8192):
        received += len(chunk)
        if received > MAX_REPLY_BYTES:
            raise OAuthError(f"token endpoint {url} sent a reply larger than {MAX_REPLY_BYTES} bytes", transient=True)
        if time.monotonic() > deadline:
            raise OAuthError(f"token endpoint {url} did not finish its reply in time", transient=True)
        chunks.append(chunk)
    return b"".join(chunks)


def xoauth2_response(user: str, access_token: str) -> str:
    """Return the XOAUTH2 client response for ``user``, before base64 encoding.

    Raises ``ValueError`` when either value contains a control character, which would
    let it end its field early.
    """
    for name, value in (("user", user), ("access token", access_token)):
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError(f"the XOAUTH2 {name} contains a control character")
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


def sign_in_with_token(
    tokens: AccessTokenSource,
    sign_in: Callable[[str], None],
    rejected: type[Exception] | tuple[type[Exception], ...],
) -> None:
    """Call ``sign_in`` with an access token, and once more with a new one after a rejection.

    A token can be revoked or expire early on the server's side while it still looks valid
    here, so one rejection leads to a refresh. ``rejected`` is the exception type of
    a refused sign-in; the second refusal propagates. Raises ``OAuthError`` from ``tokens``.
    """
    token = tokens.access_token()
    try:
        sign_in(token)
    except rejected as error:
        logger.info("server rejected the access token (%s); signing in again with a new one", error)
        sign_in(tokens.renew_access_token(token))


def _read_token_reply(url: str, status: int, raw_body: bytes, now: datetime) -> TokenGrant:
    """Turn a token endpoint's reply into a grant, or raise the fitting ``OAuthError``."""
    try:
        body = json.loads(raw_body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}

    if status == 200:
        access_token = body.get("access_token")
        token_type = str(body.get("token_type", "bearer")).lower()
        if not isinstance(access_token, str) or not access_token or token_type != "bearer":
            raise OAuthError(f"token endpoint {url} replied 200 without a bearer access token", transient=True)
        try:
            lifetime = int(body.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError, OverflowError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        # Providers issue tokens for about an hour; a wild value must not overflow the clock.
        lifetime = min(max(lifetime, 0), MAX_LIFETIME_SECONDS)
        rotated = body.get("refresh_token")
        return TokenGrant(
            access_token=access_token,
            expires_at=now + timedelta(seconds=lifetime),
            refresh_token=rotated if isinstance(rotated, str) and rotated else None,
        )

    error = body.get("error")
    reason = str(error) if error else f"HTTP {status}"
    description = body.get("error_description")
    if description:
        # Descriptions can be long (Microsoft adds trace ids and timestamps).
        reason += f" ({str(description)[:300]})"
    if status == 429 or status >= 500:
        raise OAuthError(f"token endpoint {url} is unavailable: {reason}", transient=True)
    if error in GRANT_ERRORS:
        raise OAuthGrantError(f"token endpoint {url} rejected the token refresh: {reason}")
    raise OAuthError(f"token endpoint {url} replied HTTP {status}: {reason}", transient=False)
