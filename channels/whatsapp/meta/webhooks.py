"""WhatsApp through Meta's Cloud API: webhook verification, signatures and event parsing.

Meta calls one URL per app. A GET request with ``hub.mode=subscribe``, ``hub.verify_token``
and ``hub.challenge`` checks that the URL belongs to us. The response is the challenge when
the token is the one configured for the channel. Events arrive as POST requests with a
JSON body signed in ``X-Hub-Signature-256`` (``sha256=`` and the hex HMAC-SHA256 of the raw
body, keyed with the app secret). One body can carry several entries (one per WhatsApp
Business Account), each with several changes. A change of the ``messages`` field carries
``messages`` from customers and ``statuses`` of messages we sent, each with the
``metadata.phone_number_id`` of the business number involved.

Every message is kept as its own raw payload: the webhook JSON narrowed to that one message
(its entry, change metadata, sender's contact and the message object). A body with several
messages would otherwise be one payload for many messages, and the inbox keeps one raw
payload per message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

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

RAW_FORMAT = "meta-json"
SIGNATURE_HEADER = "X-Hub-Signature-256"

# A media object in a message carries an id, not a URL. MediaReference.url stores it with
# this prefix until the media is downloaded with the Graph API (see graph.fetch_media).
MEDIA_URL_PREFIX = "meta-media:"

_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})

# Message statuses of the Cloud API that our delivery state machine tracks. Others (for
# example "played" for voice messages, or "deleted") are reported as ignored.
_STATUS_STATES: dict[str, DeliveryState] = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "failed": DeliveryState.FAILED,
}

# The length of the messages.provider_message_id column, counted in UTF-8 bytes because an
# entry of its unique index (a PostgreSQL btree) can be at most 2,704 bytes long.
_MAX_ID_LENGTH = 998
# json.loads turns an unpaired escape such as "\ud83d" into a lone surrogate, which cannot
# be encoded as UTF-8. Paired escapes arrive already joined into one character.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Meta's challenges are short numbers; anything far longer is not a verification request.
_MAX_CHALLENGE_LENGTH = 200


@dataclass(frozen=True)
class ParsedMessage:
    """A customer's message and the business phone number id that received it."""

    phone_number_id: str
    message: InboundMessage


@dataclass(frozen=True)
class ParsedStatus:
    """A delivery report and the business phone number id that sent the message."""

    phone_number_id: str
    status: DeliveryStatus


@dataclass(frozen=True)
class RejectedMessage:
    """A message that could not be parsed: its narrowed raw payload and the reason."""

    phone_number_id: str
    raw: bytes
    error: str


@dataclass
class WebhookEvents:
    """Everything one webhook body carries, in the order it appeared.

    ``ignored`` describes the events that nothing here handles (other webhook fields,
    unknown statuses, errors Meta reports without a message), one line each for the log.
    """

    messages: list[ParsedMessage] = field(default_factory=list)
    statuses: list[ParsedStatus] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def verify_signature(app_secret: str, body: bytes, header: str | None) -> None:
    """Check ``X-Hub-Signature-256`` against the HMAC-SHA256 of ``body`` keyed with ``app_secret``.

    ``body`` must be the request body exactly as received. The comparison takes constant time.

    Raises SignatureError when the app secret is empty, or the header is missing, malformed
    or does not match.
    """
    if not app_secret:
        raise SignatureError("the channel has no Meta app secret, so no signature can be valid")
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    algorithm, _, received = header.strip().partition("=")
    if algorithm.lower() != "sha256" or not received:
        raise SignatureError(f"{SIGNATURE_HEADER} must be sha256= followed by the hex digest")
    expected = signature(app_secret, body).partition("=")[2].encode()
    # Compared as bytes: compare_digest raises TypeError for str with non-ASCII characters.
    if not hmac.compare_digest(expected, received.strip().lower().encode("utf-8", "replace")):
        raise SignatureError(
            f"invalid {SIGNATURE_HEADER}: check that the channel's app secret is the one of "
            "the Meta app that sends the webhooks"
        )


