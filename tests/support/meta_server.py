"""A WhatsApp Cloud API-compatible HTTP server on loopback, and builders of Meta's webhooks.

The server implements the Graph API calls Switchboard makes: sending a message
(``POST /{version}/{phone_number_id}/messages``), uploading a file to send
(``POST /{version}/{phone_number_id}/media``, multipart), looking up a media file
(``GET /{version}/{media_id}``) and downloading it, and listing the message templates of a
WhatsApp Business Account (``GET /{version}/{waba_id}/message_templates``, in pages with
``paging.cursors.after``). Requests need the access token as a
bearer token, as at Meta. Accepted sends are recorded, and the response contains a new
``wamid``. Errors have the Graph API's shape (``{"error": {"message", "type", "code",
"error_data", "fbtrace_id"}}``). Tests point Switchboard here with a channel's
``api_base_url`` or ``SWITCHBOARD_META_API_BASE_URL``.

Meta's side of the webhooks is here too: functions that build webhook bodies in the Cloud
API's shape, ``signature`` to sign them with an app secret, and ``MetaTestServer.deliver``
to post one, signed, to a running Switchboard.

Usage::

    with MetaTestServer() as server:
        settings = MetaSettings(server.phone_number_id, server.access_token,
                                api_base_url=server.base_url)
        server.fail_next(400, 131047, "Re-engagement message")
        ...
        [sent] = server.wait_for_messages(1)
        server.deliver(url, webhook_body(entry(change(server.phone_number_id,
                                                      statuses=[status(sent["id"], "delivered", "15551230000")]))))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)

DEFAULT_ACCESS_TOKEN = "EAAtest-access-token-0123456789"
DEFAULT_APP_SECRET = "test-app-secret-0123456789abcdef"
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_DISPLAY_NUMBER = "15550783881"
DEFAULT_ACCOUNT_ID = "102290129340398"

_VERSION = r"v[0-9]+\.[0-9]+"
_SEND_PATH = re.compile(rf"^/{_VERSION}/([0-9]+)/messages$")
_UPLOAD_PATH = re.compile(rf"^/{_VERSION}/([0-9]+)/media$")
_MEDIA_MESSAGE_TYPES = ("image", "audio", "video", "document", "sticker")
_TEMPLATES_PATH = re.compile(rf"^/{_VERSION}/([0-9]+)/message_templates$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_INFO_PATH = re.compile(rf"^/{_VERSION}/([0-9A-Za-z_-]+)$")
_MEDIA_FILE_PATH = re.compile(r"^/media-files/([0-9A-Za-z_-]+)$")


@dataclass(frozen=True)
class Template:
    """A message template of the test server's business account, as Meta stores it."""

    id: str
    name: str
    language: str
    body: str
    status: str = "APPROVED"
    category: str = "UTILITY"
    examples: tuple[str, ...] = ()

    @property
    def placeholders(self) -> list[str]:
        return list(dict.fromkeys(match.group(1) for match in _PLACEHOLDER.finditer(self.body)))

    @property
    def named(self) -> bool:
        return any(not name.isdigit() for name in self.placeholders)

    def listed(self) -> dict[str, Any]:
        """Return the template as the message_templates edge lists it."""
        body: dict[str, Any] = {"type": "BODY", "text": self.body}
        if self.examples and self.named:
            body["example"] = {"body_text_named_params": [
                {"param_name": name, "example": value} for name, value in zip(self.placeholders, self.examples)
            ]}
        elif self.examples:
            body["example"] = {"body_text": [list(self.examples)]}
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "parameter_format": "NAMED" if self.named else "POSITIONAL",
            "components": [{"type": "HEADER", "format": "TEXT", "text": "Order update"}, body,
                           {"type": "FOOTER", "text": "Reply STOP to opt out"}],
        }


@dataclass(frozen=True)
class Upload:
    """A file uploaded to ``/{phone_number_id}/media``, and the media id it was given."""

    media_id: str
    phone_number_id: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class RecordedRequest:
    """One authenticated send request: the phone number id in its path and its JSON body."""

    phone_number_id: str
    body: Any


