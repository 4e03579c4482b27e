"""Errors raised by channel adapters."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests


class ChannelError(Exception):
    """Base class for every error a channel adapter raises."""


class ParseError(ChannelError):
    """A raw inbound payload could not be turned into an ``InboundMessage``."""


class SignatureError(ChannelError):
    """An inbound webhook carries no valid provider signature."""


class SendError(ChannelError):
    """Sending failed. ``transient`` tells whether a retry may succeed."""

    def __init__(self, message: str, *, transient: bool, code: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.code = code


class TransientSendError(SendError):
    """A timeout, connection reset, 5xx or 429: retry with backoff."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message, transient=True, code=code)


class PermanentSendError(SendError):
    """Authentication failure, invalid recipient or any other error a retry cannot fix."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message, transient=False, code=code)


def unreachable(service: str, error: requests.RequestException) -> str:
    """Return a sentence for the agent on why a request to ``service`` got no response.

    The exception's own text (pool state, socket addresses, nested reprs) stays in the log.
    """
    url = error.request.url if error.request is not None else None
    host = urlsplit(url).hostname if url else None
    where = f" at {host}" if host else ""
    detail = str(error)
    if isinstance(error, requests.exceptions.SSLError):
        reason = "the TLS handshake failed"
    elif isinstance(error, requests.exceptions.ConnectTimeout):
        reason = "the connection timed out"
    elif isinstance(error, requests.exceptions.ReadTimeout):
        reason = "the response timed out"
    elif isinstance(error, requests.exceptions.ConnectionError):
        if "refused" in detail:
            reason = "the connection was refused"
        elif "resolve" in detail or "Name or service not known" in detail:
            reason = "its host name could not be resolved"
        else:
            reason = "the connection failed"
    else:
        reason = f"the request failed ({type(error).__name__})"
    return f"{service}{where} could not be reached: {reason}."
