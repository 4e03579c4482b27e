"""WhatsApp through Twilio: webhook signatures, inbound messages and status callbacks.

Twilio posts two kinds of form-encoded webhooks to us. An incoming-message webhook
carries ``MessageSid``, ``From``/``To`` as ``whatsapp:+<E.164>``, ``WaId`` (the sender's
number without ``+``), ``ProfileName``, ``Body``, and ``NumMedia`` with
``MediaUrl<n>``/``MediaContentType<n>`` pairs. ``MessageType`` names the kind, and some
kinds add fields:

- a shared location: ``Latitude``, ``Longitude``, and ``Label`` and ``Address`` when the
  customer picked a place;
- a shared contact: a ``text/vcard`` media item;
- a tap on a quick-reply button: ``ButtonText`` (what the customer saw) and
  ``ButtonPayload`` (the id our template gave the button);
- a choice from a list: ``ListId`` and ``ListTitle``;
- a reply to one of our messages, or a reaction to it: ``OriginalRepliedMessageSid``.

A status callback carries ``MessageSid`` and ``MessageStatus`` for a message we sent,
with ``ErrorCode`` when it failed. Both kinds are signed in the ``X-Twilio-Signature``
header with the account's auth token.
"""

from __future__ import annotations

import base64
import functools
import hmac
import logging
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from twilio.request_validator import add_port, remove_port

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
from channels.whatsapp.errors import explain_error
from channels.whatsapp.phone import normalize_phone, normalize_wa_id

log = logging.getLogger(__name__)

RAW_FORMAT = "twilio-form"
# The stored format of a status callback's form, which the webhook worker applies later.
STATUS_RAW_FORMAT = "twilio-status-form"

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
    """Verify a webhook's ``X-Twilio-Signature`` as Twilio's RequestValidator does.

    ``url`` must be the URL Twilio requested, including any query string. Behind a
    TLS-terminating proxy that is the public https URL, not the one the app saw.
    ``params`` are the POST form fields; a multi-value mapping such as werkzeug's
    MultiDict is accepted, so repeated fields are signed as Twilio signed them.

    Raises SignatureError when the signature is missing or does not match.
    """
    if not signature:
        raise SignatureError("missing X-Twilio-Signature header")
    # The same check as RequestValidator.validate of twilio 9.13, which accepts the signature
    # of the URL with its default port or of the URL without it. That method signs both, and
    # reads each field of a plain dict after two failed attribute lookups. Here the fields
    # are joined once, and the second URL is signed only when the first does not match.
    key = auth_token.encode("utf-8")
    fields = _signed_fields(params)
    expected = signature.encode("utf-8", "surrogatepass")
    for variant in _url_variants(url):
        computed = base64.b64encode(hmac.digest(key, (variant + fields).encode("utf-8"), "sha1"))
        if hmac.compare_digest(computed, expected):
            return
    raise SignatureError(
        f"invalid X-Twilio-Signature for {url}: check the auth token and that the "
        "URL is the public one Twilio was configured with"
    )


def _signed_fields(params: Mapping[str, str]) -> str:
    """Return what Twilio appends to the URL before signing: each field name followed by
    its value, by name and then by value, each distinct pair once."""
    values_of = getattr(params, "getall", None) or getattr(params, "getlist", None)
    parts = []
    for name in sorted(set(params)):
        values = values_of(name) if values_of is not None else [params[name]]
        for value in sorted(set(values)):
            parts.append(name + value)
    return "".join(parts)


@functools.lru_cache(maxsize=256)
def _url_variants(url: str) -> tuple[str, ...]:
    """Return the forms of ``url`` whose signatures Twilio accepts, the one most likely to
    match first: ``url`` itself when it is one of them."""
    parsed = urlparse(url)
    variants = [remove_port(parsed), add_port(parsed)]
    if variants[1] == url:
        variants.reverse()
    return tuple(dict.fromkeys(variants))


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
    location, shared contact, button or list reply, or reaction is kept in ``content``
    and described in ``text``, so that every view of the message can show it. The
    SID of the message a reply or reaction refers to goes to ``in_reply_to``.

    Raises ParseError when ``MessageSid`` or ``From`` is missing, when ``From`` is
    not a WhatsApp address (plain SMS is not supported), or when a phone number, the
    coordinates of a location, or the media fields are invalid.
    """
    message_sid = _required(form, "MessageSid")
    if not _SID.match(message_sid):
        raise ParseError(f"MessageSid {message_sid[:80]!r} is not a Twilio message SID")

    sender = Address(AddressKind.PHONE, _sender_number(form), _clean(form.get("ProfileName"))[:200] or None)
    recipients = []
    if form.get("To"):
        recipients.append(Address(AddressKind.PHONE, normalize_phone(form["To"])))

    media = _parse_media(form)
    body = _clean(form.get("Body"))
    content = _parse_content(form, body, media)
    replied_sid = (form.get("OriginalRepliedMessageSid") or "").strip()
    return InboundMessage(
        channel_kind=ChannelKind.WHATSAPP,
        provider_message_id=message_sid,
        sender=sender,
        raw=raw,
        raw_format=RAW_FORMAT,
        recipients=recipients,
        text=_describe(content, body),
        media=media,
        in_reply_to=replied_sid if _SID.match(replied_sid) else None,
        content=content,
    )


def _sender_number(form: Mapping[str, str]) -> str:
    """Return the sender's E.164 number from ``From``, checked against ``WaId``."""
    sender_address = _required(form, "From")
    if not sender_address.lower().startswith("whatsapp:"):
        raise ParseError(
            f"From {sender_address!r} is not a WhatsApp address: only WhatsApp is "
            "supported on Twilio channels, not plain SMS or MMS"
        )
    number = normalize_phone(sender_address)
    wa_id = (form.get("WaId") or "").strip()
    if wa_id:
        try:
            same = normalize_wa_id(wa_id) == number
        except ParseError:
            same = False
        if not same:
            # Replies go to From, so it wins; the mismatch is worth a look in the raw payload.
            log.warning("WaId of %s does not match its From number; From is used", form.get("MessageSid"))
    return number


