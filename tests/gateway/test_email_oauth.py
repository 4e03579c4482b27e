"""Email channels that sign in with OAuth 2.0: a real Dovecot with an oauth2 passdb and an
aiosmtpd server with XOAUTH2, both checking tokens with a loopback token server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from channels.email.imap import ImapReader
from channels.email.oauth import OAuthError, OAuthGrantError
from gateway import Switchboard
from gateway.channel_settings import ChannelTokens, imap_settings
from gateway.cli import main
from gateway.workers import MailboxReader, OutboxDispatcher
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel, store_oauth_tokens
from inbox.errors import InvalidInput
from inbox.models import Channel, Message, OutboxItem, utcnow
from inbox.replies import create_reply
from tests.gateway.conftest import SUPPORT
from tests.support.dovecot import DovecotServer
from tests.support.oauth_server import SCOPE, OAuthTestServer
from tests.support.smtp_server import SmtpTestServer

pytestmark = [
    pytest.mark.dovecot,
    # The test SMTP server takes AUTH without TLS, which aiosmtpd warns about.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[OAuthTestServer]:
    with OAuthTestServer() as server:
        yield server


@pytest.fixture
def oauth(oauth_server: OAuthTestServer) -> OAuthTestServer:
    oauth_server.rotate_refresh_tokens = False
    oauth_server.fail_token_requests(None)
    return oauth_server


@pytest.fixture(scope="module")
def oauth_dovecot(oauth_server: OAuthTestServer) -> Iterator[DovecotServer]:
    with DovecotServer(
        username=SUPPORT,
        oauth2_tokeninfo_url=oauth_server.tokeninfo_url,
        extra_config="mailbox_idle_check_interval = 1 secs",
    ) as server:
        yield server


@pytest.fixture
def mailbox(oauth_dovecot: DovecotServer) -> DovecotServer:
    oauth_dovecot.expunge_all()
    return oauth_dovecot


@pytest.fixture
def smtp(oauth: OAuthTestServer) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(oauth2=oauth) as server:
        yield server


@pytest.fixture
def refresh_token(oauth: OAuthTestServer) -> str:
    return oauth.grant(SUPPORT)


@pytest.fixture
def oauth_channel(
    state: Switchboard, mailbox: DovecotServer, smtp: SmtpTestServer, oauth: OAuthTestServer, refresh_token: str
) -> Channel:
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop Support", SUPPORT,
            {
                "imap_host": mailbox.host, "imap_port": mailbox.port, "imap_username": SUPPORT,
                "imap_ssl": False, "smtp_host": smtp.host, "smtp_port": smtp.port,
                "smtp_username": SUPPORT, "smtp_security": "none",
                "auth": "oauth2", "oauth_provider": "custom", "oauth_client_id": oauth.client_id,
                "oauth_client_secret": oauth.client_secret, "oauth_refresh_token": refresh_token,
                "oauth_token_url": oauth.token_url, "oauth_scopes": SCOPE,
            },
        )
        session.commit()
        return channel


def _mail(sender: str, subject: str, body: str, message_id: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id}>"
    message.set_content(body)
    return message.as_bytes()


def _settings(state: Switchboard, channel_id: int) -> dict:
    with state.session_factory() as session:
        return dict(session.get(Channel, channel_id).settings)


def _channel(state: Switchboard, channel_id: int) -> Channel:
    with state.session_factory() as session:
        return session.get(Channel, channel_id)


def _message_count(state: Switchboard) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Message))


def _import(state: Switchboard, channel: Channel, tokens: ChannelTokens) -> int:
    reader = MailboxReader(state, channel.id, threading.Event())
    with ImapReader(imap_settings(_channel(state, channel.id), tokens)) as connection:
        return reader.import_new(connection, "INBOX")


def _requests_with(oauth: OAuthTestServer, refresh_token: str) -> int:
    return sum(1 for request in oauth.token_requests if request.form.get("refresh_token") == refresh_token)


def _wait_for(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@contextmanager
def _running_reader(state: Switchboard, channel_id: int) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=MailboxReader(state, channel_id, stop).run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(2)


def _make_due(state: Switchboard) -> None:
    with state.session_factory() as session:
        for item in session.scalars(select(OutboxItem).where(OutboxItem.status == "pending")):
            item.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.commit()


@pytest.fixture
def run_cli(database_url, tmp_path):
    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None):
        environment = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}
        environment.update(env or {})
        return CliRunner().invoke(main, list(args), env=environment, input=input, catch_exceptions=False)

    return invoke


# --- reading and replying --------------------------------------------------------------------


def test_oauth_channel_reads_mail_and_replies(state, agent, mailbox, smtp, oauth, oauth_channel, refresh_token):
    mailbox.append(_mail("Alice <alice@customer.example>", "Kettle", "My kettle leaks.", "a1@customer.example"))

    with _running_reader(state, oauth_channel.id):
        assert _wait_for(lambda: _message_count(state) == 1)
    with state.session_factory() as session:
        reply = create_reply(session, 1, agent.id, "Sorry to hear that!")
        session.commit()
    OutboxDispatcher(state, threading.Event()).dispatch_due()

    [sent] = smtp.wait_for(1)
    assert sent.rcpt_tos == ("alice@customer.example",)
    assert smtp.xoauth2_sign_ins == [SUPPORT]
    with state.session_factory() as session:
        assert session.get(Message, reply.id).delivery_status == "sent"
    # The reader and the sender share the access token that is cached in the database.
    assert _requests_with(oauth, refresh_token) == 1
    assert _channel(state, oauth_channel.id).last_error is None


def test_expired_access_token_is_refreshed(state, mailbox, oauth, oauth_channel, refresh_token):
    first = ChannelTokens(state.session_factory, oauth_channel.id).access_token()
    later = ChannelTokens(state.session_factory, oauth_channel.id, clock=lambda: utcnow() + timedelta(hours=2))

    second = later.access_token()

    assert second != first
    assert _requests_with(oauth, refresh_token) == 2
    stored = _settings(state, oauth_channel.id)
    assert stored["oauth_access_token"] == second
    assert datetime.fromisoformat(stored["oauth_access_token_expires_at"]) > utcnow() + timedelta(minutes=59)
    mailbox.append(_mail("bob@customer.example", "Hi", "Still signed in.", "b1@customer.example"))
    assert _import(state, oauth_channel, later) == 1


def test_cached_access_token_is_reused(state, oauth, oauth_channel, refresh_token):
    tokens = ChannelTokens(state.session_factory, oauth_channel.id)

    assert tokens.access_token() == tokens.access_token()

    assert _requests_with(oauth, refresh_token) == 1


def test_rejected_token_is_refreshed_and_sign_in_retried(state, mailbox, oauth, oauth_channel, refresh_token):
    tokens = ChannelTokens(state.session_factory, oauth_channel.id)
    stale = tokens.access_token()
    oauth.expire_access_tokens()
    mailbox.append(_mail("carol@customer.example", "Hi", "After a rejection.", "c1@customer.example"))

    assert _import(state, oauth_channel, tokens) == 1

    assert _requests_with(oauth, refresh_token) == 2
    assert _settings(state, oauth_channel.id)["oauth_access_token"] != stale


def test_rotated_refresh_token_is_stored(state, oauth, oauth_channel, refresh_token):
    oauth.rotate_refresh_tokens = True

    ChannelTokens(state.session_factory, oauth_channel.id).access_token()

    rotated = _settings(state, oauth_channel.id)["oauth_refresh_token"]
    assert rotated != refresh_token
    assert oauth.is_current(rotated)
    assert not oauth.is_current(refresh_token)
    # The next refresh uses the rotated token and succeeds.
    later = ChannelTokens(state.session_factory, oauth_channel.id, clock=lambda: utcnow() + timedelta(hours=2))
    later.access_token()
    assert _requests_with(oauth, rotated) == 1


def test_outdated_refresh_token_is_not_stored(state, oauth_channel, refresh_token):
    with state.session_factory() as session:
        stored = store_oauth_tokens(
            session, oauth_channel.id, "rt-replaced-meanwhile", "at-new", utcnow() + timedelta(hours=1), "rt-newer"
        )

    assert stored is False
    settings = _settings(state, oauth_channel.id)
    assert settings["oauth_refresh_token"] == refresh_token
    assert "oauth_access_token" not in settings


def test_concurrent_refreshes_spend_one_refresh_token(state, oauth, oauth_channel, refresh_token):
    oauth.rotate_refresh_tokens = True
    results: list[str] = []
    errors: list[Exception] = []

    def fetch() -> None:
        try:
            results.append(ChannelTokens(state.session_factory, oauth_channel.id).access_token())
        except Exception as error:  # noqa: BLE001 - the assertion below shows it
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(set(results)) == 1
    assert _requests_with(oauth, refresh_token) == 1
    assert oauth.is_current(_settings(state, oauth_channel.id)["oauth_refresh_token"])


# --- a revoked grant -------------------------------------------------------------------------


def test_revoked_grant_shows_on_health_and_recovers(
    state, agent, mailbox, smtp, oauth, oauth_channel, refresh_token, run_cli
):
    mailbox.append(_mail("dan@customer.example", "Refund", "Where is my refund?", "d1@customer.example"))
    with _running_reader(state, oauth_channel.id):
        assert _wait_for(lambda: _message_count(state) == 1)
    with state.session_factory() as session:
        reply = create_reply(session, 1, agent.id, "It is on its way.")
        session.commit()
    oauth.revoke(refresh_token)
    oauth.expire_access_tokens()

    with _running_reader(state, oauth_channel.id) as reader:
        assert _wait_for(lambda: _channel(state, oauth_channel.id).last_error is not None)
        error = _channel(state, oauth_channel.id).last_error
        assert "invalid_grant" in error
        assert f"switchboard channel reauthorize {oauth_channel.id}" in error
        assert refresh_token not in error
        assert reader.is_alive()  # it backs off and tries again

        # The reply waits for new credentials instead of failing.
        OutboxDispatcher(state, threading.Event()).dispatch_due()
        with state.session_factory() as session:
            item = session.scalar(select(OutboxItem).where(OutboxItem.message_id == reply.id))
            assert item.status == "pending"
            assert "invalid_grant" in item.last_error
        assert smtp.received == []

        new_token = oauth.grant(SUPPORT)
        result = run_cli(
            "channel", "reauthorize", str(oauth_channel.id), env={"SWITCHBOARD_OAUTH_REFRESH_TOKEN": new_token}
        )
        assert result.exit_code == 0, result.output
        assert "accepted the credentials" in result.output
        assert _channel(state, oauth_channel.id).last_error is None

        mailbox.append(_mail("dan@customer.example", "Re: Refund", "Thanks!", "d2@customer.example"))
        assert _wait_for(lambda: _message_count(state) == 3)  # the customer's two and our reply
        assert reader.is_alive()

    _make_due(state)
    OutboxDispatcher(state, threading.Event()).dispatch_due()
    assert len(smtp.wait_for(1)) == 1
    assert _settings(state, oauth_channel.id)["oauth_refresh_token"] == new_token
    assert _channel(state, oauth_channel.id).last_error is None


def test_revoked_grant_raises_grant_error(state, oauth, oauth_channel, refresh_token):
    oauth.revoke(refresh_token)

    with pytest.raises(OAuthGrantError):
        ChannelTokens(state.session_factory, oauth_channel.id).access_token()

    assert "invalid_grant" in _channel(state, oauth_channel.id).last_error


def test_token_outage_is_not_grant_error(state, oauth, oauth_channel):
    oauth.fail_token_requests(503)

    with pytest.raises(OAuthError) as raised:
        ChannelTokens(state.session_factory, oauth_channel.id).access_token()

    assert not isinstance(raised.value, OAuthGrantError)
    assert raised.value.transient is True
    assert _channel(state, oauth_channel.id).last_error is None


# --- API and CLI -----------------------------------------------------------------------------


def test_channels_api_masks_oauth_secrets(app, state, oauth, oauth_channel, refresh_token):
    ChannelTokens(state.session_factory, oauth_channel.id).access_token()
    stored = _settings(state, oauth_channel.id)
    with state.session_factory() as session:
        admin = create_agent(session, "root@example.com", "Root", "long enough pw", "admin")
        token = create_api_token(session, admin, "tests")
        session.commit()

    response = app.test_client().get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    [channel] = response.get_json()["items"]
    settings = channel["settings"]
    assert settings["auth"] == "oauth2"
    assert settings["oauth_client_id"] == oauth.client_id
    for key in ("oauth_client_secret", "oauth_refresh_token", "oauth_access_token"):
        assert settings[key] == "********"
    for secret in (refresh_token, oauth.client_secret, stored["oauth_access_token"]):
        assert secret not in response.get_data(as_text=True)


def _add_email(run_cli, oauth: OAuthTestServer, *extra: str, env: dict[str, str] | None = None, input=None):
    return run_cli(
        "channel", "add", "email", "--name", "Support", "--address", SUPPORT,
        "--imap-host", "127.0.0.1", "--imap-username", SUPPORT, "--smtp-host", "127.0.0.1",
        "--auth", "oauth2", "--oauth-client-id", oauth.client_id, *extra, env=env, input=input,
    )


def test_cli_adds_oauth_channel_after_checking_it(state, oauth, run_cli):
    refresh_token = oauth.grant(SUPPORT)

    result = _add_email(
        run_cli, oauth, "--oauth-provider", "custom", "--oauth-token-url", oauth.token_url, "--oauth-scopes", SCOPE,
        env={"SWITCHBOARD_OAUTH_CLIENT_SECRET": oauth.client_secret, "SWITCHBOARD_OAUTH_REFRESH_TOKEN": refresh_token},
    )

    assert result.exit_code == 0, result.output
    assert "Added email channel 1" in result.output
    assert refresh_token not in result.output
    settings = _settings(state, 1)
    assert settings["auth"] == "oauth2"
    assert settings["oauth_refresh_token"] == refresh_token
    assert settings["oauth_scopes"] == SCOPE
    assert settings["smtp_username"] == SUPPORT
    assert oauth.user_of(settings["oauth_access_token"]) == SUPPORT
    assert "imap_password" not in settings


def test_cli_asks_for_oauth_secrets(state, oauth, run_cli):
    refresh_token = oauth.grant(SUPPORT)

    result = _add_email(
        run_cli, oauth, "--oauth-provider", "custom", "--oauth-token-url", oauth.token_url,
        input=f"{oauth.client_secret}\n{refresh_token}\n",
    )

    assert result.exit_code == 0, result.output
    assert refresh_token not in result.output
    assert _settings(state, 1)["oauth_client_secret"] == oauth.client_secret


def test_cli_rejects_revoked_refresh_token(state, oauth, run_cli):
    refresh_token = oauth.grant(SUPPORT)
    oauth.revoke(refresh_token)

    result = _add_email(
        run_cli, oauth, "--oauth-provider", "custom", "--oauth-token-url", oauth.token_url,
        env={"SWITCHBOARD_OAUTH_CLIENT_SECRET": oauth.client_secret, "SWITCHBOARD_OAUTH_REFRESH_TOKEN": refresh_token},
    )

    assert result.exit_code == 1
    assert "invalid_grant" in result.output
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Channel)) == 0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), "needs --oauth-provider"),
        (("--oauth-provider", "custom"), "needs --oauth-token-url"),
        (("--oauth-provider", "google", "--imap-password", "secret"), "--imap-password is not used"),
    ],
)
def test_cli_oauth_option_errors(oauth, run_cli, extra, expected):
    result = _add_email(run_cli, oauth, *extra)

    assert result.exit_code == 2
    assert expected in result.output


def test_cli_rejects_plain_http_token_url(oauth, run_cli):
    # Checked before any request, so nothing is sent to this host.
    result = _add_email(
        run_cli, oauth, "--oauth-provider", "custom", "--oauth-token-url", "http://login.example.com/token",
        env={"SWITCHBOARD_OAUTH_CLIENT_SECRET": "s", "SWITCHBOARD_OAUTH_REFRESH_TOKEN": "rt"},
    )

    assert result.exit_code == 1
    assert "must be an https:// URL" in result.output


def test_cli_reauthorize_needs_an_oauth_channel(state, run_cli):
    with state.session_factory() as session:
        add_channel(
            session, "email", "Passwords", SUPPORT,
            {"imap_host": "127.0.0.1", "imap_port": 143, "imap_username": SUPPORT, "imap_password": "pw",
             "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none"},
        )
        session.commit()

    not_oauth = run_cli("channel", "reauthorize", "1", env={"SWITCHBOARD_OAUTH_REFRESH_TOKEN": "rt"})
    missing = run_cli("channel", "reauthorize", "9", env={"SWITCHBOARD_OAUTH_REFRESH_TOKEN": "rt"})

    assert not_oauth.exit_code == 1
    assert "does not sign in with OAuth 2.0" in not_oauth.output
    assert missing.exit_code == 1
    assert "Channel 9 not found" in missing.output


def test_cli_reauthorize_keeps_token_on_failure(state, oauth, oauth_channel, refresh_token, run_cli):
    revoked = oauth.grant(SUPPORT)
    oauth.revoke(revoked)

    result = run_cli("channel", "reauthorize", str(oauth_channel.id), env={"SWITCHBOARD_OAUTH_REFRESH_TOKEN": revoked})

    assert result.exit_code == 1
    assert "invalid_grant" in result.output
    assert _settings(state, oauth_channel.id)["oauth_refresh_token"] == refresh_token


def test_cli_reauthorize_replaces_client_secret(state, oauth, oauth_channel, refresh_token, run_cli):
    with state.session_factory() as session:
        channel = session.get(Channel, oauth_channel.id)
        channel.settings = {**channel.settings, "oauth_client_secret": "a-wrong-secret"}
        session.commit()

    # The new secret is typed in, and an empty refresh token keeps the stored one.
    result = run_cli(
        "channel", "reauthorize", str(oauth_channel.id), "--replace-client-secret",
        input=f"{oauth.client_secret}\n\n",
    )

    assert result.exit_code == 0, result.output
    settings = _settings(state, oauth_channel.id)
    assert settings["oauth_client_secret"] == oauth.client_secret
    assert settings["oauth_refresh_token"] == refresh_token
    assert oauth.user_of(settings["oauth_access_token"]) == SUPPORT


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"auth": "kerberos"}, "auth"),
        ({"oauth_provider": "yahoo"}, "oauth_provider"),
        ({"oauth_client_id": ""}, "oauth_client_id"),
        ({"oauth_refresh_token": None}, "oauth_refresh_token"),
        ({"oauth_token_url": "ftp://login.example.com/token"}, "oauth_token_url"),
        ({"oauth_token_url": "http://10.0.0.8/token"}, "oauth_token_url"),
        ({"oauth_scopes": ["https://mail.google.com/"]}, "oauth_scopes"),
    ],
)
def test_invalid_oauth_settings_are_rejected(state, changes, field):
    settings = {
        "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": SUPPORT,
        "smtp_host": "127.0.0.1", "smtp_port": 587, "smtp_security": "starttls", "smtp_username": SUPPORT,
        "auth": "oauth2", "oauth_provider": "google", "oauth_client_id": "id", "oauth_client_secret": "secret",
        "oauth_refresh_token": "rt", "oauth_token_url": "https://oauth2.googleapis.com/token",
        "oauth_scopes": "https://mail.google.com/",
    }
    settings.update(changes)

    with state.session_factory() as session, pytest.raises(InvalidInput) as raised:
        add_channel(session, "email", "Support", SUPPORT, settings)

    assert raised.value.field == field
