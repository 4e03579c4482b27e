"""OAuth 2.0 for mailboxes: token refresh against a loopback token server, XOAUTH2 sign-in
to a real Dovecot and to aiosmtpd."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug.serving import make_server

from channels.email.imap import ImapReader, MailboxAuthError
from channels.email.oauth import (
    MAX_LIFETIME_SECONDS,
    MAX_REPLY_BYTES,
    OAuthClient,
    OAuthError,
    OAuthGrantError,
    is_fresh,
    refresh_access_token,
    xoauth2_response,
)
from channels.email.smtp import send_email
from channels.errors import PermanentSendError, TransientSendError
from channels.types import Address, AddressKind, OutboundMessage
from tests.support.dovecot import DovecotServer
from tests.support.oauth_server import OAuthTestServer
from tests.support.smtp_server import SmtpTestServer

# The test SMTP server takes AUTH without TLS, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER = "support@shop.example"
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=timezone.utc)


class MemoryTokens:
    """A token source that keeps its tokens in memory and refreshes at the real token server."""

    def __init__(self, client: OAuthClient, refresh_token: str, access_token: str | None = None):
        self.client = client
        self.refresh_token = refresh_token
        self.current = access_token
        self.renewals = 0

    def access_token(self) -> str:
        if self.current is None:
            self.current = self._refresh()
        return self.current

    def renew_access_token(self, rejected: str) -> str:
        self.renewals += 1
        self.current = self._refresh()
        return self.current

    def _refresh(self) -> str:
        grant = refresh_access_token(self.client, self.refresh_token)
        self.refresh_token = grant.refresh_token or self.refresh_token
        return grant.access_token


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthTestServer]:
    with OAuthTestServer() as server:
        yield server


@pytest.fixture
def client(oauth: OAuthTestServer) -> OAuthClient:
    oauth.rotate_refresh_tokens = False
    oauth.fail_token_requests(None)
    return OAuthClient(
        token_url=oauth.token_url, client_id=oauth.client_id, client_secret=oauth.client_secret,
        scopes=("https://mail.example/imap", "https://mail.example/smtp"), timeout=5,
    )


@pytest.fixture(scope="module")
def dovecot(oauth: OAuthTestServer) -> Iterator[DovecotServer]:
    with DovecotServer(username=USER, oauth2_tokeninfo_url=oauth.tokeninfo_url) as server:
        yield server


@pytest.fixture
def smtp(oauth: OAuthTestServer) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(oauth2=oauth) as server:
        yield server


def reply() -> OutboundMessage:
    return OutboundMessage(
        to=Address(AddressKind.EMAIL, "maria@example.org", "María López"),
        text="Your parcel left our warehouse today.",
        subject="Re: Order 1042",
        message_id="sb.oauth-reply@shop.example",
    )


# --- the token endpoint ----------------------------------------------------------------------


def test_refresh_returns_access_token_and_expiry(oauth, client):
    refresh_token = oauth.grant(USER)

    grant = refresh_access_token(client, refresh_token, now=NOW)

    assert oauth.user_of(grant.access_token) == USER
    assert grant.expires_at == NOW + timedelta(seconds=3600)
    assert grant.refresh_token is None
    [request] = [r for r in oauth.token_requests if r.form.get("refresh_token") == refresh_token]
    assert request.form["grant_type"] == "refresh_token"
    assert request.form["client_id"] == oauth.client_id
    assert request.form["scope"] == "https://mail.example/imap https://mail.example/smtp"


def test_refresh_returns_rotated_refresh_token(oauth, client):
    refresh_token = oauth.grant(USER)
    oauth.rotate_refresh_tokens = True

    grant = refresh_access_token(client, refresh_token)

    assert grant.refresh_token is not None
    assert grant.refresh_token != refresh_token
    assert oauth.is_current(grant.refresh_token)
    assert not oauth.is_current(refresh_token)


def test_revoked_refresh_token_raises_grant_error(oauth, client):
    refresh_token = oauth.grant(USER)
    oauth.revoke(refresh_token)

    with pytest.raises(OAuthGrantError) as raised:
        refresh_access_token(client, refresh_token)

    assert "invalid_grant (Token has been expired or revoked.)" in str(raised.value)
    assert refresh_token not in str(raised.value)
    assert raised.value.transient is False


def test_wrong_client_secret_raises_grant_error(oauth, client):
    refresh_token = oauth.grant(USER)
    wrong = OAuthClient(token_url=client.token_url, client_id=client.client_id, client_secret="wrong")

    with pytest.raises(OAuthGrantError) as raised:
        refresh_access_token(wrong, refresh_token)

    assert "invalid_client" in str(raised.value)


@pytest.mark.parametrize("status", [429, 503])
def test_token_endpoint_outage_is_transient(oauth, client, status):
    refresh_token = oauth.grant(USER)
    oauth.fail_token_requests(status)

    with pytest.raises(OAuthError) as raised:
        refresh_access_token(client, refresh_token)

    assert raised.value.transient is True
    assert not isinstance(raised.value, OAuthGrantError)


def test_unreachable_token_endpoint_is_transient():
    with OAuthTestServer() as stopped:
        url = stopped.token_url
    client = OAuthClient(token_url=url, client_id="id", client_secret="secret", timeout=5)

    with pytest.raises(OAuthError) as raised:
        refresh_access_token(client, "rt-any")

    assert raised.value.transient is True
    assert "could not be reached" in str(raised.value)


def test_token_freshness_keeps_a_margin():
    assert is_fresh(NOW + timedelta(minutes=10), NOW)
    assert not is_fresh(NOW + timedelta(seconds=30), NOW)
    assert not is_fresh(NOW - timedelta(seconds=1), NOW)
    assert not is_fresh(None, NOW)


def test_xoauth2_response_layout():
    assert xoauth2_response(USER, "at-123") == f"user={USER}\x01auth=Bearer at-123\x01\x01"
    with pytest.raises(ValueError):
        xoauth2_response(USER, "at-123\x01auth=Bearer other")


# --- IMAP ------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_imap_reader_signs_in_with_xoauth2(oauth, client, dovecot):
    tokens = MemoryTokens(client, oauth.grant(USER))
    dovecot.append(b"From: a@example.org\r\nSubject: hi\r\nMessage-ID: <x1@example.org>\r\n\r\nHello\r\n")

    with ImapReader(dovecot.settings(password="", oauth2_tokens=tokens), timeout=10) as reader:
        assert reader.supports_idle

    assert tokens.renewals == 0


@pytest.mark.dovecot
def test_imap_rejected_token_is_renewed_once(oauth, client, dovecot):
    tokens = MemoryTokens(client, oauth.grant(USER))
    tokens.access_token()
    oauth.expire_access_tokens()  # the server now rejects the token this source has cached

    with ImapReader(dovecot.settings(password="", oauth2_tokens=tokens), timeout=10):
        pass

    assert tokens.renewals == 1


@pytest.mark.dovecot
def test_imap_second_rejection_raises_auth_error(oauth, client, dovecot):
    tokens = MemoryTokens(client, oauth.grant("someone-else@shop.example"))

    with pytest.raises(MailboxAuthError) as raised:
        ImapReader(dovecot.settings(password="", oauth2_tokens=tokens), timeout=10).connect()

    assert "AUTHENTICATIONFAILED" in str(raised.value)
    assert tokens.renewals == 1


@pytest.mark.dovecot
def test_imap_revoked_grant_raises_grant_error(oauth, client, dovecot):
    refresh_token = oauth.grant(USER)
    oauth.revoke(refresh_token)
    tokens = MemoryTokens(client, refresh_token)

    with pytest.raises(OAuthGrantError):
        ImapReader(dovecot.settings(password="", oauth2_tokens=tokens), timeout=10).connect()


# --- SMTP ------------------------------------------------------------------------------------


def test_smtp_sends_with_xoauth2(oauth, client, smtp):
    tokens = MemoryTokens(client, oauth.grant(USER))

    send_email(smtp.settings(username=USER, oauth2_tokens=tokens), reply())

    [mail] = smtp.wait_for(1)
    assert mail.message["Message-ID"] == "<sb.oauth-reply@shop.example>"
    assert smtp.xoauth2_sign_ins == [USER]
    assert tokens.renewals == 0


def test_smtp_rejected_token_is_renewed_once(oauth, client, smtp):
    tokens = MemoryTokens(client, oauth.grant(USER))
    tokens.access_token()
    oauth.expire_access_tokens()

    send_email(smtp.settings(username=USER, oauth2_tokens=tokens), reply())

    assert len(smtp.wait_for(1)) == 1
    assert tokens.renewals == 1


def test_smtp_second_rejection_is_permanent(oauth, client, smtp):
    tokens = MemoryTokens(client, oauth.grant("someone-else@shop.example"))

    with pytest.raises(PermanentSendError) as raised:
        send_email(smtp.settings(username=USER, oauth2_tokens=tokens), reply())

    assert "535" in str(raised.value)
    assert tokens.renewals == 1
    assert smtp.received == []


def test_smtp_revoked_grant_is_transient(oauth, client, smtp):
    refresh_token = oauth.grant(USER)
    oauth.revoke(refresh_token)

    with pytest.raises(TransientSendError) as raised:
        send_email(smtp.settings(username=USER, oauth2_tokens=MemoryTokens(client, refresh_token)), reply())

    assert "invalid_grant" in str(raised.value)


def test_smtp_server_without_xoauth2_is_permanent(oauth, client):
    tokens = MemoryTokens(client, oauth.grant(USER))
    with SmtpTestServer(credentials=(USER, "password")) as password_only:
        with pytest.raises(PermanentSendError) as raised:
            send_email(password_only.settings(username=USER, password=None, oauth2_tokens=tokens), reply())

    assert "XOAUTH2" in str(raised.value)


@pytest.mark.dovecot
def test_tokens_never_reach_the_log(oauth, client, dovecot, smtp, caplog):
    refresh_token = oauth.grant(USER)
    tokens = MemoryTokens(client, refresh_token)
    caplog.set_level(logging.DEBUG)

    with ImapReader(dovecot.settings(password="", oauth2_tokens=tokens), timeout=10):
        pass
    oauth.expire_access_tokens()
    send_email(smtp.settings(username=USER, oauth2_tokens=tokens), reply())

    assert tokens.current is not None
    for secret in (refresh_token, tokens.current, oauth.client_secret):
        assert secret not in caplog.text


@dataclass
class CraftedEndpoint:
    url: str
    bodies: list[bytes]


@pytest.fixture
def crafted_endpoint() -> Iterator[CraftedEndpoint]:
    """Start a token endpoint on loopback that returns the next queued body for each request."""
    bodies: list[bytes] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [bodies.pop(0)]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield CraftedEndpoint(f"http://127.0.0.1:{server.server_port}/token", bodies)
    server.shutdown()
    thread.join(5)


def test_absurd_expiry_is_capped(crafted_endpoint):
    crafted_endpoint.bodies.append(
        json.dumps({"access_token": "at", "token_type": "Bearer", "expires_in": 1e20}).encode()
    )
    client = OAuthClient(token_url=crafted_endpoint.url, client_id="id", client_secret="secret")

    grant = refresh_access_token(client, "refresh", now=NOW)

    assert grant.expires_at == NOW + timedelta(seconds=MAX_LIFETIME_SECONDS)


def test_oversize_token_reply_is_refused(crafted_endpoint):
    crafted_endpoint.bodies.append(b'{"access_token": "' + b"a" * (MAX_REPLY_BYTES + 1) + b'"}')
    client = OAuthClient(token_url=crafted_endpoint.url, client_id="id", client_secret="secret")

    with pytest.raises(OAuthError, match="larger than") as raised:
        refresh_access_token(client, "refresh")
    assert raised.value.transient
