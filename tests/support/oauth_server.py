"""An OAuth 2.0 authorization server on loopback, for tests of XOAUTH2 sign-in.

It serves the two endpoints a mailbox provider has. The token endpoint turns a refresh
token into an access token (RFC 6749 section 6, form POST). The token-info endpoint, in
Google's style (``GET /tokeninfo?access_token=...``), is what the test Dovecot's oauth2
passdb and the test SMTP server call to check an access token. Refresh tokens come from
``grant()``, which stands in for the user's consent in the browser.

Tests can make access tokens expire, rotate refresh tokens on every refresh, revoke a
grant, and make the token endpoint answer with a server error::

    with OAuthTestServer() as oauth:
        refresh_token = oauth.grant("support@shop.example")
        oauth.rotate_refresh_tokens = True
        ...
        oauth.revoke(refresh_token)
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

CLIENT_ID = "switchboard-test-client"
CLIENT_SECRET = "test-client-secret-0123456789"
SCOPE = "https://mail.example/imap https://mail.example/smtp"


@dataclass
class _Grant:
    user: str
    scope: str
    revoked: bool = False


@dataclass
class _AccessToken:
    user: str
    expires_at: float


@dataclass(frozen=True)
class TokenRequest:
    """One request the token endpoint received: its form fields and the reply status."""

    form: dict[str, str]
    status: int


class OAuthTestServer:
    """A token endpoint and a token-info endpoint on a free 127.0.0.1 port."""

    host = "127.0.0.1"

    def __init__(
        self,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        access_token_lifetime: int = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_lifetime = access_token_lifetime
        # When True, every refresh returns a new refresh token and retires the one used.
        self.rotate_refresh_tokens = False
        self.port = 0
        self._lock = threading.Lock()
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._token_requests: list[TokenRequest] = []
        self._failure: tuple[int, str] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> OAuthTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def token_url(self) -> str:
        return f"http://{self.host}:{self.port}/token"

    @property
    def tokeninfo_url(self) -> str:
        """The URL prefix that Dovecot appends an access token to."""
        return f"http://{self.host}:{self.port}/tokeninfo?access_token="

    def start(self) -> None:
        """Listen on a free port and serve in a background thread."""
        self.port = _free_port()
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oauth-test-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving. Calling it twice is harmless."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def grant(self, user: str, scope: str = SCOPE) -> str:
        """Return a new refresh token for ``user``, as the consent step would."""
        refresh_token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._grants[refresh_token] = _Grant(user=user, scope=scope)
        return refresh_token

    def revoke(self, refresh_token: str) -> None:
        """Revoke a grant: its refresh token and every access token stop working."""
        with self._lock:
            grant = self._grants[refresh_token]
            grant.revoked = True
            for token, issued in list(self._access_tokens.items()):
                if issued.user == grant.user:
                    del self._access_tokens[token]

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired, while clients still think it valid."""
        with self._lock:
            for issued in self._access_tokens.values():
                issued.expires_at = 0.0

    def fail_token_requests(self, status: int | None, error: str = "temporarily_unavailable") -> None:
        """Reply to every token request with ``status`` and ``error``, or serve again when None."""
        with self._lock:
            self._failure = None if status is None else (status, error)

    def user_of(self, access_token: str) -> str | None:
        """Return the user of a valid access token, or None for an unknown or expired one."""
        with self._lock:
            issued = self._access_tokens.get(access_token)
            if issued is None or issued.expires_at <= time.time():
                return None
            return issued.user

    def is_current(self, refresh_token: str) -> bool:
        """Return whether a refresh token can still be used."""
        with self._lock:
            grant = self._grants.get(refresh_token)
            return grant is not None and not grant.revoked

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._token_requests)

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        """Reply to one token request as RFC 6749 section 5 describes, and record it."""
        with self._lock:
            status, body = self._answer_refresh(form)
            self._token_requests.append(TokenRequest(form=form, status=status))
            return status, body

    def _answer_refresh(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if self._failure is not None:
            status, error = self._failure
            return status, {"error": error}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Unknown client or wrong secret."}
        grant = self._grants.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}

        access_token = "at-" + secrets.token_urlsafe(24)
        self._access_tokens[access_token] = _AccessToken(
            user=grant.user, expires_at=time.time() + self.access_token_lifetime
        )
        body: dict[str, object] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "scope": grant.scope,
        }
        if self.rotate_refresh_tokens:
            grant.revoked = True
            rotated = "rt-" + secrets.token_urlsafe(24)
            self._grants[rotated] = _Grant(user=grant.user, scope=grant.scope)
            body["refresh_token"] = rotated
        return 200, body


def _handler_for(server: OAuthTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's method name)
            if urlsplit(self.path).path != "/token":
                self._reply(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            fields = parse_qs(self.rfile.read(length).decode("ascii", "replace"))
            form = {name: values[-1] for name, values in fields.items()}
            self._reply(*server._refresh(form))

        def do_GET(self) -> None:  # noqa: N802 (http.server's method name)
            parts = urlsplit(self.path)
            if parts.path != "/tokeninfo":
                self._reply(404, {"error": "not_found"})
                return
            token = parse_qs(parts.query).get("access_token", [""])[-1]
            user = server.user_of(token)
            if user is None:
                self._reply(401, {"error": "invalid_token"})
                return
            self._reply(200, {"email": user})

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # request lines would carry access tokens

    return Handler


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