class MetaTestServer:
    """A threaded Cloud API server on 127.0.0.1 and a free port.

    ``requests`` lists every authenticated send request in arrival order, including those
    that got an injected or validation error. ``messages`` lists the accepted sends, each
    with the ``id`` (wamid) the server returned.
    """

    def __init__(
        self,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        app_secret: str = DEFAULT_APP_SECRET,
        phone_number_ids: Iterable[str] = (DEFAULT_PHONE_NUMBER_ID,),
        account_id: str = DEFAULT_ACCOUNT_ID,
    ):
        self.access_token = access_token
        self.account_id = account_id
        self.app_secret = app_secret
        self.phone_number_ids = set(phone_number_ids)
        # Seconds each send waits before it responds.
        self.response_delay = 0.0
        # How many of the next media lookups fail with a temporary outage (HTTP 503, code 2).
        self.fail_media_lookups = 0
        # How many of the next template listings fail with a temporary outage (HTTP 503, code 2).
        self.fail_template_listings = 0
        # Templates per page of a listing when the request names no smaller limit.
        self.template_page_size = 100

        self._condition = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._messages: list[dict[str, Any]] = []
        self._failures: deque[tuple[int, int, str, str | None]] = deque()
        self._templates: dict[tuple[str, str], Template] = {}
        self._template_listings: list[str] = []
        self._media: dict[str, tuple[bytes, str]] = {}
        self._media_byte_intervals: dict[str, float] = {}
        self._media_requests: list[str] = []
        # Set when the server stops, which ends downloads sent a byte at a time.
        self._stopping = threading.Event()
        self._uploads: list[Upload] = []
        # How many of the next uploads fail with a temporary outage (HTTP 503, code 2).
        self.fail_uploads = 0

        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    # Lifecycle

    @property
    def base_url(self) -> str:
        """The server's URL, such as ``http://127.0.0.1:40123``, which stays set after stop()."""
        if self._base_url is None:
            raise RuntimeError("MetaTestServer is not started: call start() first")
        return self._base_url

    @property
    def phone_number_id(self) -> str:
        """The first phone number id the server accepts, for tests that use one."""
        return sorted(self.phone_number_ids)[0]

    def start(self) -> MetaTestServer:
        if self._server is not None:
            raise RuntimeError("MetaTestServer is already running")
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi_app, threaded=True, request_handler=_QuietRequestHandler
        )
        self._base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="meta-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> MetaTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Test controls

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._condition:
            return list(self._requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._condition:
            return list(self._messages)

    @property
    def media_requests(self) -> list[str]:
        """The paths of every authenticated media lookup and download, oldest first."""
        with self._condition:
            return list(self._media_requests)

    @property
    def uploads(self) -> list[Upload]:
        """The files uploaded for sending, oldest first."""
        with self._condition:
            return list(self._uploads)

    def fail_next(self, status: int, code: int, message: str, details: str | None = None, times: int = 1) -> None:
        """Make the next ``times`` authenticated sends fail with a Graph API error."""
        with self._condition:
            self._failures.extend([(status, code, message, details)] * times)

    @property
    def template_listings(self) -> list[str]:
        """The query string of every authenticated template listing request, oldest first."""
        with self._condition:
            return list(self._template_listings)

    def add_template(
        self,
        name: str,
        language: str,
        parameter_count: int = 0,
        *,
        body: str | None = None,
        status: str = "APPROVED",
        category: str = "UTILITY",
        examples: Iterable[str] = (),
    ) -> Template:
        """Add a template to the business account and return it.

        Without ``body`` the body has ``parameter_count`` positional placeholders. Sends of
        an unknown template, or of one whose status is not APPROVED, fail with code 132001,
        and sends with the wrong parameters with 132000, as at Meta.
        """
        if body is None:
            body = "Update: " + ", ".join(f"{{{{{index}}}}}" for index in range(1, parameter_count + 1))
        template = Template(
            id=str(secrets.randbelow(10**15) + 10**15), name=name, language=language, body=body,
            status=status, category=category, examples=tuple(examples),
        )
        with self._condition:
            self._templates[(name, language)] = template
        return template

    def add_media(self, data: bytes, content_type: str, *, byte_interval: float = 0.0) -> str:
        """Host a customer's media file and return its media id.

        With ``byte_interval``, the download sends the file one byte per that many seconds.
        """
        media_id = str(secrets.randbelow(10**15) + 10**15)
        self._media[media_id] = (data, content_type)
        if byte_interval:
            self._media_byte_intervals[media_id] = byte_interval
        return media_id

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` sends are accepted and return them. Raises TimeoutError."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"expected {count} accepted sends within {timeout} s, got {len(self._messages)}")
            return list(self._messages)

    def channel_settings(self, **extra: Any) -> dict[str, Any]:
        """Return the settings of a Switchboard channel on this server's first number and app."""
        return {
            "provider": "meta",
            "phone_number_id": self.phone_number_id,
            "verify_token": "verify-token-for-tests",
            "app_secret": self.app_secret,
            "access_token": self.access_token,
            **extra,
        }

    def deliver(self, url: str, document: dict[str, Any], *, app_secret: str | None = None) -> requests.Response:
        """Post a webhook body to ``url`` as Meta does, signed with the app secret."""
        body = encode(document)
        header = signature(app_secret or self.app_secret, body)
        return requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": header},
            timeout=15,
        )

    # Request handling

    def _wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        return self._dispatch(request)(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            return error_response(401, 190, "Invalid OAuth access token - Cannot parse access token")
        send = _SEND_PATH.match(request.path)
        if send and request.method == "POST":
            return self._send(request, send.group(1))
        upload = _UPLOAD_PATH.match(request.path)
        if upload and request.method == "POST":
            return self._upload(request, upload.group(1))
        templates = _TEMPLATES_PATH.match(request.path)
        if templates and request.method == "GET":
            return self._list_templates(request, templates.group(1))
        if request.method == "GET":
            with self._condition:
                self._media_requests.append(request.path)
        media_file = _MEDIA_FILE_PATH.match(request.path)
        if media_file and request.method == "GET":
            return self._media_file(media_file.group(1))
        media_info = _MEDIA_INFO_PATH.match(request.path)
        if media_info and request.method == "GET":
            return self._media_info(media_info.group(1))
        return error_response(400, 100, f"Unknown path components: {request.path}")

    def _send(self, request: Request, phone_number_id: str) -> Response:
        try:
            body = json.loads(request.get_data())
        except ValueError:
            body = None
        with self._condition:
            self._requests.append(RecordedRequest(phone_number_id, body))
            failure = self._failures.popleft() if self._failures else None
            self._condition.notify_all()
        if failure is not None:
            return error_response(*failure)

        problem = self._check_send(phone_number_id, body)
        if problem is not None:
            return problem
        message_id = new_wamid()
        with self._condition:
            self._messages.append({"id": message_id, "phone_number_id": phone_number_id, **body})
            self._condition.notify_all()
        if self.response_delay:
            time.sleep(self.response_delay)
        answer: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"].lstrip("+")}],
            "messages": [{"id": message_id}],
        }
        if body["type"] == "template":
            answer["messages"][0]["message_status"] = "accepted"
        return _json_response(200, answer)

    def _check_send(self, phone_number_id: str, body: Any) -> Response | None:
        """Return the Graph API's error for an invalid send, or None."""
        if phone_number_id not in self.phone_number_ids:
            return error_response(
                400, 100, f"Unsupported post request. Object with ID '{phone_number_id}' does not exist"
            )
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return error_response(400, 100, "Invalid parameter", "messaging_product must be whatsapp")
        if not body.get("to"):
            return error_response(400, 100, "Invalid parameter", "The parameter to is required.")
        if body.get("type") == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not text.get("body"):
                return error_response(400, 100, "Invalid parameter", "The parameter text['body'] is required.")
            return None
        if body.get("type") == "template":
            return self._check_template(body.get("template"))
        if body.get("type") in _MEDIA_MESSAGE_TYPES:
            return self._check_media_send(body)
        return error_response(400, 100, "Invalid parameter", f"Unsupported message type {body.get('type')!r}.")

    def _check_media_send(self, body: dict[str, Any]) -> Response | None:
        message_type = body["type"]
        media = body.get(message_type)
        if not isinstance(media, dict) or not (media.get("id") or media.get("link")):
            return error_response(400, 100, "Invalid parameter", f"The parameter {message_type}['id'] is required.")
        if media.get("caption") and message_type in ("audio", "sticker"):
            return error_response(400, 100, "Invalid parameter", f"{message_type} messages take no caption")
        if media.get("id"):
            with self._condition:
                uploaded = any(upload.media_id == media["id"] for upload in self._uploads)
            if not uploaded:
                return error_response(400, 131053, "Media upload error", f"media id {media['id']} is unknown")
        return None

    def _upload(self, request: Request, phone_number_id: str) -> Response:
        with self._condition:
            outage = self.fail_uploads > 0
            self.fail_uploads -= 1 if outage else 0
        if outage:
            return error_response(503, 2, "Service temporarily unavailable")
        if phone_number_id not in self.phone_number_ids:
            return error_response(
                400, 100, f"Unsupported post request. Object with ID '{phone_number_id}' does not exist"
            )
        file = request.files.get("file")
        if request.form.get("messaging_product") != "whatsapp":
            return error_response(400, 100, "Invalid parameter", "messaging_product must be whatsapp")
        if file is None or not request.form.get("type"):
            return error_response(400, 100, "Invalid parameter", "The parameters file and type are required.")
        upload = Upload(
            media_id=str(secrets.randbelow(10**15) + 10**15),
            phone_number_id=phone_number_id,
            filename=file.filename or "",
            content_type=request.form["type"],
            data=file.read(),
        )
        with self._condition:
            self._uploads.append(upload)
            self._condition.notify_all()
        return _json_response(200, {"id": upload.media_id})

    def _check_template(self, template: Any) -> Response | None:
        if not isinstance(template, dict) or not template.get("name"):
            return error_response(400, 100, "Invalid parameter", "The parameter template['name'] is required.")
        language = (template.get("language") or {}).get("code")
        with self._condition:
            known = self._templates.get((template["name"], language))
        if known is None or known.status != "APPROVED":
            return error_response(
                404, 132001, "Template name does not exist in the translation",
                f"template name ({template['name']}) does not exist in {language}",
            )
        parameters = [
            parameter
            for component in template.get("components") or []
            if component.get("type") == "body"
            for parameter in component.get("parameters") or []
        ]
        expected = known.placeholders
        if len(parameters) != len(expected):
            return error_response(
                400, 132000, "Number of parameters does not match the expected number of params",
                f"body: number of localizable_params ({len(parameters)}) does not match the expected "
                f"number of params ({len(expected)})",
            )
        names = [parameter.get("parameter_name") for parameter in parameters]
        if known.named and sorted(map(str, names)) != sorted(expected):
            return error_response(
                400, 132000, "Number of parameters does not match the expected number of params",
                f"body: named parameters {names} do not match {expected}",
            )
        if not known.named and any(names):
            return error_response(400, 100, "Invalid parameter", "parameter_name is only for named templates")
        return None

    def _list_templates(self, request: Request, account_id: str) -> Response:
        with self._condition:
            self._template_listings.append(request.query_string.decode())
            outage = self.fail_template_listings > 0
            self.fail_template_listings -= 1 if outage else 0
            templates = list(self._templates.values())
        if outage:
            return error_response(503, 2, "Service temporarily unavailable")
        if account_id != self.account_id:
            return error_response(
                400, 100, f"Unsupported get request. Object with ID '{account_id}' does not exist"
            )
        limit = min(int(request.args.get("limit") or 25), self.template_page_size)
        start = int(request.args.get("after") or 0)
        page = templates[start : start + limit]
        answer: dict[str, Any] = {"data": [template.listed() for template in page]}
        end = start + len(page)
        answer["paging"] = {"cursors": {"before": str(start), "after": str(end)}}
        if end < len(templates):
            # Meta's cursors are opaque; an offset serves the same purpose here.
            answer["paging"]["next"] = f"{self.base_url}{request.path}?limit={limit}&after={end}"
        return _json_response(200, answer)

    def _media_info(self, media_id: str) -> Response:
        with self._condition:
            outage = self.fail_media_lookups > 0
            self.fail_media_lookups -= 1 if outage else 0
        if outage:
            return error_response(503, 2, "Service temporarily unavailable")
        if media_id not in self._media:
            return error_response(400, 100, f"Unsupported get request. Object with ID '{media_id}' does not exist")
        data, content_type = self._media[media_id]
        return _json_response(
            200,
            {
                "messaging_product": "whatsapp",
                "url": f"{self.base_url}/media-files/{media_id}",
                "mime_type": content_type,
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_size": str(len(data)),
                "id": media_id,
            },
        )

    def _media_file(self, media_id: str) -> Response:
        if media_id not in self._media:
            return Response(status=404)
        data, content_type = self._media[media_id]
        interval = self._media_byte_intervals.get(media_id)
        if not interval:
            return Response(data, mimetype=content_type)
        response = Response(_bytewise(data, interval, self._stopping), mimetype=content_type, direct_passthrough=True)
        response.headers["Content-Length"] = str(len(data))
        return response


def _bytewise(data: bytes, interval: float, stopping: threading.Event) -> Iterator[bytes]:
    """Yield ``data`` one byte per ``interval`` seconds, until the server stops."""
    for index in range(len(data)):
        if stopping.wait(interval):
            return
        yield data[index : index + 1]


# Graph API answers


def error_response(status: int, code: int, message: str, details: str | None = None) -> Response:
    """Return an error in the Graph API's shape."""
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "A" + secrets.token_urlsafe(16),
    }
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return _json_response(status, {"error": error})


def _json_response(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


class _QuietRequestHandler(WSGIRequestHandler):
    """Logs werkzeug's per-request lines at debug level."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.log(logging.ERROR if type == "error" else logging.DEBUG, message, *args)


# Webhooks, as Meta sends them


def new_wamid() -> str:
    """Return a fresh message id in the form Meta uses (``wamid.`` and base64)."""
    return "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()


def signature(app_secret: str, body: bytes) -> str:
    """Return the ``X-Hub-Signature-256`` value of ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def webhook_body(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def entry(*changes: dict[str, Any], account_id: str = DEFAULT_ACCOUNT_ID) -> dict[str, Any]:
    return {"id": account_id, "changes": list(changes)}


def change(
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
    *,
    messages: Iterable[dict[str, Any]] = (),
    statuses: Iterable[dict[str, Any]] = (),
    contacts: Iterable[dict[str, Any]] = (),
    display_number: str = DEFAULT_DISPLAY_NUMBER,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_number, "phone_number_id": phone_number_id},
    }
    if contacts:
        value["contacts"] = list(contacts)
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {"field": "messages", "value": value}


def contact(wa_id: str, name: str) -> dict[str, Any]:
    return {"profile": {"name": name}, "wa_id": wa_id}


def message(wa_id: str, message_type: str, content: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    """Return a customer's message of any type, such as ``message("1555...", "image", {...})``."""
    return {
        "from": wa_id,
        "id": message_id or new_wamid(),
        "timestamp": str(int(time.time())),
        "type": message_type,
        message_type: content,
    }


def text_message(wa_id: str, text: str, message_id: str | None = None) -> dict[str, Any]:
    return message(wa_id, "text", {"body": text}, message_id)


def status(
    message_id: str, state: str, recipient: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return a status of a message we sent; ``state`` is sent, delivered, read or failed."""
    report: dict[str, Any] = {
        "id": message_id,
        "status": state,
        "timestamp": str(int(time.time())),
        "recipient_id": recipient,
    }
    if errors:
        report["errors"] = errors
    return report


def status_error(code: int, title: str, details: str) -> dict[str, Any]:
    return {"code": code, "title": title, "message": title, "error_data": {"details": details}}
