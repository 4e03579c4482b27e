"""Errors raised by the inbox domain. Each carries a stable ``code`` for API clients."""

from __future__ import annotations


class InboxError(Exception):
    """Base class of inbox errors: ``code`` is machine-readable, the message is for people."""

    code = "inbox_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(InboxError):
    code = "not_found"


class InvalidInput(InboxError):
    code = "invalid"


class Conflict(InboxError):
    code = "conflict"


class Forbidden(InboxError):
    code = "forbidden"