def parse_status(form: Mapping[str, str]) -> DeliveryStatus:
    """Parse a Twilio status callback into a ``DeliveryStatus``.

    Twilio's accepted, scheduled and sending map to QUEUED, and canceled to FAILED.
    ``ErrorCode`` is kept, and ``error_message`` explains it in plain words
    (``channels.whatsapp.errors``), with Twilio's ``ErrorMessage`` when it sent one.

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

    error_code = (form.get("ErrorCode") or "").strip()[:20] or None
    error_message = _clean(form.get("ErrorMessage"))[:1000] or None
    if error_code:
        error_message = explain_error(error_code, error_message)
    return DeliveryStatus(
        provider_message_id=message_sid,
        state=state,
        error_code=error_code,
        error_message=error_message,
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
        url = _clean(form.get(f"MediaUrl{index}"))
        if not url:
            raise ParseError(f"NumMedia is {count} but MediaUrl{index} is missing")
        # Twilio always sends the type; the fallback only keeps a damaged form usable.
        content_type = _clean(form.get(f"MediaContentType{index}")) or "application/octet-stream"
        media.append(MediaReference(url=url, content_type=content_type))
    return media


# vCard types that WhatsApp contact shares arrive as.
_VCARD_TYPES = frozenset({"text/vcard", "text/x-vcard", "text/directory"})
# Zoom level of the map links: a street and its neighbours.
_MAP_ZOOM = 17


def _parse_content(
    form: Mapping[str, str], body: str, media: list[MediaReference]
) -> dict[str, Any] | None:
    """Return the structured content of a webhook form, or None for plain text and media."""
    message_type = (form.get("MessageType") or "").strip().lower()
    if form.get("Latitude") or form.get("Longitude") or message_type == "location":
        return _parse_location(form)
    if message_type == "reaction":
        # NOTE: Twilio's reference, as far as read, does not list the reaction fields. The
        # emoji is taken from Body and the target from OriginalRepliedMessageSid, and an
        # empty Body is read as a removed reaction.
        return {"type": "reaction", "emoji": body[:32] or None}
    if form.get("ButtonPayload") or form.get("ButtonText"):
        return {
            "type": "button",
            "text": _clean(form.get("ButtonText"))[:500] or body[:500],
            "payload": _clean(form.get("ButtonPayload"))[:1000] or None,
        }
    if form.get("ListId") or form.get("ListTitle"):
        return {
            "type": "list",
            "id": _clean(form.get("ListId"))[:1000] or None,
            "title": _clean(form.get("ListTitle"))[:500] or body[:500],
        }
    cards = [item for item in media if item.content_type.split(";")[0].strip().lower() in _VCARD_TYPES]
    if cards:
        return {"type": "contacts", "count": len(cards)}
    return None


def _parse_location(form: Mapping[str, str]) -> dict[str, Any]:
    latitude = _coordinate(form, "Latitude", 90.0)
    longitude = _coordinate(form, "Longitude", 180.0)
    return {
        "type": "location",
        "latitude": latitude,
        "longitude": longitude,
        "label": _clean(form.get("Label"))[:500] or None,
        "address": _clean(form.get("Address"))[:1000] or None,
        "url": map_url(latitude, longitude),
    }


def _coordinate(form: Mapping[str, str], name: str, limit: float) -> float:
    text = (form.get(name) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise ParseError(f"invalid {name} {text[:40]!r}: expected decimal degrees") from None
    if not math.isfinite(value) or abs(value) > limit:
        raise ParseError(f"invalid {name} {text[:40]!r}: expected decimal degrees from -{limit:g} to {limit:g}")
    return value


def map_url(latitude: float, longitude: float) -> str:
    """Return an OpenStreetMap link that puts a marker on the coordinates."""
    lat, lon = _degrees(latitude), _degrees(longitude)
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map={_MAP_ZOOM}/{lat}/{lon}"


def _degrees(value: float) -> str:
    # Six decimals are about 0.1 m, finer than any phone's position.
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _describe(content: dict[str, Any] | None, body: str) -> str:
    """Return the message text: the customer's own words, or a description of ``content``."""
    if content is None:
        return body
    kind = content["type"]
    if kind == "location":
        text = f"Shared location: {_degrees(content['latitude'])}, {_degrees(content['longitude'])}"
        details = [part for part in (content["label"], content["address"]) if part]
        if details:
            text += f" ({', '.join(details)})"
        return f"{text}\n{content['url']}"
    if kind == "reaction":
        return f"Reacted {content['emoji']}" if content["emoji"] else "Removed a reaction"
    if kind == "button":
        return content["text"] or body
    if kind == "list":
        return content["title"] or body
    count = content["count"]
    shared = "Shared a contact card" if count == 1 else f"Shared {count} contact cards"
    return f"{shared}\n{body}" if body else shared
