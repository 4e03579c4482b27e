"""WhatsApp through Twilio: webhook signatures, inbound messages and status callbacks.

Twilio posts two kinds of form-encoded webhooks to us. An incoming-message webhook
carries ``MessageSid``, ``From``/``To`` as ``whatsapp:+<E.164>``, ``Body``, and
``NumMedia`` with ``MediaUrl<n>``/``MediaContentType<n>`` pairs. A status callback
carries ``MessageSid`` and ``MessageStatus`` for a message we sent, with ``ErrorCode``
when it failed. Both are signed in the ``X-Twilio-Signature`` header with the account's
auth token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

from channels.errors import ParseError, SignatureError
from channels.types import (
    Address,
    AddressKind,
    ChannelKind,
    DeliveryState,
    DeliveryStatus,
    InboundMessage,
    MediaReference,
)
from channels.whatsapp.phone import normalize_phone

RAW_FORMAT = "twilio-form"

# Twilio's message statuses (Messages API, 2010-04-01). Twilio's own intermediate
# states before the hand-over to WhatsApp all count as queued for us. "canceled" only
# happens to scheduled messages and means the message will never go out.
_STATUS_STATES: dict[str, DeliveryState] = {
    "accepted": DeliveryState.QUEUED,
    "scheduled": DeliveryState.QUEUED,
    "queued": DeliveryState.QUEUED,
    "sending": DeliveryState.QUEUED,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
}

# Statuses of messages that customers send to us, never of a message we sent.
_INBOUND_STATUSES = frozenset({"receiving", "received"})


def validate_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str | None
) -> None:
    """Verify a webhook's ``X-Twilio-Signature`` with Twilio's RequestValidator.

    ``url`` must be the URL Twilio requested, including any query string. Behind a
    TLS-terminating proxy that is the public https URL, not the one the app saw.
    ``params`` are the POST form fields; a multi-value mapping such as werkzeug's
    MultiDict is accepted, so repeated fields are signed as Twilio signed them.

    Raises SignatureError when the signature is missing or does not match.
    """
    if not signature:
        raise SignatureError("missing X-Twilio-Signature header")
    if not RequestValidator(auth_token).validate(url, params, signature):
        raise SignatureError(
            f"invalid X-Twilio-Signature for {url}: check the auth token and that the "
            "URL is the public one Twilio was configured with"
        )


def is_status_callback(form: Mapping[str, str]) -> bool:
    """Return True when the webhook form is a status callback, not an incoming message."""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    return bool(status) and status not in _INBOUND_STATUSES


# Twilio SIDs are two letters and 32 hex digits (SM..., MM...); anything else is not Twilio's.
_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")


def _clean(value: str | None) -> str:
    # NUL is valid in a form field but not in PostgreSQL text, and never means anything here.
    return (value or "").replace("\x00", "")


def parse_inbound(form: Mapping[str, str], raw: bytes) -> InboundMessage:
    """Parse Twilio's incoming-message webhook form into an ``InboundMessage``.

    ``raw`` is the request body exactly as received; it is stored, not parsed. A
    location share without text gets a short text describing the location, because
    the neutral model has no field for it.

    Raises ParseError when ``MessageSid`` or ``From`` is missing, when ``From`` is
    not a WhatsApp address (plain SMS is not supported), or when a phone number or
    the media fields are invalid.
    """
    message_sid = _required(form, "MessageSid")
    if not _SID.match(message_sid):
        raise ParseError(f"MessageSid {message_sid[:80]!r} is not a Twilio message SID")
    sender_address = _required(form, "From")
    if not sender_address.lower().startswith("whatsapp:"):
        raise ParseError(
            f"From {sender_address!r} is not a WhatsApp address: only WhatsApp is "
            "supported on Twilio channels, not plain SMS or MMS"
        )

    sender = Address(
        AddressKind.PHONE,
        normalize_phone(sender_address),
        _clean(form.get("ProfileName"))[:200] or None,
    )
    recipients = []
    if form.get("To"):
        recipients.append(Address(AddressKind.PHONE, normalize_phone(form["To"])))

    return InboundMessage(
        channel_kind=ChannelKind.WHATSAPP,
        provider_message_id=message_sid,
        sender=sender,
        raw=raw,
        raw_format=RAW_FORMAT,
        recipients=recipients,
        text=_clean(form.get("Body")) or _describe_location(form),
        media=_parse_media(form),
    )


def parse_status(form: Mapping[str, str]) -> DeliveryStatus:
    """Parse a Twilio status callback into a ``DeliveryStatus``.

    Twilio's accepted, scheduled and sending map to QUEUED, and canceled to FAILED.
    ``ErrorCode`` and ``ErrorMessage`` are kept when present.

    Raises ParseError when ``MessageSid`` or ``MessageStatus`` is missing or the
    status is not a known outbound status.
    """
    message_sid = _required(form, "MessageSid")
    status = _required(form, "MessageStatus").strip().lower()
    if status in _INBOUND_STATUSES:
        raise ParseError(
            f"MessageStatus {status!r} belongs to an incoming message, not a status callback"
        )
    state = twilio_status_to_state(status)
    if state is None:
        raise ParseError(f"unknown MessageStatus {status!r} for {message_sid}")

    return DeliveryStatus(
        provider_message_id=message_sid,
        state=state,
        error_code=form.get("ErrorCode") or None,
        error_message=form.get("ErrorMessage") or None,
    )


def twilio_status_to_state(status: str) -> DeliveryState | None:
    """Return the delivery state for a Twilio message status, or None if it is unknown."""
    return _STATUS_STATES.get(status.strip().lower())


def _required(form: Mapping[str, str], name: str) -> str:
    value = (form.get(name) or "").strip()
    if not value:
        raise ParseError(f"missing {name} in the Twilio webhook form")
    return value


def _parse_media(form: Mapping[str, str]) -> list[MediaReference]:
    count_text = form.get("NumMedia") or "0"
    try:
        count = int(count_text)
    except ValueError:
        raise ParseError(f"invalid NumMedia {count_text!r}: expected a whole number") from None
    if count < 0:
        raise ParseError(f"invalid NumMedia {count_text!r}: expected a whole number")

    media = []
    for index in range(count):
        url = form.get(f"MediaUrl{index}")
        if not url:
            raise ParseError(f"NumMedia is {count} but MediaUrl{index} is missing")
        # Twilio always sends the type; the fallback only keeps a damaged form usable.
        content_type = form.get(f"MediaContentType{index}") or "application/octet-stream"
        media.append(MediaReference(url=url, content_type=content_type))
    return media


def _describe_location(form: Mapping[str, str]) -> str:
    latitude = form.get("Latitude")
    longitude = form.get("Longitude")
    if not (latitude and longitude):
        return ""
    text = f"Shared location: {latitude}, {longitude}"
    details = [part for part in (form.get("Label"), form.get("Address")) if part]
    if details:
        text += f" ({', '.join(details)})"
    return text
