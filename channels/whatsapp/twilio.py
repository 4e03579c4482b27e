"""WhatsApp through Twilio: settings, sending, templates, plus the webhook functions re-exported.

Sending uses the official SDK's Messages API (2010-04-01), one call per WhatsApp message,
with a text body, with media as a public ``MediaUrl`` that Twilio fetches, or with an
approved template (Content API SID and variables). A long reply is split by
``channels.whatsapp.parts`` first. Templates and their WhatsApp approval status come from
the Content API (content.twilio.com/v1). Errors are split into transient ones (timeouts,
connection failures, HTTP 429 and 5xx) that the outbox dispatcher retries, and permanent
ones (authentication, invalid recipient, any other 4xx) that it reports to the agent with
Twilio's error code and a plain explanation (``channels.whatsapp.errors``). A 429 raises
``RateLimitedError`` with the Retry-After that Twilio sent.

The Messages API takes no idempotency key. A transient error after which the message may
exist at Twilio (a read timeout, a connection dropped after the request went out, a 5xx)
is marked ``may_have_sent``, and ``find_sent_whatsapp`` looks for such a message before
the outbox sends it again.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.errors import (
    ChannelError,
    ParseError,
    PermanentSendError,
    SendError,
    SendLookupError,
    TransientSendError,
    may_have_reached_server,
    unreachable,
)
from channels.types import AddressKind, DeliveryState, OutboundMessage, SendResult
from channels.whatsapp.errors import (
    RateLimitedError,
    explain_error,
    is_transient_error,
    parse_retry_after,
)
from channels.whatsapp.parts import MAX_BODY_UNITS, utf16_length
from channels.whatsapp.phone import normalize_phone
from channels.whatsapp.template_values import check_values
from channels.whatsapp.webhooks import (
    RAW_FORMAT,
    STATUS_RAW_FORMAT,
    is_status_callback,
    parse_inbound,
    parse_status,
    twilio_status_to_state,
    validate_signature,
)

logger = logging.getLogger(__name__)

# Request errors that come from our own configuration, so a retry cannot fix them.
_CONFIGURATION_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)


@dataclass(frozen=True)
class TwilioSettings:
    """The Twilio account and WhatsApp sender that one channel uses."""

    account_sid: str
    auth_token: str = field(repr=False)
    # Our WhatsApp sender in E.164, for example "+14155238886".
    from_number: str
    # Replaces https://api.twilio.com for every API request, for tests and sandboxes.
    api_base_url: str | None = None
    # Connect and read timeout of each API request, in seconds.
    timeout_seconds: float = 30.0


class _HeaderKeepingHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, keeping the headers of the last response for Retry-After."""

    last_headers: Mapping[str, str] | None = None

    def request(self, *args: Any, **kwargs: Any) -> Response:
        response = super().request(*args, **kwargs)
        self.last_headers = response.headers
        return response


def send_whatsapp(
    settings: TwilioSettings, message: OutboundMessage, *, media_url: str | None = None
) -> SendResult:
    """Send one WhatsApp message with Twilio's Messages API: ``message.text`` to ``message.to``.

    ``message.text`` must fit Twilio's 1,600-character limit (split longer replies with
    ``channels.whatsapp.parts``), and may be empty when ``media_url``, a public URL that
    Twilio fetches the attachment from, is given. With ``message.content_sid`` the template
    is sent, with ``message.content_variables`` as JSON, in place of the text. Asks for status callbacks at
    ``message.status_callback_url`` when it is set. Returns Twilio's message sid and the
    delivery state of the created message.

    Raises RateLimitedError on HTTP 429, TransientSendError on a timeout, a connection
    failure or HTTP 5xx, and PermanentSendError on any other Twilio error (``code`` is
    Twilio's error code), on invalid settings, on a recipient that is not a phone number, and
    on a template variable that WhatsApp rejects (``channels.whatsapp.template_values``).
    The TransientSendError has ``may_have_sent`` set when Twilio may have created the
    message anyway: after a read timeout, a connection closed or reset once the request
    was sent, and HTTP 5xx.
    """
    from_number, to_number = _check_message(settings, message, media_url)
    client = _build_client(settings)
    create_arguments: dict[str, Any] = {
        "from_": f"whatsapp:{from_number}",
        "to": f"whatsapp:{to_number}",
    }
    if message.content_sid:
        create_arguments["content_sid"] = message.content_sid
        if message.content_variables:
            create_arguments["content_variables"] = json.dumps(message.content_variables)
    else:
        if message.text:
            create_arguments["body"] = message.text
        if media_url:
            create_arguments["media_url"] = [media_url]
    if message.status_callback_url:
        create_arguments["status_callback"] = message.status_callback_url

    try:
        created = client.messages.create(**create_arguments)
    except (TwilioRestException, TwilioServiceException) as error:
        raise _error_from_twilio_response(error, client.http_client.last_headers) from error
    except _CONFIGURATION_ERRORS as error:
        raise PermanentSendError(
            f"invalid Twilio API URL {settings.api_base_url!r}: {error}"
        ) from error
    except requests.RequestException as error:
        # After a read timeout or a dropped connection Twilio may have created the message,
        # so the outbox looks for it (find_sent_whatsapp) before it sends again.
        may_have_sent = may_have_reached_server(error)
        logger.warning("Twilio request failed (may have been sent: %s): %s", may_have_sent, error)
        raise TransientSendError(unreachable("Twilio", error), may_have_sent=may_have_sent) from error
    except TwilioException as error:
        raise TransientSendError(f"Twilio request failed: {error}", may_have_sent=True) from error
    except json.JSONDecodeError as error:
        # A retry could send a second copy, so this is not marked transient.
        raise PermanentSendError(
            "Twilio accepted the request but its response is not valid JSON. "
            "The message may have been sent"
        ) from error
    finally:
        _close_client(client)

    return _send_result(created.sid, created.status)