def signature(app_secret: str, body: bytes) -> str:
    """Return the ``X-Hub-Signature-256`` value that Meta sends with ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verification_challenge(verify_token: str, params: Mapping[str, str]) -> str:
    """Return ``hub.challenge`` when ``params`` are a subscription request with our verify token.

    Raises SignatureError when ``hub.mode`` is not ``subscribe`` or ``hub.verify_token`` does
    not match ``verify_token`` (compared in constant time), and ParseError when the token
    matches but the challenge is missing or too long.
    """
    if params.get("hub.mode") != "subscribe":
        raise SignatureError("hub.mode is not subscribe")
    received = params.get("hub.verify_token") or ""
    if not verify_token or not hmac.compare_digest(received.encode(), verify_token.encode()):
        raise SignatureError("hub.verify_token does not match the channel's verify token")
    challenge = params.get("hub.challenge") or ""
    if not challenge or len(challenge) > _MAX_CHALLENGE_LENGTH:
        raise ParseError(f"hub.challenge must be 1 to {_MAX_CHALLENGE_LENGTH} characters")
    return challenge


def parse_webhook(body: bytes) -> WebhookEvents:
    """Parse a webhook body into messages, statuses, rejected messages and ignored events.

    A message that cannot be parsed lands in ``rejected`` with its narrowed payload. A
    malformed status or change lands in ``ignored``. Neither stops the others from being parsed.

    A body about another object than ``whatsapp_business_account`` is only described in
    ``ignored``. Raises ParseError when the body is not a JSON object, or a WhatsApp body
    has no list of entries.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and a number of too many digits.
        raise ParseError(f"the webhook body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ParseError("the webhook body is not a JSON object")
    if document.get("object") != "whatsapp_business_account":
        # Another product of the same app (a Page, Instagram) is not for us, but not malformed.
        return WebhookEvents(ignored=[f"webhook object {str(document.get('object'))[:80]!r}"])
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise ParseError("the webhook body has no entry list")

    events = WebhookEvents()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            events.ignored.append("an entry without a changes list")
            continue
        for change in entry["changes"]:
            _parse_change(entry, change, events)
    return events


def parse_stored_message(raw: bytes) -> InboundMessage:
    """Parse a stored raw payload of one message, as kept by ``parse_webhook``, again.

    Raises ParseError when the payload does not parse or does not hold exactly one message.
    """
    events = parse_webhook(raw)
    if events.rejected:
        raise ParseError(events.rejected[0].error)
    if len(events.messages) != 1:
        raise ParseError(f"the payload contains {len(events.messages)} messages, expected one")
    return events.messages[0].message


def media_id(url: str) -> str | None:
    """Return the Meta media id in a ``MediaReference.url``, or None for other providers' URLs."""
    if url.startswith(MEDIA_URL_PREFIX):
        return url[len(MEDIA_URL_PREFIX) :]
    return None


# Changes


def _parse_change(entry: dict[str, Any], change: Any, events: WebhookEvents) -> None:
    if not isinstance(change, dict):
        events.ignored.append("a change that is not an object")
        return
    field_name = change.get("field")
    value = change.get("value")
    if field_name != "messages":
        events.ignored.append(f"webhook field {str(field_name)[:80]!r}")
        return
    if not isinstance(value, dict):
        events.ignored.append("a messages change without a value object")
        return
    metadata = value.get("metadata")
    phone_number_id = _text(metadata.get("phone_number_id")) if isinstance(metadata, dict) else ""
    if not phone_number_id:
        events.ignored.append("a messages change without metadata.phone_number_id")
        return

    for error in _list(value.get("errors")):
        events.ignored.append(f"error reported for phone number id {phone_number_id}: {_describe_error(error)}")
    for message in _list(value.get("messages")):
        raw = _narrowed_payload(entry, value, message)
        try:
            inbound = _parse_message(message, value, raw)
        except ParseError as error:
            events.rejected.append(RejectedMessage(phone_number_id, raw, str(error)))
            continue
        events.messages.append(ParsedMessage(phone_number_id, inbound))
    for status in _list(value.get("statuses")):
        try:
            parsed = _parse_status(status)
        except ParseError as error:
            events.ignored.append(f"status for phone number id {phone_number_id}: {error}")
            continue
        if parsed is not None:
            events.statuses.append(ParsedStatus(phone_number_id, parsed))
        else:
            events.ignored.append(f"status {str(status.get('status'))[:40]!r} that is not tracked")


def _narrowed_payload(entry: dict[str, Any], value: dict[str, Any], message: Any) -> bytes:
    """Return the webhook JSON with only ``message`` and its sender's contact in it."""
    sender = message.get("from") if isinstance(message, dict) else None
    contacts = [c for c in _list(value.get("contacts")) if isinstance(c, dict) and c.get("wa_id") == sender]
    narrowed_value = {key: item for key, item in value.items() if key not in ("messages", "statuses", "errors")}
    narrowed_value["contacts"] = contacts
    narrowed_value["messages"] = [message]
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": entry.get("id"), "changes": [{"field": "messages", "value": narrowed_value}]}],
    }
    # Sorted keys make the bytes, and so the stored digest, the same for every copy Meta sends.
    # A lone surrogate can only be inside a JSON string, where backslashreplace writes it
    # back as the escape it came from, so the bytes are UTF-8 and parse to the same message.
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.encode("utf-8", "backslashreplace")


