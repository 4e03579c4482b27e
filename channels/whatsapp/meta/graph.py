"""WhatsApp through Meta's Cloud API: sending messages, fetching media and listing message
templates with the Graph API.

A send is ``POST {base}/{version}/{phone_number_id}/messages`` with a JSON body and the
access token as a bearer token. The response contains the new message's id (a ``wamid``),
and the delivery progress arrives later as status webhooks. Errors come as
``{"error": {"code", "message", "error_data": {"details"}}}``, and their ``code``, not the
HTTP status, identifies the error. Errors are split into transient ones (timeouts,
connection failures, HTTP 429 and 5xx, and the codes of rate limits and temporary outages),
which the outbox dispatcher retries, and permanent ones, which the agent sees with Meta's
code and message.

Message templates belong to the WhatsApp Business Account (WABA), not to the phone number:
``GET {base}/{version}/{waba_id}/message_templates`` lists them a page at a time, with
``paging.cursors.after`` naming the next page while ``paging.next`` is present.

An attachment is first uploaded, ``POST {base}/{version}/{phone_number_id}/media`` as
multipart form data, which returns a media id; the message then names that id, so the
file never needs a public URL of ours.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from channels.errors import (
    ChannelError,
    ParseError,
    PermanentSendError,
    SendError,
    TransientSendError,
    unreachable,
)
from channels.types import Address, AddressKind, DeliveryState, OutboundMessage, SendResult
from channels.whatsapp.media import ALLOWED_TYPES, DownloadedMedia, MediaError, format_size, read_body
from channels.whatsapp.phone import normalize_phone
from channels.whatsapp.template_values import check_values

logger = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://graph.facebook.com"
# NOTE: Meta retires each Graph API version about two years after its release; channels
# can name a newer one in their api_version setting.
DEFAULT_API_VERSION = "v23.0"

# The Cloud API rejects text bodies longer than this.
MAX_TEXT_LENGTH = 4096
# The largest media file WhatsApp carries (documents) is 100 MB.
MAX_MEDIA_BYTES = 100 * 1024 * 1024

# The message type WhatsApp shows a file as, by its media type; any other file is a document.
_MEDIA_MESSAGE_TYPES = {"image/jpeg": "image", "image/png": "image", "image/webp": "sticker"}
# The message types that show a caption under the file.
_CAPTIONED_TYPES = frozenset({"image", "video", "document"})

# Error codes of rate limits and temporary outages, which a later attempt can get past.
# Outages: 1 unknown API error, 2 and 131016 service unavailable, 131000 something went
# wrong, 133004 server temporarily unavailable. Rate limits: 4 and 80007 API calls, 130429
# throughput, 131056 too many messages to one recipient.
TRANSIENT_ERROR_CODES = frozenset({"1", "2", "4", "80007", "130429", "131000", "131016", "131056", "133004"})

_PHONE_NUMBER_ID = re.compile(r"^[0-9]{1,30}$")
_ACCOUNT_ID = _PHONE_NUMBER_ID
# Placeholders of a template body: {{1}} in the positional format, {{order_id}} in the named one.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
# Pages of templates read per listing; at 100 templates a page, far more than a WABA may have.
_MAX_TEMPLATE_PAGES = 50
_API_VERSION = re.compile(r"^v[0-9]{1,3}\.[0-9]{1,3}$")
# Meta's media ids are digits. The pattern admits a little more, but nothing that changes the URL path.
_MEDIA_ID = re.compile(r"^[0-9A-Za-z_-]{1,100}$")

# Request errors that come from our own configuration, so a retry cannot fix them.
_CONFIGURATION_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)


@dataclass(frozen=True)
class MetaSettings:
    """The business phone number and credentials that one channel sends with."""

    phone_number_id: str
    access_token: str = field(repr=False)
    # Replaces https://graph.facebook.com for every request, for tests and sandboxes.
    api_base_url: str = DEFAULT_API_BASE_URL
    api_version: str = DEFAULT_API_VERSION
    # Connect and read timeout of each request, in seconds.
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class MetaTemplate:
    """An approved message template to send: its name, language code (``en_US``) and body parameters.

    ``body_parameters`` fill the body's ``{{1}}``, ``{{2}}``, ... placeholders in order.
    ``named_parameters`` fill the placeholders of a template in the named format
    (``{{order_id}}``) by name; a template uses one format or the other.
    """

    name: str
    language: str
    body_parameters: Sequence[str] = ()
    named_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageTemplate:
    """A message template of a WhatsApp Business Account, as the Graph API lists it.

    ``status`` is Meta's review status in upper case (``APPROVED``, ``PENDING``, ``REJECTED``,
    ``PAUSED``, ...). ``body`` is the text of the BODY component with its placeholders, and
    ``examples`` maps each placeholder to the sample value given when it was submitted.
    """

    id: str
    name: str
    language: str
    status: str
    category: str | None
    body: str
    placeholders: tuple[str, ...]
    examples: dict[str, str]


class MessageTemplatesError(ChannelError):
    """The message templates of a WhatsApp Business Account could not be read."""


def send_text(settings: MetaSettings, message: OutboundMessage) -> SendResult:
    """Send ``message.text`` to ``message.to`` as a WhatsApp text message.

    Returns Meta's message id (``wamid``) with the QUEUED state, because Meta reports
    ``sent`` and later states by webhook only.

    Raises TransientSendError on a timeout, a connection failure, HTTP 429 or 5xx, or a
    rate-limit code, and PermanentSendError on any other error (``code`` is Meta's error
    code), on invalid settings, and on a recipient that is not a phone number.
    """
    if message.attachments:
        raise PermanentSendError("attachments go by upload_media and send_media, not in a text message")
    if not message.text:
        raise PermanentSendError("cannot send an empty WhatsApp message")
    if len(message.text) > MAX_TEXT_LENGTH:
        raise PermanentSendError(
            f"the message has {len(message.text)} characters; WhatsApp allows at most {MAX_TEXT_LENGTH}"
        )
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": _recipient(message.to),
        "type": "text",
        "text": {"preview_url": False, "body": message.text},
    }
    return _send(settings, body)


def upload_media(settings: MetaSettings, data: bytes, content_type: str, filename: str) -> str:
    """Upload a file for a later send and return its media id.

    Raises TransientSendError and PermanentSendError as ``send_text`` does. An upload that
    is retried only leaves an unused copy at Meta, which Meta deletes after 30 days.
    """
    _check_settings(settings)
    url = f"{_api_root(settings)}/{settings.phone_number_id}/media"
    answer = _request_json(
        settings, "POST", url,
        form={"messaging_product": "whatsapp", "type": content_type},
        files={"file": (filename, data, content_type)},
    )
    media_id = answer.get("id")
    if not isinstance(media_id, str) or not _MEDIA_ID.match(media_id):
        raise TransientSendError("the WhatsApp Cloud API accepted the upload but returned no media id")
    return media_id


def send_media(
    settings: MetaSettings, to: Address, media_id: str, content_type: str, *, filename: str = "", caption: str = ""
) -> SendResult:
    """Send an uploaded file (see ``upload_media``) to ``to``, with ``caption`` under it.

    Images, videos and documents show the caption; audio and stickers take none, so a
    caption for them is refused. A document keeps ``filename``. Returns and raises as
    ``send_text`` does.
    """
    message_type = media_message_type(content_type)
    if caption and message_type not in _CAPTIONED_TYPES:
        raise PermanentSendError(f"WhatsApp shows no caption under {message_type} messages")
    media: dict[str, str] = {"id": media_id}
    if caption:
        media["caption"] = caption
    if message_type == "document" and filename:
        media["filename"] = filename
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": _recipient(to),
        "type": message_type,
        message_type: media,
    }
    return _send(settings, body)


def media_message_type(content_type: str) -> str:
    """Return the Cloud API message type for a file of ``content_type``."""
    content_type = content_type.split(";")[0].strip().lower()
    if content_type in _MEDIA_MESSAGE_TYPES:
        return _MEDIA_MESSAGE_TYPES[content_type]
    kind = content_type.split("/")[0]
    return kind if kind in ("audio", "video") else "document"


def send_template(settings: MetaSettings, to: Address, template: MetaTemplate) -> SendResult:
    """Send an approved message template to ``to``, with its body parameters as text.

    Templates are the only messages Meta delivers outside the 24 hours after the customer's
    last message. Returns and raises as ``send_text`` does; Meta rejects an unknown template
    or a wrong number of parameters with a permanent error. A parameter that WhatsApp rejects
    (``channels.whatsapp.template_values``) raises ``PermanentSendError`` before any request.
    """
    if not template.name.strip() or not template.language.strip():
        raise PermanentSendError("a WhatsApp template needs a name and a language code")
    if template.body_parameters and template.named_parameters:
        raise PermanentSendError("a WhatsApp template takes positional or named parameters, not both")
    check_values({str(number): value for number, value in enumerate(template.body_parameters, start=1)})
    check_values(template.named_parameters)
    content: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    parameters: list[dict[str, str]] = [{"type": "text", "text": str(value)} for value in template.body_parameters]
    parameters += [
        {"type": "text", "parameter_name": name, "text": str(value)}
        for name, value in template.named_parameters.items()
    ]
    if parameters:
        content["components"] = [{"type": "body", "parameters": parameters}]
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": _recipient(to),
        "type": "template",
        "template": content,
    }
    return _send(settings, body)


def send_message(settings: MetaSettings, message: OutboundMessage) -> SendResult:
    """Send ``message`` as the approved template it names, or else as a text message.

    A message with ``template_name`` goes out as that template in ``template_language``,
    with ``content_variables`` as its body parameters (see ``template_parameters``), and
    its ``text``, the rendered template, is not sent. Returns and raises as ``send_text`` does.
    """
    if not message.template_name:
        return send_text(settings, message)
    if message.attachments:
        raise PermanentSendError("a WhatsApp template cannot carry attachments")
    template = template_parameters(message.template_name, message.template_language or "", message.content_variables or {})
    return send_template(settings, message.to, template)


def template_parameters(name: str, language: str, variables: Mapping[str, str]) -> MetaTemplate:
    """Return the template to send with ``variables``, keyed by placeholder, as its parameters.

    Keys that are all digits (``"1"``, ``"2"``) are positional parameters and go in numeric
    order. Any other key makes the variables named parameters.
    """
    if all(key.isdigit() for key in variables):
        ordered = [variables[key] for key in sorted(variables, key=int)]
        return MetaTemplate(name, language, body_parameters=ordered)
    return MetaTemplate(name, language, named_parameters=dict(variables))


def list_message_templates(settings: MetaSettings, waba_id: str) -> list[MessageTemplate]:
    """Return every message template of the WhatsApp Business Account ``waba_id``, any status.

    Reads every page of the account's ``message_templates`` edge. Raises
    ``MessageTemplatesError`` for an invalid account id or settings, an error of the Graph
    API, a timeout or a connection failure, and a response without a ``data`` list.
    """
    if not _ACCOUNT_ID.match(waba_id or ""):
        raise MessageTemplatesError(
            f"invalid WhatsApp Business Account id {waba_id!r} in the channel settings: expected "
            "the digits shown in Meta's WhatsApp API setup"
        )
    url = f"{_api_root(settings)}/{waba_id}/message_templates"
    query = "fields=id,name,language,status,category,parameter_format,components&limit=100"
    templates: list[MessageTemplate] = []
    after: str | None = None
    try:
        _check_settings(settings)
        for _ in range(_MAX_TEMPLATE_PAGES):
            page_url = f"{url}?{query}" + (f"&after={quote(after, safe='')}" if after else "")
            page = _request_json(settings, "GET", page_url)
            data = page.get("data")
            if not isinstance(data, list):
                raise MessageTemplatesError("the Graph API listed no data for the message templates")
            templates.extend(template for template in map(_message_template, data) if template is not None)
            after = _next_cursor(page)
            if after is None:
                return templates
    except SendError as error:
        raise MessageTemplatesError(f"reading the message templates failed: {error}") from error
    logger.warning("WABA %s has more than %s pages of templates; the rest are left out", waba_id, _MAX_TEMPLATE_PAGES)
    return templates


def _message_template(item: Any) -> MessageTemplate | None:
    """Return one listed template, or None for an item without an id, a name or a language."""
    if not isinstance(item, dict):
        return None
    template_id, name, language = (str(item.get(key) or "").strip() for key in ("id", "name", "language"))
    if not (template_id and name and language):
        return None
    body, examples = "", {}
    for component in item.get("components") or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == "BODY":
            body = str(component.get("text") or "")
            examples = _body_examples(component.get("example"), body)
            break
    placeholders = tuple(dict.fromkeys(match.group(1) for match in _PLACEHOLDER.finditer(body)))
    return MessageTemplate(
        id=template_id,
        name=name,
        language=language,
        status=str(item.get("status") or "").upper(),
        category=str(item["category"]) if item.get("category") else None,
        body=body,
        placeholders=placeholders,
        examples=examples,
    )


def _body_examples(example: Any, body: str) -> dict[str, str]:
    """Map each placeholder of ``body`` to its sample value, for both parameter formats."""
    if not isinstance(example, dict):
        return {}
    named = example.get("body_text_named_params")
    if isinstance(named, list):
        return {
            str(item["param_name"]): str(item.get("example") or "")
            for item in named
            if isinstance(item, dict) and item.get("param_name")
        }
    # Positional samples come as one list per example set: [["Grace", "A-17"]].
    rows = example.get("body_text")
    if isinstance(rows, list) and rows and isinstance(rows[0], list):
        return {str(index): str(value) for index, value in enumerate(rows[0], start=1)}
    return {}


def _next_cursor(page: dict[str, Any]) -> str | None:
    # Without paging.next this page is the last, even when the cursors are set.
    paging = page.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    return str(after) if after else None


def fetch_media(
    settings: MetaSettings,
    media_id: str,
    *,
    max_bytes: int = MAX_MEDIA_BYTES,
    expected_type: str = "",
    filename_stem: str | None = None,
) -> DownloadedMedia:
    """Download a customer's media file by the id an inbound message carried.

    First requests the file's short-lived URL from the Graph API, then downloads it with the
    same access token. Returns the file named ``filename_stem`` (default ``whatsapp-<id>``)
    plus the extension of its type. ``expected_type`` is the type the webhook gave, used
    when the Graph API gives none.

    Raises MediaError, transient for timeouts, connection failures, HTTP 429 and 5xx and
    Meta's outage codes, and permanent for an invalid id, a type that is not accepted, a
    file over ``max_bytes`` and Meta's other errors.
    """
    if not _MEDIA_ID.match(media_id):
        raise MediaError(f"invalid media id {media_id[:100]!r}", transient=False)
    try:
        _check_settings(settings)
        info = _request_json(settings, "GET", f"{_api_root(settings)}/{media_id}")
    except SendError as error:
        raise MediaError(f"looking up media {media_id} failed: {error}", transient=error.transient) from error
    url = info.get("url")
    if not isinstance(url, str) or not url:
        raise MediaError(f"the Cloud API returned no download URL for media {media_id}", transient=False)

    # Voice notes come as "audio/ogg; codecs=opus": the parameters do not change the type.
    content_type = str(info.get("mime_type") or expected_type).split(";")[0].strip().lower()
    if content_type not in ALLOWED_TYPES:
        raise MediaError(f"Files of type {content_type or 'unknown'} are not accepted.", transient=False)
    declared_size = str(info.get("file_size") or "")
    if declared_size.isdigit() and int(declared_size) > max_bytes:
        raise MediaError(_too_large(int(declared_size), max_bytes), transient=False)

    data = _download(settings, url, max_bytes, media_id)
    expected = str(info.get("sha256") or "").lower()
    # Compared only when Meta sends a hex digest, the form this endpoint uses.
    if re.fullmatch(r"[0-9a-f]{64}", expected) and hashlib.sha256(data).hexdigest() != expected:
        raise MediaError(f"media {media_id} does not match the SHA-256 the Cloud API reported", transient=True)
    stem = filename_stem or f"whatsapp-{media_id}"
    extension = mimetypes.guess_extension(content_type) or ""
    return DownloadedMedia(data=data, content_type=content_type, filename=stem + extension)


# Requests


def _send(settings: MetaSettings, body: dict[str, Any]) -> SendResult:
    _check_settings(settings)
    url = f"{_api_root(settings)}/{settings.phone_number_id}/messages"
    answer = _request_json(settings, "POST", url, json_body=body)
    messages = answer.get("messages")
    message_id = None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        message_id = messages[0].get("id")
    if not isinstance(message_id, str) or not message_id:
        # Retrying could send a second copy, so this is not marked transient.
        raise PermanentSendError(
            "the WhatsApp Cloud API accepted the request but returned no message id. "
            "The message may have been sent"
        )
    logger.info("WhatsApp Cloud API accepted message %s", message_id)
    return SendResult(provider_message_id=message_id, status=DeliveryState.QUEUED)


def _request_json(
    settings: MetaSettings,
    method: str,
    url: str,
    *,
    json_body: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    files: dict[str, tuple[str, bytes, str]] | None = None,
) -> dict[str, Any]:
    """Make one Graph API request and return its JSON object. Raises SendError subclasses."""
    headers = {"Authorization": f"Bearer {settings.access_token}"}
    try:
        response = requests.request(
            method, url, json=json_body, data=form, files=files, headers=headers,
            timeout=settings.timeout_seconds,
        )
    except _CONFIGURATION_ERRORS as error:
        raise PermanentSendError(f"invalid Cloud API URL {settings.api_base_url!r}: {error}") from error
    except requests.RequestException as error:
        # NOTE: after a read timeout Meta may have accepted the message anyway, so a retry
        # can deliver it twice. The Cloud API offers no idempotency key.
        logger.warning("WhatsApp Cloud API request failed: %s: %s", type(error).__name__, error)
        raise TransientSendError(unreachable("The WhatsApp Cloud API", error)) from error

    if response.status_code >= 400:
        raise _error_from_response(response)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        # After a send, a retry could deliver a second copy, so this is not marked transient.
        raise PermanentSendError(
            f"the WhatsApp Cloud API returned HTTP {response.status_code} without a JSON "
            "object, so the outcome is unknown (a message may have been sent)"
        )
    return answer


def _download(settings: MetaSettings, url: str, max_bytes: int, media_id: str) -> bytes:
    headers = {"Authorization": f"Bearer {settings.access_token}"}
    try:
        with requests.get(url, headers=headers, timeout=settings.timeout_seconds, stream=True) as response:
            if response.status_code >= 400:
                # The next attempt looks the file up again and gets a fresh URL.
                raise MediaError(
                    f"downloading media {media_id} failed with HTTP {response.status_code}", transient=True
                )
            return read_body(response, max_bytes)
    except requests.RequestException as error:
        raise MediaError(
            f"downloading media {media_id} failed: {type(error).__name__}: {error}", transient=True
        ) from error


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    return (
        f"This file is {'more than ' if at_least else ''}{format_size(size)}, larger than this "
        f"channel's limit of {format_size(limit)} for attachments, so it was not stored."
    )


def _error_from_response(response: requests.Response) -> SendError:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        error = {}
    code = str(error["code"]) if error.get("code") is not None else None
    message = str(error.get("message") or response.reason or "no message")
    data = error.get("error_data")
    details = str(data.get("details") or "") if isinstance(data, dict) else ""
    reason = f"{message}: {details}" if details and details not in message else message

    text = f"WhatsApp Cloud API returned HTTP {response.status_code}"
    text += f" (error {code}): {reason}" if code else f": {reason}"
    if response.status_code == 429 or response.status_code >= 500 or code in TRANSIENT_ERROR_CODES:
        return TransientSendError(text, code=code)
    return PermanentSendError(text, code=code)


# Checks


def _check_settings(settings: MetaSettings) -> None:
    if not settings.access_token:
        raise PermanentSendError("missing Meta access token in the channel settings")
    if not _PHONE_NUMBER_ID.match(settings.phone_number_id or ""):
        raise PermanentSendError(
            f"invalid phone number id {settings.phone_number_id!r} in the channel settings: "
            "expected the digits shown in Meta's WhatsApp API setup"
        )
    if not _API_VERSION.match(settings.api_version or ""):
        raise PermanentSendError(
            f"invalid Graph API version {settings.api_version!r}: expected a version such as v23.0"
        )
    if settings.timeout_seconds <= 0:
        raise PermanentSendError(
            f"invalid Cloud API timeout {settings.timeout_seconds!r}: expected a positive number of seconds"
        )


def _api_root(settings: MetaSettings) -> str:
    return f"{settings.api_base_url.rstrip('/')}/{settings.api_version}"


def _recipient(address: Address) -> str:
    if address.kind is not AddressKind.PHONE:
        raise PermanentSendError(
            f"cannot send WhatsApp to a {address.kind.value} address: a phone number is required"
        )
    try:
        return normalize_phone(address.value)
    except ParseError as error:
        raise PermanentSendError(f"invalid WhatsApp recipient: {error}") from error
