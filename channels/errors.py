"""Errors raised by channel adapters."""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError


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
    """A timeout, connection reset, 5xx or 429: retry with backoff.

    ``may_have_sent`` is True when the request may have reached the provider before it
    failed (a read timeout, a connection dropped after the request went out), so the
    message may exist there. It is False when the request certainly never arrived
    (connection refused, host name not resolved, connect timeout, failed TLS handshake)
    or the provider answered that it did not take it.
    """

    def __init__(self, message: str, code: str | None = None, *, may_have_sent: bool = False):
        super().__init__(message, transient=True, code=code)
        self.may_have_sent = may_have_sent


class PermanentSendError(SendError):
    """Authentication failure, invalid recipient or any other error a retry cannot fix."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message, transient=False, code=code)


class SendLookupError(ChannelError):
    """A provider could not be asked whether an earlier send attempt created the message."""


def may_have_reached_server(error: requests.RequestException) -> bool:
    """Return whether the request that failed with ``error`` may have reached the server.

    Returns False for failures that come before the request is written. These are a connect
    timeout, a refused connection, a host name that does not resolve, and a failed TLS
    handshake (a rejected certificate, or a server that replied in plain text). Returns True
    for everything else, such as a read timeout or a connection reset or closed while the
    response was awaited, because the server may have acted on the request by then.
    """
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return False
    causes = list(_causes(error))
    # urllib3 raises NewConnectionError (NameResolutionError for DNS) only while connecting.
    if any(isinstance(cause, NewConnectionError) for cause in causes):
        return False
    if isinstance(error, requests.exceptions.SSLError):
        # NOTE: other TLS errors, such as an EOF in the middle of the handshake, look the same
        # as errors while reading the response, so they count as possibly sent.
        return not any(_is_handshake_failure(cause) for cause in causes)
    return True


def _causes(error: BaseException) -> Iterator[BaseException]:
    """Yield ``error`` and the exceptions it wraps: requests keeps urllib3's error in its
    arguments, urllib3 its cause in ``reason``, and both chain with ``raise ... from``."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(argument for argument in current.args if isinstance(argument, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        if current.__cause__ is not None:
            pending.append(current.__cause__)


def _is_handshake_failure(error: BaseException) -> bool:
    if isinstance(error, ssl.SSLCertVerificationError):
        return True
    return isinstance(error, ssl.SSLError) and error.reason in _PLAIN_TEXT_REPLIES


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