def _check_message(
    settings: TwilioSettings, message: OutboundMessage, media_url: str | None
) -> tuple[str, str]:
    if not settings.account_sid or not settings.auth_token:
        raise PermanentSendError("missing Twilio account SID or auth token in the channel settings")
    if settings.timeout_seconds <= 0:
        raise PermanentSendError(
            f"invalid Twilio timeout {settings.timeout_seconds!r}: "
            "expected a positive number of seconds"
        )
    if message.to.kind is not AddressKind.PHONE:
        raise PermanentSendError(
            f"cannot send WhatsApp to a {message.to.kind.value} address: a phone number is required"
        )
    if message.attachments:
        raise PermanentSendError("WhatsApp attachments go by media_url, not as attached bytes")
    if not message.text and not message.content_sid and not media_url:
        raise PermanentSendError("cannot send an empty WhatsApp message")
    if message.content_sid and message.content_variables:
        check_values(message.content_variables)
    if not message.content_sid and utf16_length(message.text) > MAX_BODY_UNITS:
        raise PermanentSendError(
            f"the WhatsApp message has {utf16_length(message.text)} UTF-16 code units; Twilio "
            f"takes at most {MAX_BODY_UNITS}, so it must be split first"
        )

    try:
        from_number = normalize_phone(settings.from_number)
    except ParseError as error:
        raise PermanentSendError(
            f"invalid WhatsApp sender in the channel settings: {error}"
        ) from error
    try:
        to_number = normalize_phone(message.to.value)
    except ParseError as error:
        raise PermanentSendError(f"invalid WhatsApp recipient: {error}") from error
    return from_number, to_number


def _build_client(settings: TwilioSettings) -> Client:
    http_client = _HeaderKeepingHttpClient(timeout=settings.timeout_seconds)
    client = Client(settings.account_sid, settings.auth_token, http_client=http_client)
    if settings.api_base_url:
        # Every request is built from its domain's base_url (twilio 9.x): the Api domain's
        # for Messages, the Content domain's (https://content.twilio.com) for templates.
        client.api.base_url = settings.api_base_url.rstrip("/")
        client.content.base_url = settings.api_base_url.rstrip("/")
        # With TWILIO_EDGE or TWILIO_REGION in the environment the SDK rewrites the
        # host name into <product>.<edge>.<region>.twilio.com, which would mangle ours.
        client.edge = None
        client.region = None
    return client


# A message created this long before the attempt began still counts as its copy: Twilio's
# timestamps are whole seconds, and this host's clock may run ahead of Twilio's.
LOOKUP_CLOCK_SKEW = timedelta(seconds=30)
# How many of the newest messages from the sender to the customer a lookup reads.
LOOKUP_MAX_MESSAGES = 200