# Messages


def _parse_message(message: Any, value: dict[str, Any], raw: bytes) -> InboundMessage:
    if not isinstance(message, dict):
        raise ParseError("a message that is not an object")
    message_id = _text(message.get("id"))
    if not message_id or len(message_id.encode()) > _MAX_ID_LENGTH:
        raise ParseError("missing or over-long message id")
    sender_id = _text(message.get("from"))
    if not sender_id:
        raise ParseError(f"message {message_id} has no from number")
    # wa_id and from are the customer's number in international form without "+".
    sender_number = normalize_phone(sender_id if sender_id.startswith("+") else "+" + sender_id)
    message_type = _text(message.get("type")) or "unknown"
    text, media = _content(message, message_type)
    # The id of the message, ours or the customer's, that this one quotes as a reply.
    context = message.get("context")
    quoted_id = _text(context.get("id")) if isinstance(context, dict) else ""
    content = None
    if message_type == "reaction":
        reaction = message.get("reaction") if isinstance(message.get("reaction"), dict) else {}
        # A reaction names its target in reaction.message_id, not in context.
        quoted_id = _text(reaction.get("message_id")) or quoted_id
        content = {"type": "reaction", "emoji": _text(reaction.get("emoji"))[:32] or None}

    return InboundMessage(
        channel_kind=ChannelKind.WHATSAPP,
        provider_message_id=message_id,
        sender=Address(AddressKind.PHONE, sender_number, _profile_name(value, sender_id)),
        raw=raw,
        raw_format=RAW_FORMAT,
        recipients=_business_number(value),
        text=text,
        sent_at=_timestamp(message.get("timestamp")),
        in_reply_to=quoted_id[:_MAX_ID_LENGTH] or None,
        media=media,
        content=content,
    )


def _content(message: dict[str, Any], message_type: str) -> tuple[str, list[MediaReference]]:
    """Return the text shown to agents for the message, and the media it refers to."""
    body = message.get(message_type)
    body = body if isinstance(body, dict) else {}
    if message_type == "text":
        return _text(body.get("body")), []
    if message_type in _MEDIA_TYPES:
        media_id_value = _text(body.get("id"))
        if not media_id_value:
            raise ParseError(f"{message_type} message {_text(message.get('id'))} has no media id")
        content_type = _text(body.get("mime_type")) or "application/octet-stream"
        return _text(body.get("caption")), [MediaReference(MEDIA_URL_PREFIX + media_id_value, content_type)]
    if message_type == "location":
        return _describe_location(body), []
    if message_type == "contacts":
        return _describe_contacts(message.get("contacts")), []
    if message_type == "interactive":
        return _describe_interactive(body), []
    if message_type == "button":
        return _text(body.get("text")) or _text(body.get("payload")), []
    if message_type == "reaction":
        # The Cloud API leaves out reaction.emoji when the customer removes a reaction.
        emoji = _text(body.get("emoji"))
        return (f"Reacted {emoji} to a message" if emoji else "Removed a reaction from a message"), []
    if message_type == "system":
        return _text(body.get("body")), []
    # NOTE: orders, polls and other kinds have no place in the neutral model yet; the raw
    # payload keeps them whole.
    return f"[A WhatsApp {message_type} message, which Switchboard cannot show]", []


