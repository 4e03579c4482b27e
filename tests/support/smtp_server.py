"""An SMTP server on loopback that records what it receives, for tests of sending.

It runs aiosmtpd's Controller on a free 127.0.0.1 port, in its own thread. It can
reject chosen recipients or every DATA with a given reply, answer QUIT with an error,
require a login (a password, or an OAuth 2.0 access token over AUTH XOAUTH2 that the
test token server vouches for), and be stopped and started again on the same port to
play a server that is down for a while.

Usage::

    with SmtpTestServer() as server:
        send_email(server.settings(), message)
        [mail] = server.wait_for(1)
        assert mail.message["Subject"] == "Re: Order 1042"
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from channels.email.smtp import SmtpSettings

if TYPE_CHECKING:
    from tests.support.oauth_server import OAuthTestServer


@dataclass(frozen=True)
class ReceivedMail:
    """One message the server accepted: the envelope, the bytes and their parse."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage


class SmtpTestServer:
    """A recording SMTP server. ``port`` stays the same across stop() and start()."""

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        credentials: tuple[str, str] | None = None,
        oauth2: OAuthTestServer | None = None,
    ):
        self.port = port or _free_port()
        self.credentials = credentials
        # With oauth2 the server requires AUTH XOAUTH2 with a token that oauth2 issued.
        self.oauth2 = oauth2
        self.xoauth2_sign_ins: list[str] = []
        self._condition = threading.Condition()
        self._received: list[ReceivedMail] = []
        self._rejected_recipients: dict[str, str] = {}
        self._data_reply: str | None = None
        self._quit_reply: str | None = None
        self._controller: Controller | None = None

    def __enter__(self) -> SmtpTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on ``port``. Returns once the server accepts connections."""
        if self._controller is not None:
            return
        options: dict[str, Any] = {}
        if self.credentials is not None or self.oauth2 is not None:
            options.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=False
            )
        handler = _Handler(self) if self.oauth2 is None else _XOAuth2Handler(self)
        self._controller = Controller(handler, hostname=self.host, port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening and keep the received mail. Calling it twice is harmless."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settings(self, **overrides: Any) -> SmtpSettings:
        """Return sender settings for this server; keyword arguments override fields."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": "none",
            "from_address": "support@shop.example",
            "from_name": "Shop Support",
            "timeout": 10,
        }
        if self.credentials is not None:
            values["username"], values["password"] = self.credentials
        values.update(overrides)
        return SmtpSettings(**values)

    def reject_recipient(self, address: str, reply: str = "550 5.1.1 Mailbox unavailable") -> None:
        """Reply to RCPT TO for ``address`` with ``reply``, a code and text."""
        self._rejected_recipients[address.lower()] = reply

    def reject_data(self, reply: str | None) -> None:
        """Reply to every DATA with ``reply``, or accept mail again when it is None."""
        self._data_reply = reply

    def reply_to_quit(self, reply: str | None) -> None:
        """Reply to every QUIT with ``reply`` instead of ``221 Bye``, or restore 221 when None.

        The server closes the connection after this reply either way.
        """
        self._quit_reply = reply

    @property
    def received(self) -> list[ReceivedMail]:
        with self._condition:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 10) -> list[ReceivedMail]:
        """Wait until ``count`` messages arrived and return all received so far.

        Raises ``TimeoutError`` when fewer arrived within ``timeout`` seconds.
        """
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} messages, received {len(self._received)} "
                    f"within {timeout} seconds"
                )
            return list(self._received)

    def _record(self, mail: ReceivedMail) -> None:
        with self._condition:
            self._received.append(mail)
            self._condition.notify_all()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self.credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username, password = self.credentials
        matches = auth_data.login == username.encode() and auth_data.password == password.encode()
        return AuthResult(success=matches, handled=False)


class _Handler:
    """aiosmtpd hooks: reject what the server is configured to reject, record the rest."""

    def __init__(self, server: SmtpTestServer) -> None:
        self._server = server

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._server._rejected_recipients.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self._server._data_reply is not None:
            return self._server._data_reply
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self._server._record(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=message,
            )
        )
        return "250 Message accepted"

    async def handle_QUIT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> Any:
        reply = self._server._quit_reply
        return MISSING if reply is None else reply


class _XOAuth2Handler(_Handler):
    """The recording hooks plus AUTH XOAUTH2, checked against the test token server."""

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if len(args) == 2:
            try:
                response = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode base64")
        else:
            answer = await server.challenge_auth("")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            response = answer

        fields = dict(
            item.split("=", 1) for item in response.decode("utf-8", "replace").split("\x01") if "=" in item
        )
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        assert self._server.oauth2 is not None
        if user and self._server.oauth2.user_of(token) == user:
            self._server.xoauth2_sign_ins.append(user)
            return AuthResult(success=True, auth_data=user)

        # Like Gmail: the error goes out as a challenge, and the client sends an empty
        # line before the final reply.
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.example/"})
        if await server.challenge_auth(error) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
