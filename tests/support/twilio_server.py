"""A Twilio-compatible HTTP server on loopback, for tests of code that uses the twilio SDK.

It implements the parts of the REST API that Switchboard calls: creating a message (version
2010-04-01), with a body or with a Content API template, listing messages filtered by To and
From (newest first, paged with Page and PageSize), and listing templates with their
WhatsApp approval from the Content API (v1: ``/v1/Content``, ``/v1/ContentAndApprovals`` and
``/v1/Content/<sid>/ApprovalRequests``). Requests need HTTP basic auth with the configured
account SID and auth token, as at Twilio. Errors have Twilio's JSON shape (code, message, more_info,
status), so the SDK raises the same TwilioRestException it raises against Twilio.
Tests point the SDK here through ``TwilioSettings.api_base_url`` or
``SWITCHBOARD_TWILIO_API_BASE_URL``, and can make the next requests fail on purpose (a
429 with or without Retry-After too), make every answer slow, hold answers back after
the message was created, or hold requests back before their message exists.
``fault_next`` plays network faults on the next message creates, to anyone or to one
recipient: the message is created and the response hangs
(``HANG_AFTER_CREATE``), the message is created and the connection closed without an answer
(``DROP_AFTER_CREATE``), or the connection is closed once the request was read, before any
message exists (``DROP_BEFORE_CREATE``).
``fail_next_list`` makes the next reads of the message list fail, and ``add_message`` stores a
message that another tool sent earlier. Like Twilio, the server fetches each ``MediaUrl`` of a created
message (``media_fetches``), and ``post_status`` posts a signed status callback to the
``StatusCallback`` URL of a created message.

Usage::

    with TwilioTestServer() as server:
        settings = TwilioSettings(server.account_sid, server.auth_token, "+14155238886",
                                  api_base_url=server.base_url)
        server.fail_next(500, 20500, "Internal Server Error")
        server.add_template("Hi {{1}}, your order {{2}} shipped.", name="order_shipped")
        ...
        [request] = server.wait_for(1)
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import requests
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
DEFAULT_AUTH_TOKEN = "test-auth-token-0123456789abcdef"

# The form fields of one request. A field sent several times (MediaUrl) keeps every value.
FormFields = dict[str, str | list[str]]

# Network faults that fault_next() plays on a message create.
HANG_AFTER_CREATE = "hang-after-create"
DROP_AFTER_CREATE = "drop-after-create"
DROP_BEFORE_CREATE = "drop-before-create"
FAULTS = (HANG_AFTER_CREATE, DROP_AFTER_CREATE, DROP_BEFORE_CREATE)


@dataclass(frozen=True)
class MediaFetch:
    """One download of a MediaUrl: status 0 when the connection failed."""

    url: str
    status: int
    content_type: str | None
    body: bytes
    headers: dict[str, str]


class TwilioTestServer:
    """A threaded Twilio API server on 127.0.0.1 and a free port.

    ``requests`` lists the form fields of every authenticated message request in
    arrival order, including those that got an injected or validation error.
    ``messages`` lists the message resources the server created. ``content_reads`` counts
    the requests to the Content API, and ``list_reads`` the reads of the message list.
    """

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        initial_status: str = "queued",
    ):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.initial_status = initial_status

        self._condition = threading.Condition()
        self._requests: list[FormFields] = []
        self._messages: list[dict[str, Any]] = []
        self._failures: deque[tuple[int, int, str, float | None, str | None]] = deque()
        # Each fault with the To it waits for, or None for the next create to anyone.
        self._faults: deque[tuple[str, str | None]] = deque()
        self._list_failures: deque[tuple[int, int, str]] = deque()
        # The exact creation time of each message, by sid: date_created has whole seconds.
        self._created_at: dict[str, datetime] = {}
        self.list_reads = 0
        # The maximum seconds a HANG_AFTER_CREATE response waits. stop() ends the wait early.
        self.hang_seconds = 30.0
        self._stopping = threading.Event()
        self._media_fetches: list[MediaFetch] = []
        # Seconds each message request waits, after the message is created, before it answers.
        self.response_delay = 0.0
        # Called after each accepted status callback, such as a live server's wait for its
        # webhook worker, so that a test reads the applied status.
        self.after_status_callback: Callable[[], None] | None = None
        # Cleared by hold_responses(): created messages wait for release_responses().
        self._responses_open = threading.Event()
        self._responses_open.set()
        # Cleared by hold_creates(): message requests wait for release_creates() before the
        # message exists.
        self._creates_open = threading.Event()
        self._creates_open.set()

        self._templates: list[dict[str, Any]] = []
        self.content_reads = 0
        # Templates per page of the Content API lists; tests lower it to read several pages.
        self.content_page_size = 50

        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

        # One rule and one handler per API resource. Media downloads for inbound
        # MediaUrl links belong here as a further rule when tests need them.
        self._url_map = Map(
            [
                Rule(
                    f"/{API_VERSION}/Accounts/<account_sid>/Messages.json",
                    methods=["POST"],
                    endpoint="create_message",
                ),
                Rule(
                    f"/{API_VERSION}/Accounts/<account_sid>/Messages.json",
                    methods=["GET"],
                    endpoint="list_messages",
                ),
                Rule("/v1/Content", methods=["GET"], endpoint="list_content"),
                Rule("/v1/ContentAndApprovals", methods=["GET"], endpoint="list_content_and_approvals"),
                Rule("/v1/Content/<sid>/ApprovalRequests", methods=["GET"], endpoint="fetch_approval"),
            ]
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "create_message": self._create_message,
            "list_messages": self._list_messages,
            "list_content": self._list_content,
            "list_content_and_approvals": self._list_content_and_approvals,
            "fetch_approval": self._fetch_approval,
        }

    # Lifecycle

    @property
    def base_url(self) -> str:
        """The server's URL, such as ``http://127.0.0.1:40123``, which stays set after stop()."""
        if self._base_url is None:
            raise RuntimeError("TwilioTestServer is not started: call start() first")
        return self._base_url

    def start(self) -> TwilioTestServer:
        """Start serving on 127.0.0.1 and a free port in a background thread, and return self."""
        if self._server is not None:
            raise RuntimeError("TwilioTestServer is already running")
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi_app, threaded=True, request_handler=_LoggingRequestHandler
        )
        self._base_url = f"http://127.0.0.1:{self._server.server_port}"
        # A short poll interval keeps stop() fast: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="twilio-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket, so new connections are refused."""
        if self._server is None:
            return
        self._responses_open.set()  # held answers would keep server_close() waiting
        self._creates_open.set()
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> TwilioTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Test controls

    @property
    def requests(self) -> list[FormFields]:
        """A copy of the recorded request forms, oldest first."""
        with self._condition:
            return list(self._requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the created message resources, oldest first."""
        with self._condition:
            return list(self._messages)

    @property
    def media_fetches(self) -> list[MediaFetch]:
        """A copy of the fetches of MediaUrl links, oldest first."""
        with self._condition:
            return list(self._media_fetches)

    def fail_next(
        self, status: int, code: int, message: str, times: int = 1, *,
        retry_after: float | None = None, to: str | None = None,
    ) -> None:
        """Make the next ``times`` authenticated message requests fail with a Twilio error.

        ``status`` is the HTTP status (500, 429, 400, ...) and ``code`` Twilio's error
        code, such as 21211 for an invalid To number. ``retry_after`` adds a Retry-After
        header in seconds. With ``to``, only requests to that recipient fail, as in
        ``fault_next``.
        """
        with self._condition:
            self._failures.extend([(status, code, message, retry_after, to)] * times)

    def fault_next(self, fault: str, times: int = 1, *, to: str | None = None) -> None:
        """Play ``fault`` (one of ``FAULTS``) on the next ``times`` authenticated message creates.

        With ``to`` (as Twilio shows it, "whatsapp:+15551230000") only creates to that
        recipient play it, so that sends to others running at the same time do not take it.
        Faults are played before the errors of ``fail_next``, and each takes one request.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: expected one of {', '.join(FAULTS)}")
        with self._condition:
            self._faults.extend([(fault, to)] * times)

    def fail_next_list(self, status: int, code: int, message: str, times: int = 1) -> None:
        """Make the next ``times`` reads of the message list fail with a Twilio error."""
        with self._condition:
            self._list_failures.extend([(status, code, message)] * times)

    def add_message(
        self, from_: str, to: str, body: str, *, created_at: datetime, status: str = "delivered"
    ) -> str:
        """Store a message created at ``created_at`` without a request, as another tool sent
        it, and return its sid. ``from_`` and ``to`` are as Twilio shows them
        ("whatsapp:+14155238886")."""
        resource = self._message_resource(
            self.account_sid, {"From": from_, "To": to, "Body": body}, created_at=created_at
        )
        resource["status"] = status
        with self._condition:
            self._messages.append(resource)
            self._created_at[resource["sid"]] = created_at
            self._condition.notify_all()
        return resource["sid"]

    def post_status(
        self, sid: str, status: str, *, error_code: int | None = None, timeout: float = 10.0
    ) -> int:
        """Post a signed status callback for the created message ``sid``, as Twilio does.

        Returns the HTTP status of the response. Raises LookupError when no created message
        has this sid or it asked for no status callback.
        """
        resource = next((m for m in self.messages if m["sid"] == sid), None)
        if resource is None or not resource.get("status_callback"):
            raise LookupError(f"no created message {sid} with a StatusCallback")
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "From": resource["from"],
            "To": resource["to"],
            "ApiVersion": API_VERSION,
        }
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        url = resource["status_callback"]
        signature = RequestValidator(self.auth_token).compute_signature(url, form)
        response = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=timeout)
        if response.status_code == 204 and self.after_status_callback is not None:
            self.after_status_callback()
        return response.status_code

    def add_template(
        self,
        body: str,
        *,
        name: str = "template",
        variables: dict[str, str] | None = None,
        status: str | None = "approved",
        language: str = "en",
        category: str = "UTILITY",
    ) -> str:
        """Store a twilio/text template with a WhatsApp approval ``status`` and return its SID.

        ``status`` None leaves the template unsubmitted to WhatsApp. ``variables`` are the
        template's sample values of its placeholders.
        """
        sid = "HX" + secrets.token_hex(16)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        template = {
            "sid": sid,
            "account_sid": self.account_sid,
            "friendly_name": name,
            "language": language,
            "variables": variables or {},
            "types": {"twilio/text": {"body": body}},
            "date_created": now,
            "date_updated": now,
            "url": f"{self.base_url}/v1/Content/{sid}" if self._base_url else None,
            "links": {},
        }
        approval = None
        if status is not None:
            approval = {
                "name": name, "category": category, "content_type": "twilio/text", "status": status,
                "rejection_reason": "", "allow_category_change": True, "type": "whatsapp",
            }
        with self._condition:
            self._templates.append({"content": template, "approval": approval})
        return sid

    def hold_responses(self) -> None:
        """Keep answers to message requests back, once their message is created, until released.

        This plays a provider that accepted a message but whose answer is still on its way.
        """
        self._responses_open.clear()

    def release_responses(self) -> None:
        """Let held and later answers go out."""
        self._responses_open.set()

    def hold_creates(self) -> None:
        """Keep message requests that arrive from now on waiting, before their message exists,
        until released.

        This plays a request that is still on its way to Twilio or still being processed
        there, so that a lookup meanwhile finds no message.
        """
        self._creates_open.clear()

    def release_creates(self) -> None:
        """Let held and later message requests create their messages."""
        self._creates_open.set()

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages are created and return a copy of them.

        Raises TimeoutError when fewer are created within ``timeout`` seconds.
        """
        with self._condition:
            created = self._condition.wait_for(lambda: len(self._messages) >= count, timeout)
            if not created:
                raise TimeoutError(
                    f"expected {count} created Twilio messages within {timeout} s, "
                    f"got {len(self._messages)}"
                )
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[FormFields]:
        """Wait until at least ``count`` requests are recorded and return a copy of them.

        Raises TimeoutError when fewer arrive within ``timeout`` seconds.
        """
        with self._condition:
            arrived = self._condition.wait_for(lambda: len(self._requests) >= count, timeout)
            if not arrived:
                raise TimeoutError(
                    f"expected {count} Twilio API requests within {timeout} s, "
                    f"got {len(self._requests)}"
                )
            return list(self._requests)

    # Request handling

    def _wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        authorization = request.authorization
        if (
            authorization is None
            or authorization.type != "basic"
            or authorization.username != self.account_sid
            or authorization.password != self.auth_token
        ):
            response = _error_response(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response

        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            endpoint, arguments = adapter.match()
        except HTTPException as error:
            return _error_response(
                error.code or 404, 20404, f"The requested resource {request.path} was not found"
            )
        # Content API paths carry no account: the credentials alone name it.
        if "account_sid" in arguments and arguments["account_sid"] != self.account_sid:
            return _error_response(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        return self._handlers[endpoint](request, **arguments)

    def _create_message(self, request: Request, account_sid: str) -> Response:
        form = _form_fields(request)
        with self._condition:
            self._requests.append(form)
            fault = self._take_fault(form.get("To"))
            failure = None if fault is not None else self._take_failure(form.get("To"))
            self._condition.notify_all()
        if fault == DROP_BEFORE_CREATE:
            return _drop_connection(request)
        self._creates_open.wait()
        if failure is not None:
            status, code, message, retry_after = failure
            response = _error_response(status, code, message)
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response

        # The same checks, in the same order, as Twilio's Messages API.
        if not form.get("To"):
            return _error_response(400, 21604, "A 'To' phone number is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _error_response(400, 21603, "A 'From' phone number is required.")
        if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
            return _error_response(400, 21602, "Message body is required.")
        if form.get("ContentSid"):
            invalid = self._check_content(form)
            if invalid is not None:
                return invalid

        created_at = datetime.now(timezone.utc)
        resource = self._message_resource(account_sid, form, created_at=created_at)
        with self._condition:
            self._messages.append(resource)
            self._created_at[resource["sid"]] = created_at
            self._condition.notify_all()
        self._fetch_media(form)
        # The message exists now, as at Twilio once it accepted the request. Only the
        # response is late or lost.
        if fault == DROP_AFTER_CREATE:
            return _drop_connection(request)
        if fault == HANG_AFTER_CREATE:
            self._stopping.wait(self.hang_seconds)
        if self.response_delay:
            time.sleep(self.response_delay)
        self._responses_open.wait()
        return _json_response(201, resource)

    def _take_failure(self, to: str | list[str] | None) -> tuple[int, int, str, float | None] | None:
        """Remove and return the first queued failure for a create to ``to``, or None.

        The caller must hold ``_condition``.
        """
        for queued in self._failures:
            *failure, failure_to = queued
            if failure_to is None or failure_to == to:
                self._failures.remove(queued)
                return tuple(failure)  # type: ignore[return-value]
        return None

    def _take_fault(self, to: str | list[str] | None) -> str | None:
        """Remove and return the first queued fault for a create to ``to``, or None.

        The caller must hold ``_condition``.
        """
        for queued in self._faults:
            fault, fault_to = queued
            if fault_to is None or fault_to == to:
                self._faults.remove(queued)
                return fault
        return None

    def _list_messages(self, request: Request, account_sid: str) -> Response:
        """Return one page of the messages filtered by To and From, newest first, as Twilio does."""
        with self._condition:
            self.list_reads += 1
            failure = self._list_failures.popleft() if self._list_failures else None
            messages = list(self._messages)
            created_at = dict(self._created_at)
        if failure is not None:
            return _error_response(*failure)
        try:
            page = int(request.args.get("Page", "0"))
            size = int(request.args.get("PageSize", "50"))
        except ValueError:
            return _error_response(400, 20001, "Invalid paging parameter")
        filters = {name: request.args[field] for field, name in (("To", "to"), ("From", "from")) if field in request.args}
        matching = [m for m in messages if all(m.get(name) == value for name, value in filters.items())]
        matching.sort(key=lambda m: created_at[m["sid"]], reverse=True)
        start = page * size
        records = matching[start:start + size]
        path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        query = {field: request.args[field] for field in ("To", "From") if field in request.args}

        def page_uri(number: int) -> str:
            return f"{path}?{urlencode({'PageSize': size, 'Page': number, **query})}"

        return _json_response(
            200,
            {
                "messages": records,
                "page": page,
                "page_size": size,
                "start": start,
                "end": start + max(len(records) - 1, 0),
                "uri": page_uri(page),
                "first_page_uri": page_uri(0),
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "next_page_uri": page_uri(page + 1) if start + size < len(matching) else None,
            },
        )

    def _check_content(self, form: FormFields) -> Response | None:
        with self._condition:
            known = {entry["content"]["sid"] for entry in self._templates}
        if form["ContentSid"] not in known:
            return _error_response(400, 21655, "The ContentSid is Invalid.")
        if form.get("ContentVariables"):
            try:
                variables = json.loads(str(form["ContentVariables"]))
            except json.JSONDecodeError:
                variables = None
            if not isinstance(variables, dict):
                return _error_response(400, 21656, "The ContentVariables Parameter is invalid.")
        return None

    def _list_content(self, request: Request) -> Response:
        return self._content_page(request, "/v1/Content", lambda entry: entry["content"])

    def _list_content_and_approvals(self, request: Request) -> Response:
        # This list carries the WhatsApp approval as a flat approval_requests object.
        return self._content_page(
            request, "/v1/ContentAndApprovals",
            lambda entry: {**entry["content"], "approval_requests": entry["approval"] or {}},
        )

    def _content_page(
        self, request: Request, path: str, record: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        """Return one page of a Content API list, with Twilio's ``meta`` block and absolute links."""
        with self._condition:
            self.content_reads += 1
        try:
            page = int(request.args.get("Page", "0"))
            size = int(request.args.get("PageSize", str(self.content_page_size)))
        except ValueError:
            return _error_response(400, 20001, "Invalid paging parameter")
        with self._condition:
            entries = list(self._templates)
        start = page * size
        records = [record(entry) for entry in entries[start:start + size]]

        def page_url(number: int) -> str:
            return f"{self.base_url}{path}?PageSize={size}&Page={number}"

        meta = {
            "page": page,
            "page_size": size,
            "first_page_url": page_url(0),
            "previous_page_url": page_url(page - 1) if page > 0 else None,
            "url": page_url(page),
            "next_page_url": page_url(page + 1) if start + size < len(entries) else None,
            "key": "contents",
        }
        return _json_response(200, {"contents": records, "meta": meta})

    def _fetch_approval(self, request: Request, sid: str) -> Response:
        with self._condition:
            self.content_reads += 1
            entry = next((e for e in self._templates if e["content"]["sid"] == sid), None)
        if entry is None:
            return _error_response(404, 20404, f"The requested resource {request.path} was not found")
        return _json_response(
            200,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "whatsapp": entry["approval"] or {},
                "url": f"{self.base_url}/v1/Content/{sid}/ApprovalRequests",
            },
        )

    def _fetch_media(self, form: FormFields) -> None:
        """Download each MediaUrl, as Twilio does before it hands the message to WhatsApp."""
        urls = form.get("MediaUrl") or []
        for url in [urls] if isinstance(urls, str) else urls:
            try:
                response = requests.get(url, timeout=10)
                fetch = MediaFetch(url, response.status_code, response.headers.get("Content-Type"),
                                   response.content, dict(response.headers))
            except requests.RequestException as error:
                fetch = MediaFetch(url, 0, None, str(error).encode(), {})
            with self._condition:
                self._media_fetches.append(fetch)
                self._condition.notify_all()

    def _message_resource(self, account_sid: str, form: FormFields, *, created_at: datetime) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(created_at.astimezone(timezone.utc))
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
        media_urls = form.get("MediaUrl") or []
        return {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": str(1 if isinstance(media_urls, str) else len(media_urls)),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": self.initial_status,
            "status_callback": form.get("StatusCallback"),
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": form.get("To"),
            "uri": uri,
            # Not part of Twilio's resource: what the request asked for, for tests to check.
            "content_sid": form.get("ContentSid"),
            "content_variables": form.get("ContentVariables"),
        }


def _form_fields(request: Request) -> FormFields:
    fields: FormFields = {}
    for name in request.form.keys():
        values = request.form.getlist(name)
        fields[name] = values[0] if len(values) == 1 else values
    return fields


def _drop_connection(request: Request) -> Response:
    """Close the client's connection without a response, as a failing network or proxy does.

    The client reads the end of the stream where it waits for the status line. Werkzeug's
    write of the returned response then fails quietly on the closed socket.
    """
    connection: socket.socket = request.environ["werkzeug.socket"]
    connection.shutdown(socket.SHUT_RDWR)
    return Response(status=500)


def _json_response(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _error_response(status: int, code: int, message: str) -> Response:
    return _json_response(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


class _LoggingRequestHandler(WSGIRequestHandler):
    """Request handler that logs werkzeug's per-request lines at debug level."""

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.ERROR if type == "error" else logging.DEBUG
        logger.log(level, message, *args)
