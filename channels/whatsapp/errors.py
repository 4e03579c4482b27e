"""Twilio error codes that WhatsApp sends end with, explained for the agent.

Twilio reports a failure with a five-digit code, either in the API's response to a send or
in the ``ErrorCode`` field of a status callback, often without a message. The table gives
each common code a one-line meaning and what to do about it, in the agent's terms. The
meanings follow the titles in Twilio's error dictionary (www.twilio.com/docs/api/errors)
and its table of the WhatsApp errors behind each code
(www.twilio.com/docs/whatsapp/api/error-code-mapping): 63018 is WhatsApp's rate limit, 63032
its error 472, 63016 its 24-hour window. A code missing here is shown with Twilio's own
message.

NOTE: the advice in ``action`` is ours, and Twilio may reuse a code for a new cause.
"""

from __future__ import annotations

from dataclasses import dataclass

from channels.errors import TransientSendError


class RateLimitedError(TransientSendError):
    """Twilio returned HTTP 429. ``retry_after`` is its Retry-After in seconds, or None."""

    def __init__(self, message: str, code: str | None = None, retry_after: float | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


@dataclass(frozen=True)
class TwilioErrorInfo:
    """The meaning of a Twilio error code, the advice for it, and whether a retry can succeed."""

    meaning: str
    action: str
    transient: bool = False


TWILIO_ERRORS: dict[str, TwilioErrorInfo] = {
    "20003": TwilioErrorInfo(
        "Twilio rejected the channel's credentials.",
        "An admin must check the channel's Account SID and auth token.",
    ),
    "20429": TwilioErrorInfo(
        "Twilio's API received too many requests.",
        "Nothing to do: Switchboard slows down this sender and retries.",
        transient=True,
    ),
    "21211": TwilioErrorInfo(
        "The customer's number is not a valid phone number.",
        "Check the number in the contact and ask the customer for the correct one.",
    ),
    "21408": TwilioErrorInfo(
        "The Twilio account may not send to the customer's country.",
        "An admin must enable that country in Twilio's geographic permissions.",
    ),
    "21610": TwilioErrorInfo(
        "The customer unsubscribed from this sender (for example by replying STOP).",
        "Do not write again unless the customer opts in.",
    ),
    "21617": TwilioErrorInfo(
        "The text is longer than Twilio's limit of 1,600 characters.",
        "Shorten the reply; Switchboard normally splits long replies itself.",
    ),
    "21620": TwilioErrorInfo(
        "Twilio rejected the address of the attachment.",
        "Check that SWITCHBOARD_PUBLIC_URL is the public https address of this service.",
    ),
    "30003": TwilioErrorInfo(
        "The customer's phone is unreachable: switched off, or out of coverage.",
        "Try again later or reach the customer on another channel.",
    ),
    "30004": TwilioErrorInfo(
        "The message was blocked, for example because the customer blocked this number.",
        "Reach the customer on another channel.",
    ),
    "30005": TwilioErrorInfo(
        "The customer's number is unknown or no longer in service.",
        "Ask the customer for a current number.",
    ),
    "30006": TwilioErrorInfo(
        "The number is a landline or its carrier cannot receive this message.",
        "Ask the customer for a mobile number that uses WhatsApp.",
    ),
    "30007": TwilioErrorInfo(
        "A carrier or WhatsApp filtered the message as unwanted.",
        "Reword the reply without links or repeated text, or use another channel.",
    ),
    "30008": TwilioErrorInfo(
        "The delivery failed for a reason neither Twilio nor the carrier reported.",
        "Send the reply again; if it fails again, use another channel.",
    ),
    "63003": TwilioErrorInfo(
        "The number cannot receive WhatsApp messages: it has no WhatsApp account.",
        "Ask the customer for the number they use on WhatsApp, or use another channel.",
    ),
    "63005": TwilioErrorInfo(
        "WhatsApp did not accept the content of the message.",
        "Check the attachment's type and size and send it again.",
    ),
    "63007": TwilioErrorInfo(
        "Twilio has no WhatsApp sender with the channel's number.",
        "An admin must check the channel's number against the senders in Twilio's console.",
    ),
    "63012": TwilioErrorInfo(
        "WhatsApp had an internal error.",
        "Send the reply again in a few minutes.",
        transient=True,
    ),
    "63013": TwilioErrorInfo(
        "WhatsApp rejected the message because it breaks WhatsApp's policies.",
        "An admin should check the business account's status in WhatsApp Manager.",
    ),
    "63016": TwilioErrorInfo(
        "More than 24 hours passed since the customer's last message, and WhatsApp allows only "
        "approved templates then.",
        "Send an approved template, or wait until the customer writes again.",
    ),
    "63018": TwilioErrorInfo(
        "WhatsApp's rate limit for this sender was exceeded.",
        "Nothing to do: Switchboard slows down this sender and retries; lower the send rate if it "
        "happens often.",
        transient=True,
    ),
    "63019": TwilioErrorInfo(
        "WhatsApp could not download the attachment from Switchboard.",
        "Check that SWITCHBOARD_PUBLIC_URL is reachable from the internet, then send again.",
    ),
    "63021": TwilioErrorInfo(
        "WhatsApp rejected the message as invalid content.",
        "Remove unusual characters or the attachment and send again.",
    ),
    "63024": TwilioErrorInfo(
        "The recipient is not a valid WhatsApp user.",
        "Check the number in the contact; the customer may have left WhatsApp.",
    ),
    "63032": TwilioErrorInfo(
        "WhatsApp does not deliver to this user for now (the user is part of an experiment by "
        "WhatsApp).",
        "Reach the customer on another channel.",
    ),
    "63049": TwilioErrorInfo(
        "Meta chose not to deliver this marketing message, to limit how many such messages the "
        "customer gets.",
        "Do not resend it at once; send it later or as a utility template.",
    ),
    "63051": TwilioErrorInfo(
        "The WhatsApp business account is locked or disabled.",
        "An admin must check the account in WhatsApp Manager.",
    ),
}


def explain_error(code: str | None, provider_message: str | None = None) -> str:
    """Return a plain explanation of Twilio error ``code`` for the agent.

    The explanation is the meaning, what to do, and Twilio's own ``provider_message``
    when there is one. An unknown or missing code gives Twilio's message alone, or a
    general sentence when there is none. The code itself is not included.
    """
    provider_message = (provider_message or "").strip()
    info = TWILIO_ERRORS.get((code or "").strip())
    if info is None:
        return provider_message or "Twilio reported the message as not delivered and gave no reason."
    text = f"{info.meaning} {info.action}"
    if provider_message:
        text += f" Twilio: {provider_message}"
    return text


def is_transient_error(code: str | None) -> bool:
    """Return whether a send that failed with Twilio error ``code`` may succeed if retried."""
    info = TWILIO_ERRORS.get((code or "").strip())
    return info is not None and info.transient


def parse_retry_after(value: str | None) -> float | None:
    """Return the seconds of an HTTP Retry-After header, or None when absent or unreadable.

    Only the delay-seconds form is read. An HTTP date, rare from APIs, returns None, so the
    caller falls back to its own backoff.
    """
    try:
        seconds = float((value or "").strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86400 else None
