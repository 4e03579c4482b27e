"""Errors raised by channel adapters."""

from __future__ import annotations

import errno
import socket
import ssl
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


# OpenSSL's reasons for a handshake with a server that replied in plain text, as when the
# port is a STARTTLS or plain one while implicit TLS is configured.
# NOTE: the tests see WRONG_VERSION_NUMBER from OpenSSL 3.0. The other two are what other
# OpenSSL versions are known to report for such a reply, untested here.
_PLAIN_TEXT_REPLIES = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})


def describe_network_error(error: OSError) -> str:
    """Return the plain-words reason why a connection to a mail server failed.

    Says what a person can check for the common causes (a refused port, an unknown host, a
    TLS setting that does not match the port, an untrusted certificate). Other errors keep
    their own text.
    """
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the server's TLS certificate could not be verified ({error.verify_message}); check the host name"
    if isinstance(error, ssl.SSLError):
        if error.reason in _PLAIN_TEXT_REPLIES:
            return "the server did not answer in TLS; check that the port and the TLS setting belong together"
        return f"the TLS handshake failed ({error.reason or error})"
    if isinstance(error, socket.gaierror):
        return "the host name could not be resolved; check its spelling"
    if isinstance(error, ConnectionRefusedError):
        return "the connection was refused; check the host and port, and that the server is running"
    if isinstance(error, TimeoutError):
        return "the connection timed out; check the host and port, and any firewall in between"
    if isinstance(error, ConnectionResetError):
        return "the server closed the connection"
    if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "the host cannot be reached from this machine"
    return str(error) or type(error).__name__
