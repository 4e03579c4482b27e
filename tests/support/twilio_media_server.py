"""Twilio's media hosting on loopback: the Media resource of the API host and a media host.

``GET /2010-04-01/Accounts/{sid}/Messages/{message_sid}/Media/{media_sid}`` on the API host
(http://127.0.0.1:PORT) checks HTTP basic auth and responds 307 to the media host, which is
the same server under another host name (http://localhost:PORT/media/...), as Twilio
redirects to its own media domain. Tests add files with ``add``, make the API host answer 404
a few times first (media not yet available), make the media host send a file a byte at a time
(a stalling host), and read ``requests`` to see which host got which credentials.

Usage::

    with TwilioMediaServer() as server:
        url = server.add("ME1", b"...", "image/jpeg", not_found_first=1)
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.support.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN


@dataclass
class _Media:
    data: bytes
    content_type: str
    not_found_left: int
    filename: str | None
    byte_interval: float = 0.0


@dataclass(frozen=True)
class MediaRequest:
    host: str
    path: str
    authorization: str | None


class TwilioMediaServer:
    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[MediaRequest] = []
        self._media: dict[str, _Media] = {}
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """The API host, to be used as the Twilio API base URL."""
        return f"http://127.0.0.1:{self.port}"

    def add(
        self, media_sid: str, data: bytes, content_type: str, *, not_found_first: int = 0,
        filename: str | None = None, byte_interval: float = 0.0,
    ) -> str:
        """Host a file and return its MediaUrl on the API host.

        With ``byte_interval``, the media host sends the file one byte per that many seconds.
        """
        with self._lock:
            self._media[media_sid] = _Media(data, content_type, not_found_first, filename, byte_interval)
        return (
            f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages/"
            f"MM{'0' * 32}/Media/{media_sid}"
        )

    def __enter__(self) -> TwilioMediaServer:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _app(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            self.requests.append(MediaRequest(request.host, request.path, request.headers.get("Authorization")))
        if request.path.startswith("/media/"):
            response = self._serve_file(request.path.removeprefix("/media/"))
        elif "/Media/" in request.path:
            response = self._serve_resource(request)
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def _serve_resource(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return Response('{"code": 20003, "message": "Authenticate"}', status=401, mimetype="application/json")
        media_sid = request.path.rsplit("/", 1)[-1]
        with self._lock:
            media = self._media.get(media_sid)
            if media is None or media.not_found_left > 0:
                if media is not None:
                    media.not_found_left -= 1
                return Response('{"code": 20404, "message": "Not found"}', status=404, mimetype="application/json")
        response = Response(status=307)
        response.headers["Location"] = f"http://localhost:{self.port}/media/{media_sid}?Expires=1&Signature=x"
        return response

    def _serve_file(self, media_sid: str) -> Response:
        with self._lock:
            media = self._media.get(media_sid)
        if media is None:
            return Response("gone", status=404)
        if media.byte_interval:
            body = _bytewise(media.data, media.byte_interval, self._stopping)
            response = Response(body, mimetype=media.content_type, direct_passthrough=True)
            response.headers["Content-Length"] = str(len(media.data))
        else:
            response = Response(media.data, mimetype=media.content_type)
        if media.filename and media.filename.isascii():
            response.headers["Content-Disposition"] = f'inline; filename="{media.filename}"'
        elif media.filename:
            response.headers["Content-Disposition"] = f"inline; filename*=UTF-8''{quote(media.filename)}"
        return response


def _bytewise(data: bytes, interval: float, stopping: threading.Event) -> Iterator[bytes]:
    """Yield ``data`` one byte per ``interval`` seconds, until the server stops."""
    for index in range(len(data)):
        if stopping.wait(interval):
            return
        yield data[index : index + 1]
