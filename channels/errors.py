"""Errors raised by channel adapters."""


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