def find_sent_whatsapp(
    settings: TwilioSettings,
    message: OutboundMessage,
    *,
    attempted_since: datetime,
    media_count: int = 0,
) -> list[SendResult]:
    """Find the messages that an earlier attempt to send ``message`` created at Twilio.

    Reads the Messages list resource filtered by From (the channel's sender) and To
    (``message.to``), at most ``LOOKUP_MAX_MESSAGES`` of the newest. Keeps the messages
    created no earlier than ``LOOKUP_CLOCK_SKEW`` before ``attempted_since``, with
    ``media_count`` media and a body equal to ``message.text``. The comparison ignores
    surrounding whitespace and CRLF line ends. Returns their sids and current delivery states, oldest
    first, or an empty list.

    Raises SendLookupError when the settings are invalid, Twilio cannot be reached, or it
    answers with an error.
    """
    try:
        from_number = normalize_phone(settings.from_number)
        to_number = normalize_phone(message.to.value)
    except ParseError as error:
        raise SendLookupError(f"invalid WhatsApp number: {error}") from error
    if not settings.account_sid or not settings.auth_token:
        raise SendLookupError("missing Twilio account SID or auth token in the channel settings")

    client = _build_client(settings)
    try:
        # NOTE: the DateSent filter is left out because Twilio does not document whether it
        # matches a message that is still queued. Where the list puts such messages is not
        # documented either, so a copy beyond the newest LOOKUP_MAX_MESSAGES would be missed.
        records = client.messages.list(
            from_=f"whatsapp:{from_number}",
            to=f"whatsapp:{to_number}",
            limit=LOOKUP_MAX_MESSAGES,
        )
    except (TwilioRestException, TwilioServiceException) as error:
        reason = _error_from_twilio_response(error, client.http_client.last_headers)
        raise SendLookupError(f"Twilio's message list could not be read: {reason}") from error
    except requests.RequestException as error:
        raise SendLookupError(f"Twilio's message list could not be read: {unreachable('Twilio', error)}") from error
    except (TwilioException, json.JSONDecodeError) as error:
        # A page that is not HTTP 200 raises a bare TwilioException("Unable to fetch page").
        raise SendLookupError(f"Twilio's message list could not be read: {error}") from error
    finally:
        _close_client(client)

    earliest = attempted_since - LOOKUP_CLOCK_SKEW
    expected_body = _comparable_body(message.text)
    found = [
        record for record in records
        if record.sid
        and record.date_created is not None
        and _as_utc(record.date_created) >= earliest
        and _comparable_body(record.body) == expected_body
        and _media_count(record.num_media) == media_count
    ]
    found.sort(key=lambda record: _as_utc(record.date_created))
    results = []
    for record in found:
        state = twilio_status_to_state(record.status or "") or DeliveryState.QUEUED
        results.append(SendResult(provider_message_id=record.sid, status=state))
    logger.info(
        "Twilio lookup of an unconfirmed send: %s of %s listed messages match", len(results), len(records)
    )
    return results


def _comparable_body(body: str | None) -> str:
    return (body or "").replace("\r\n", "\n").strip()


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _media_count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class ContentTemplate:
    """A template of the Content API and its WhatsApp approval.

    ``body`` is the text the customer reads, with placeholders such as ``{{1}}``.
    ``variables`` maps each placeholder to the template's sample value.
    ``whatsapp_status`` is WhatsApp's approval status ("approved", "pending", "rejected",
    ...), or None when the template was never submitted to WhatsApp.
    """

    sid: str
    name: str
    language: str | None
    body: str
    variables: dict[str, str]
    whatsapp_status: str | None
    category: str | None = None


class ContentApiError(ChannelError):
    """Twilio's Content API could not be read."""


# The content types whose text is shown, in order of preference (twilio/text is the fallback
# that every other type may carry).
_BODY_TYPES = ("twilio/text", "twilio/quick-reply", "twilio/call-to-action", "twilio/media", "twilio/list-picker")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def list_content_templates(settings: TwilioSettings) -> list[ContentTemplate]:
    """Return every template of the account with its WhatsApp approval status.

    Reads ``GET /v1/ContentAndApprovals`` through the SDK, every page of it. Raises
    ``ContentApiError`` when Twilio returns an error or cannot be reached.
    """
    if not settings.account_sid or not settings.auth_token:
        raise ContentApiError("missing Twilio account SID or auth token in the channel settings")
    client = _build_client(settings)
    try:
        records = client.content.v1.content_and_approvals.list()
    except (TwilioRestException, TwilioServiceException) as error:
        raise ContentApiError(str(_error_from_twilio_response(error, client.http_client.last_headers))) from error
    except requests.RequestException as error:
        # Agents read this message in the template picker, so the pool and socket details
        # of the exception go to the log only.
        logger.warning("Twilio's Content API request failed: %s", error)
        raise ContentApiError(unreachable("Twilio", error)) from error
    except (TwilioException, json.JSONDecodeError) as error:
        # A page that is not HTTP 200 raises a bare TwilioException("Unable to fetch page").
        raise ContentApiError(f"Twilio's Content API request failed: {error}") from error
    finally:
        _close_client(client)
    return [_content_template(record) for record in records if record.sid]