def _describe_location(body: dict[str, Any]) -> str:
    latitude, longitude = _text(body.get("latitude")), _text(body.get("longitude"))
    if not latitude or not longitude:
        return "Shared a location"
    text = f"Shared location: {latitude}, {longitude}"
    details = [_text(body.get(key)) for key in ("name", "address") if _text(body.get(key))]
    return text + (f" ({', '.join(details)})" if details else "")


def _describe_contacts(contacts: Any) -> str:
    lines = []
    for contact in _list(contacts):
        if not isinstance(contact, dict):
            continue
        name = contact.get("name")
        formatted = _text(name.get("formatted_name")) if isinstance(name, dict) else ""
        phones = [_text(p.get("phone")) for p in _list(contact.get("phones")) if isinstance(p, dict)]
        numbers = ", ".join(phone for phone in phones if phone)
        lines.append(f"Shared contact: {formatted or 'unnamed'}" + (f" ({numbers})" if numbers else ""))
    return "\n".join(lines) or "Shared a contact"


def _describe_interactive(body: dict[str, Any]) -> str:
    # A tap on a reply button or a list row sends its title, as the customer saw it.
    for kind in ("button_reply", "list_reply"):
        reply = body.get(kind)
        if isinstance(reply, dict):
            return _text(reply.get("title")) or _text(reply.get("id"))
    return f"[A WhatsApp interactive {_text(body.get('type')) or 'unknown'} reply]"


def _profile_name(value: dict[str, Any], sender_id: str) -> str | None:
    for contact in _list(value.get("contacts")):
        if isinstance(contact, dict) and contact.get("wa_id") == sender_id:
            profile = contact.get("profile")
            if isinstance(profile, dict):
                return _text(profile.get("name"))[:200] or None
    return None


def _business_number(value: dict[str, Any]) -> list[Address]:
    metadata = value.get("metadata") or {}
    display = _text(metadata.get("display_phone_number"))
    if not display:
        return []
    try:
        number = normalize_phone(display if display.startswith("+") else "+" + display)
    except ParseError:
        return []  # only informative: the channel is known by its phone number id
    return [Address(AddressKind.PHONE, number)]


# Statuses


def _parse_status(status: Any) -> DeliveryStatus | None:
    """Return the delivery report, or None for a status that the state machine does not track."""
    if not isinstance(status, dict):
        raise ParseError("a status that is not an object")
    message_id = _text(status.get("id"))
    if not message_id:
        raise ParseError("a status without a message id")
    state = _STATUS_STATES.get(_text(status.get("status")).lower())
    if state is None:
        return None
    code, reason = None, None
    errors = [error for error in _list(status.get("errors")) if isinstance(error, dict)]
    if errors:
        first = errors[0]
        code = _text(first.get("code")) or None
        reason = _error_reason(first) or None
    return DeliveryStatus(message_id, state, error_code=code, error_message=reason)


def _error_reason(error: dict[str, Any]) -> str:
    title = _text(error.get("title")) or _text(error.get("message"))
    data = error.get("error_data")
    details = _text(data.get("details")) if isinstance(data, dict) else ""
    if details and details != title:
        return f"{title}: {details}" if title else details
    return title


def _describe_error(error: Any) -> str:
    if not isinstance(error, dict):
        return "an error that is not an object"
    return f"error {_text(error.get('code')) or '?'}: {_error_reason(error) or 'no reason given'}"


# Values


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    """Return a JSON scalar as stripped text without NUL (PostgreSQL text rejects it), and
    with U+FFFD for each lone surrogate, which no UTF-8 text can contain."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    return _LONE_SURROGATE.sub("\ufffd", str(value).replace("\x00", "")).strip()


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