def _content_template(record: Any) -> ContentTemplate:
    types = record.types if isinstance(record.types, dict) else {}
    approvals = record.approval_requests if isinstance(record.approval_requests, dict) else {}
    # ContentAndApprovals names the WhatsApp approval "whatsapp" inside approval_requests.
    whatsapp = approvals.get("whatsapp") if isinstance(approvals.get("whatsapp"), dict) else approvals
    variables = record.variables if isinstance(record.variables, dict) else {}
    return ContentTemplate(
        sid=record.sid,
        name=record.friendly_name or record.sid,
        language=record.language,
        body=_template_body(types),
        variables={str(key): str(value) for key, value in variables.items()},
        whatsapp_status=whatsapp.get("status") if whatsapp else None,
        category=whatsapp.get("category") if whatsapp else None,
    )


def _template_body(types: dict[str, Any]) -> str:
    ordered = [types[name] for name in _BODY_TYPES if name in types] + list(types.values())
    for content in ordered:
        if isinstance(content, dict):
            for key in ("body", "title"):
                if isinstance(content.get(key), str) and content[key]:
                    return content[key]
    return ""


def template_placeholders(body: str) -> list[str]:
    """Return the placeholder names in ``body`` (``{{1}}`` gives "1"), each once, in order."""
    return list(dict.fromkeys(match.group(1) for match in _PLACEHOLDER.finditer(body)))


def render_template(body: str, variables: dict[str, str]) -> str:
    """Return ``body`` with each placeholder replaced by its value; unknown ones stay as they are."""
    return _PLACEHOLDER.sub(lambda match: variables.get(match.group(1), match.group(0)), body)


def _close_client(client: Client) -> None:
    session = getattr(client.http_client, "session", None)
    if session is not None:
        session.close()


def _error_from_twilio_response(
    error: TwilioRestException | TwilioServiceException,
    headers: Mapping[str, str] | None,
) -> SendError:
    code = str(error.code) if error.code is not None else None
    if isinstance(error, TwilioServiceException):
        reason = error.detail or error.title
    else:
        reason = error.msg
    explanation = explain_error(code, reason)
    text = f"Twilio error {code}: {explanation} (HTTP {error.status})" if code else f"{explanation} (HTTP {error.status})"
    if error.status == 429:
        retry_after = parse_retry_after((headers or {}).get("Retry-After"))
        return RateLimitedError(text, code=code, retry_after=retry_after)
    if error.status >= 500:
        # Twilio's page on error 20500 warns that a message create that gets HTTP 500 may
        # have been sent, and that retrying it can reach the customer twice.
        return TransientSendError(text, code=code, may_have_sent=True)
    if is_transient_error(code):
        return TransientSendError(text, code=code)
    return PermanentSendError(text, code=code)


def _send_result(sid: str | None, status: str | None) -> SendResult:
    if not sid:
        # Retrying could send a second copy, so this is not marked transient.
        raise PermanentSendError(
            "Twilio accepted the request but returned no message sid. "
            "The message may have been sent"
        )
    state = twilio_status_to_state(status or "")
    if state is None:
        # The message exists at Twilio, and raising here would make the dispatcher send it again.
        logger.warning("Twilio returned unknown status %r for %s, stored as queued", status, sid)
        state = DeliveryState.QUEUED
    logger.info("Twilio accepted WhatsApp message %s with status %s", sid, state.value)
    return SendResult(provider_message_id=sid, status=state)


__all__ = [
    "RAW_FORMAT",
    "STATUS_RAW_FORMAT",
    "ContentApiError",
    "ContentTemplate",
    "LOOKUP_CLOCK_SKEW",
    "TwilioSettings",
    "find_sent_whatsapp",
    "is_status_callback",
    "list_content_templates",
    "normalize_phone",
    "parse_inbound",
    "parse_status",
    "render_template",
    "send_whatsapp",
    "template_placeholders",
    "twilio_status_to_state",
    "validate_signature",
]
