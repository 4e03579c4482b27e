"""The ``switchboard`` command line."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from gateway.config import Config, ConfigError
from gateway.server import make_server
from inbox.errors import InboxError

if TYPE_CHECKING:
    from channels.email.oauth import TokenGrant

log = logging.getLogger("switchboard")

# How much `switchboard worker` lowers its CPU priority by default. A response to a webhook
# within Twilio's timeout, and to an agent's click, matters more than how soon a batch is stored.
WORKER_NICENESS = 10


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Werkzeug's request log and APScheduler's job bookkeeping drown the service's own lines.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # The twilio SDK logs every request's headers at INFO, credentials included.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


def _load_config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


def _session_factory():
    """Return a session factory on an up-to-date database, or stop with a clear message."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from gateway.database import upgrade_database
    from inbox.db import make_engine, make_session_factory

    config = _load_config()
    try:
        engine = make_engine(config.database_url)
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        raise click.ClickException(
            f"SWITCHBOARD_DATABASE_URL is not usable: {error}. Use sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DB."
        ) from error
    if config.database_url.startswith("sqlite"):
        # The embedded database keeps itself current, wherever the command runs first.
        upgrade_database(engine)
    return make_session_factory(engine)


def _session():
    return _session_factory()()


@click.group()
def main() -> None:
    """Switchboard: WhatsApp and email in one live support inbox."""


# --- running -------------------------------------------------------------------------------


def _serve(with_workers: bool, host: str | None, port: int | None) -> None:
    from gateway import create_app, freeze_start_up_objects, get_state
    from gateway.database import upgrade_database
    from gateway.realtime import stop_presence
    from inbox.agents import count_agents

    config = _load_config()
    _configure_logging(config.log_level)
    host = host or config.host
    port = port or config.port
    _check_port_free(host, port)

    app = create_app(config)
    state = get_state(app)
    if config.database_url.startswith("sqlite"):
        upgrade_database(state.engine)  # the embedded setup keeps itself up to date
    # Werkzeug's server, with pooled threads, carries Socket.IO's WebSocket transport (simple-websocket).
    server = make_server(host, port, app)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())

    workers = None
    if with_workers:
        from gateway.workers import Workers

        workers = Workers(state)
        workers.start()

    with state.session_factory() as session:
        agents = count_agents(session)
    freeze_start_up_objects()
    click.echo(f"Switchboard is running at http://{host}:{server.server_port}/ (Ctrl+C stops it)")
    if agents == 0:
        click.echo(
            "No agent exists yet. Create the first one in another terminal:\n"
            "  .venv/bin/switchboard agent create --email you@example.com --name 'Your Name' --role admin"
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        stop_presence(app)
        if workers is not None:
            workers.stop()
        click.echo("Switchboard stopped.")


def _check_port_free(host: str, port: int) -> None:
    # Werkzeug exits the process on a busy port; checking first gives a message that says
    # what to do, before any worker starts.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise click.ClickException(
                f"Cannot listen on {host}:{port}: {error.strerror}. Stop the program using it, "
                "or choose another port with --port or SWITCHBOARD_PORT."
            ) from error


@main.command()
@click.option("--host", help="Address to listen on (default SWITCHBOARD_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default SWITCHBOARD_PORT or 5000).")
def run(host: str | None, port: int | None) -> None:
    """Run the web app and the background workers in one process."""
    _serve(with_workers=True, host=host, port=port)


@main.command()
@click.option("--host", help="Address to listen on.")
@click.option("--port", type=int, help="Port to listen on.")
def web(host: str | None, port: int | None) -> None:
    """Run only the web app (pair it with `switchboard worker`)."""
    _serve(with_workers=False, host=host, port=port)


@main.command()
@click.option(
    "--nice", "niceness", type=click.IntRange(0, 19), default=WORKER_NICENESS, show_default=True,
    envvar="SWITCHBOARD_WORKER_NICE",
    help="Lower this process's CPU priority by this much, so that web processes on the same host "
    "answer webhooks and agents first; 0 keeps it (also SWITCHBOARD_WORKER_NICE).",
)
def worker(niceness: int) -> None:
    """Run only the background workers: IMAP readers, outbox dispatcher, scheduler."""
    from gateway import create_app, freeze_start_up_objects, get_state
    from gateway.workers import Workers

    config = _load_config()
    _configure_logging(config.log_level)
    if niceness:
        os.nice(niceness)
    state = get_state(create_app(config))
    workers = Workers(state)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    workers.start()
    freeze_start_up_objects()
    click.echo("Switchboard worker running; Ctrl+C stops it.")
    # Python runs a signal handler only when the main thread executes bytecode, so it waits in
    # steps. NOTE: once, with an untimed wait here, SIGTERM went unhandled for 10 s (cause unconfirmed).
    while not stopped.wait(0.5):
        pass
    workers.stop()


# --- database ------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from gateway.database import upgrade_database
    from inbox.db import make_engine

    config = _load_config()
    _configure_logging(config.log_level)
    upgrade_database(make_engine(config.database_url))
    click.echo("Database is up to date.")


# --- agents --------------------------------------------------------------------------------


@main.group()
def agent() -> None:
    """Manage agents."""


@agent.command("create")
@click.option("--email", required=True, help="The agent's sign-in email address.")
@click.option("--name", required=True, help="The name colleagues and customers see.")
@click.option("--role", type=click.Choice(["agent", "manager", "admin"]), default="agent", show_default=True)
@click.option("--password", help="The password (at least 10 characters); asked for when omitted.")
def agent_create(email: str, name: str, role: str, password: str | None) -> None:
    """Create an agent who can sign in to the inbox."""
    from inbox.agents import add_agent, check_new_agent

    if password is None:
        # Checked first, so that a typo does not cost two password entries. The transaction
        # ends before the prompt, because on SQLite it holds the write lock.
        with _session() as session:
            try:
                check_new_agent(session, email, name, role)
            except InboxError as error:
                raise click.ClickException(error.message) from error
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _session() as session:
        try:
            created = add_agent(session, None, email, name, password, role)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        session.commit()
        click.echo(f"Created {created.role} {created.name} <{created.email}> (id {created.id}).")


@agent.command("password")
@click.option("--email", required=True, help="The agent whose password is set.")
@click.option("--password", help="The new password (at least 10 characters); asked for when omitted.")
def agent_password(email: str, password: str | None) -> None:
    """Set an agent's password; their open sessions end."""
    from inbox.agents import find_agent_by_email, set_password
    from inbox.audit import Action, record_audit

    if password is None:
        # Check the agent first, so a wrong email fails before the password is typed twice.
        with _session() as session:
            try:
                find_agent_by_email(session, email)
            except InboxError as error:
                raise click.ClickException(error.message) from error
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    with _session() as session:
        try:
            changed = set_password(session, email, password)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        record_audit(session, None, Action.PASSWORD_RESET, "agent", changed.id, changed.email,
                     {"method": "command_line"})
        session.commit()
        click.echo(f"Password of {changed.name} <{changed.email}> changed.")


@agent.command("token")
@click.option("--email", required=True, help="The agent the token acts as.")
@click.option("--name", default="api", show_default=True, help="A label for the token.")
def agent_token(email: str, name: str) -> None:
    """Create an API token (sent as `Authorization: Bearer <token>`)."""
    from inbox.agents import find_agent_by_email, issue_api_token

    with _session() as session:
        try:
            token, _ = issue_api_token(session, None, find_agent_by_email(session, email), name)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        session.commit()
    click.echo(token)


@agent.command("list")
def agent_list() -> None:
    """List every agent: email, name, role, whether active, and when last seen."""
    from inbox.agents import list_agents

    with _session() as session:
        rows = list_agents(session)
        if not rows:
            click.echo("No agents yet. Create one with `switchboard agent create`.")
            return
        click.echo("ID\tEMAIL\tNAME\tROLE\tSTATE\tLAST SEEN")
        for row in rows:
            state = "active" if row.is_active else "disabled"
            if row.is_active and row.must_change_password:
                state = "active (password change due)"
            seen = row.last_seen_at.isoformat(timespec="minutes") if row.last_seen_at else "never"
            click.echo(f"{row.id}\t{row.email}\t{row.name}\t{row.role}\t{state}\t{seen}")


@agent.command("disable")
@click.argument("email")
def agent_disable(email: str) -> None:
    """Disable an agent: their sign-ins end and their API tokens stop working."""
    _set_agent_active(email, False)


@agent.command("enable")
@click.argument("email")
def agent_enable(email: str) -> None:
    """Enable a disabled agent again; they sign in anew, and their API tokens work again."""
    _set_agent_active(email, True)


def _set_agent_active(email: str, active: bool) -> None:
    from inbox.agents import find_agent_by_email, set_agent_active

    with _session() as session:
        try:
            changed = set_agent_active(session, None, find_agent_by_email(session, email).id, active)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        session.commit()
        agent_id = changed.id
        click.echo(f"{changed.name} <{changed.email}> is {'enabled' if active else 'disabled'}.")
    if not active:
        _close_live_connections(agent_id)


def _close_live_connections(agent_id: int) -> None:
    """Request the running web processes to close a disabled agent's live connections, and print when they close."""
    from gateway.realtime import request_agent_recheck

    config = _load_config()
    later = f"within {config.socket_check_interval:g} seconds, at the service's next check of its connections"
    if not config.redis_url:
        click.echo(f"Their live connections close {later}.")
        return
    if request_agent_recheck(config.redis_url, agent_id) is None:
        click.echo(f"Redis at SWITCHBOARD_REDIS_URL could not be reached, so their live connections close {later}.",
                   err=True)
        return
    click.echo("Their live connections close now.")


# --- channels ------------------------------------------------------------------------------


@main.group()
def channel() -> None:
    """Manage channels."""


@channel.group("add")
def channel_add() -> None:
    """Add an email or WhatsApp channel."""


def _add_channel(kind: str, name: str, address: str, settings: dict[str, Any]) -> None:
    from gateway.channel_settings import webhook_url
    from inbox.audit import Action, record_audit
    from inbox.channel_config import add_channel

    with _session() as session:
        try:
            created = add_channel(session, kind, name, address, settings)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        details = {"kind": kind, "address": created.address}
        if settings.get("provider"):
            details["provider"] = settings["provider"]
        record_audit(session, None, Action.CHANNEL_ADDED, "channel", created.id, created.name, details)
        session.commit()
        click.echo(f"Added {kind} channel {created.id}: {created.name} <{created.address}>.")
        url = webhook_url(created, _load_config().public_url or "<your public URL>")
        if kind == "whatsapp" and settings.get("provider") == "meta":
            click.echo(
                f"In the Meta app's WhatsApp webhook configuration, enter the callback URL\n  {url}\n"
                "and the verify token you chose, then subscribe to the messages field."
            )
        elif kind == "whatsapp":
            click.echo(
                f"In the Twilio console, set the sender's incoming-message webhook (HTTP POST) to\n  {url}"
            )


@channel_add.command("email")
@click.option("--name", required=True, help="Shown to agents and as the sender name of replies.")
@click.option("--address", required=True, help="The mailbox's email address (replies come from it).")
@click.option("--imap-host", required=True, help="The IMAP server, e.g. imap.example.com.")
@click.option("--imap-port", type=click.IntRange(1, 65535), default=993, show_default=True)
@click.option("--imap-username", required=True, help="The mailbox's login name (with OAuth 2.0, its address).")
@click.option("--imap-password", help="Asked for when omitted and --auth is password.")
@click.option("--imap-ssl/--no-imap-ssl", default=True, show_default=True, help="Implicit TLS on connect.")
@click.option("--folder", "--imap-folder", "imap_folders", multiple=True,
              help="A folder to read; repeat for several (default INBOX). Each gets its own IMAP connection.")
@click.option("--sent-folder", help="Append a copy of each sent reply to this folder, e.g. Sent (default: no copy).")
@click.option("--smtp-host", required=True, help="The SMTP server, e.g. smtp.example.com.")
@click.option("--smtp-port", type=click.IntRange(1, 65535), default=587, show_default=True)
@click.option("--smtp-username", help="Defaults to the IMAP username; pass '' for a server without login.")
@click.option("--smtp-password", help="Defaults to the IMAP password.")
@click.option("--smtp-security", type=click.Choice(["starttls", "ssl", "none"]), default="starttls", show_default=True)
@click.option("--max-message-mb", type=click.IntRange(1, 1000), default=40, show_default=True,
              help="Larger messages are imported as header and a note only.")
@click.option("--max-attachment-mb", type=click.IntRange(1, 1000), default=30, show_default=True,
              help="Larger attachments are listed with their name and size but not stored.")
@click.option("--auth", type=click.Choice(["password", "oauth2"]), default="password", show_default=True,
              help="Sign in to IMAP and SMTP with passwords, or with OAuth 2.0 (XOAUTH2).")
@click.option("--oauth-provider", type=click.Choice(["google", "microsoft", "custom"]),
              help="With --auth oauth2: sets the token URL and scopes of Google or Microsoft 365.")
@click.option("--oauth-client-id", help="With --auth oauth2: the app registration's client id.")
@click.option("--oauth-token-url", help="With --auth oauth2: the token endpoint; replaces the provider's.")
@click.option("--oauth-scopes", help="With --auth oauth2: scopes separated by spaces; replace the provider's.")
def channel_add_email(**options: Any) -> None:
    """Add a mailbox: read over IMAP, reply over SMTP.

    With --auth oauth2 the client secret and the refresh token are read from the
    environment variables SWITCHBOARD_OAUTH_CLIENT_SECRET and SWITCHBOARD_OAUTH_REFRESH_TOKEN,
    or asked for, and checked with the token endpoint before the channel is added.
    """
    from inbox.agents import normalize_email
    from inbox.channel_config import check_email_address

    address = normalize_email(options.pop("address"))
    try:
        check_email_address(address)  # before any password prompt
    except InboxError as error:
        raise click.ClickException(error.message) from error
    name = options.pop("name")
    options["max_message_bytes"] = options.pop("max_message_mb") * 1_000_000
    options["max_attachment_bytes"] = options.pop("max_attachment_mb") * 1_000_000
    options["imap_folders"] = list(options["imap_folders"]) or ["INBOX"]
    if options["auth"] == "oauth2":
        _add_oauth_email(name, address, options)
        return
    for option in ("oauth_provider", "oauth_client_id", "oauth_token_url", "oauth_scopes"):
        if options.pop(option) is not None:
            raise click.UsageError(f"--{option.replace('_', '-')} needs --auth oauth2.")
    if options["imap_password"] is None:
        options["imap_password"] = click.prompt("IMAP password", hide_input=True)
    if options["smtp_username"] is None:
        options["smtp_username"] = options["imap_username"]
        options["smtp_password"] = options["smtp_password"] or options["imap_password"]
    elif options["smtp_username"] == "":
        options["smtp_password"] = None  # a relay that needs no login
    _add_channel("email", name, address, options)


OAUTH_CLIENT_SECRET_VARIABLE = "SWITCHBOARD_OAUTH_CLIENT_SECRET"
OAUTH_REFRESH_TOKEN_VARIABLE = "SWITCHBOARD_OAUTH_REFRESH_TOKEN"


def _add_oauth_email(name: str, address: str, options: dict[str, Any]) -> None:
    """Add an email channel that signs in with OAuth 2.0, after a successful token refresh."""
    from channels.email.oauth import PROVIDERS
    from inbox.channel_config import validate_channel

    for option in ("imap_password", "smtp_password"):
        if options[option] is not None:
            raise click.UsageError(f"--{option.replace('_', '-')} is not used with --auth oauth2.")
    provider = options["oauth_provider"]
    if provider is None:
        raise click.UsageError("--auth oauth2 needs --oauth-provider google, microsoft or custom.")
    if options["oauth_client_id"] is None:
        raise click.UsageError("--auth oauth2 needs --oauth-client-id.")
    preset = PROVIDERS.get(provider)
    if preset is None and options["oauth_token_url"] is None:
        raise click.UsageError("--oauth-provider custom needs --oauth-token-url.")
    if options["oauth_token_url"] is None:
        options["oauth_token_url"] = preset.token_url
    if options["oauth_scopes"] is None:
        options["oauth_scopes"] = " ".join(preset.scopes) if preset else ""
    if options["smtp_username"] is None:
        options["smtp_username"] = options["imap_username"]
    del options["imap_password"], options["smtp_password"]

    options["oauth_client_secret"] = _read_secret(
        OAUTH_CLIENT_SECRET_VARIABLE, "OAuth client secret (empty for a public client)", allow_empty=True
    )
    options["oauth_refresh_token"] = _read_secret(OAUTH_REFRESH_TOKEN_VARIABLE, "OAuth refresh token")
    try:
        validate_channel("email", address, options)
    except InboxError as error:
        raise click.ClickException(error.message) from error
    grant = _check_oauth_credentials(options)
    options["oauth_refresh_token"] = grant.refresh_token or options["oauth_refresh_token"]
    options["oauth_access_token"] = grant.access_token
    options["oauth_access_token_expires_at"] = grant.expires_at.isoformat()
    _add_channel("email", name, address, options)


def _read_secret(variable: str, prompt: str, *, allow_empty: bool = False) -> str:
    """Return a secret from an environment variable, or ask for it without echo."""
    value = os.environ.get(variable)
    if value is None:
        value = click.prompt(prompt, hide_input=True, default="" if allow_empty else None, show_default=False)
    return value.strip()


def _check_oauth_credentials(settings: dict[str, Any]) -> TokenGrant:
    """Refresh once with the credentials in ``settings``, so a wrong value is reported now."""
    from channels.email.oauth import OAuthError, refresh_access_token
    from gateway.channel_settings import oauth_client

    try:
        return refresh_access_token(oauth_client(settings), settings["oauth_refresh_token"])
    except OAuthError as error:
        raise click.ClickException(f"The OAuth 2.0 credentials did not work: {error}.") from error


@channel.command("reauthorize")
@click.argument("channel_id", type=int)
@click.option("--oauth-client-id", help="Replace the stored client id.")
@click.option("--replace-client-secret", is_flag=True,
              help=f"Replace the client secret too (from {OAUTH_CLIENT_SECRET_VARIABLE} or asked for).")
def channel_reauthorize(channel_id: int, oauth_client_id: str | None, replace_client_secret: bool) -> None:
    """Store a new OAuth 2.0 refresh token or client for an email channel.

    The refresh token is read from SWITCHBOARD_OAUTH_REFRESH_TOKEN or asked for; empty
    keeps the stored one. The new credentials are checked with the token endpoint before
    they replace the stored ones.
    """
    from gateway.workers import RECONNECT_BACKOFF_MAX
    from inbox.channel_config import update_oauth_credentials
    from inbox.models import Channel

    session_factory = _session_factory()
    with session_factory() as session:
        found = session.get(Channel, channel_id)
        if found is None:
            raise click.ClickException(f"Channel {channel_id} not found.")
        if found.kind != "email" or found.settings.get("auth") != "oauth2":
            raise click.ClickException(f"Channel {channel_id} ({found.name}) does not sign in with OAuth 2.0.")
        settings = dict(found.settings)

    client_secret = None
    if replace_client_secret or OAUTH_CLIENT_SECRET_VARIABLE in os.environ:
        client_secret = _read_secret(
            OAUTH_CLIENT_SECRET_VARIABLE, "New OAuth client secret (empty for a public client)", allow_empty=True
        )
        settings["oauth_client_secret"] = client_secret
    if oauth_client_id is not None:
        settings["oauth_client_id"] = oauth_client_id
    refresh_token = _read_secret(
        OAUTH_REFRESH_TOKEN_VARIABLE, "New OAuth refresh token (empty keeps the stored one)", allow_empty=True
    )
    if refresh_token:
        settings["oauth_refresh_token"] = refresh_token
    grant = _check_oauth_credentials(settings)

    with session_factory() as session:
        _audit_at_commit(session, channel_id, oauth_client_id, client_secret)
        try:
            changed = update_oauth_credentials(
                session, channel_id,
                refresh_token=grant.refresh_token or settings["oauth_refresh_token"],
                access_token=grant.access_token,
                expires_at=grant.expires_at,
                client_id=oauth_client_id,
                client_secret=client_secret,
            )
        except InboxError as error:
            raise click.ClickException(error.message) from error
    click.echo(
        f"Channel {changed.id} ({changed.name}): the token endpoint accepted the credentials. The "
        f"mailbox reader signs in with them at its next retry, within {RECONNECT_BACKOFF_MAX / 60:.0f} minutes."
    )


def _audit_at_commit(session: Any, channel_id: int, client_id: str | None, client_secret: str | None) -> None:
    """Log a reauthorization in the transaction that ``update_oauth_credentials`` commits itself."""
    from sqlalchemy import event

    from inbox.audit import Action, record_audit
    from inbox.models import Channel

    changed = ["oauth_refresh_token", "oauth_access_token"]
    if client_id is not None:
        changed.append("oauth_client_id")
    if client_secret is not None:
        changed.append("oauth_client_secret")

    @event.listens_for(session, "before_commit", once=True)
    def add_audit_row(committing: Any) -> None:
        channel = committing.get(Channel, channel_id)
        record_audit(committing, None, Action.CHANNEL_CHANGED, "channel", channel_id,
                     channel.name if channel is not None else None,
                     {key: {"changed": True} for key in changed} | {"reauthorized": True})


@channel_add.command("whatsapp")
@click.option("--name", required=True, help="Shown to agents.")
@click.option("--number", required=True, help="The WhatsApp sender number in E.164, e.g. +14155238886.")
@click.option("--provider", type=click.Choice(["twilio", "meta"]), default="twilio", show_default=True,
              help="Twilio, or Meta's WhatsApp Cloud API.")
@click.option("--account-sid", help="Twilio: the Account SID (AC...).")
@click.option("--auth-token", help="Twilio: the auth token; asked for when omitted.")
@click.option("--phone-number-id", help="Meta: the phone number ID from the app's WhatsApp API setup.")
@click.option("--verify-token", help="Meta: a string you choose and also enter in the app's webhook settings.")
@click.option("--api-version", help="Meta: the Graph API version, e.g. v23.0 (default: Switchboard's).")
def channel_add_whatsapp(
    name: str,
    number: str,
    provider: str,
    account_sid: str | None,
    auth_token: str | None,
    phone_number_id: str | None,
    verify_token: str | None,
    api_version: str | None,
) -> None:
    """Add a WhatsApp sender through Twilio or Meta's WhatsApp Cloud API.

    For Meta, the app secret and access token come from SWITCHBOARD_META_APP_SECRET and
    SWITCHBOARD_META_ACCESS_TOKEN, or are asked for, so they stay out of the shell history.
    """
    from channels.errors import ParseError
    from channels.whatsapp import normalize_phone

    try:
        number = normalize_phone(number)
    except ParseError as error:
        raise click.ClickException(f"--number: {error}") from error
    if provider == "meta":
        settings = _meta_settings(account_sid, auth_token, phone_number_id, verify_token, api_version)
    else:
        settings = _twilio_settings(account_sid, auth_token, phone_number_id, verify_token, api_version)
    _add_channel("whatsapp", name, number, settings)


def _twilio_settings(
    account_sid: str | None, auth_token: str | None, *meta_options: str | None
) -> dict[str, Any]:
    if any(option is not None for option in meta_options):
        raise click.ClickException(
            "--phone-number-id, --verify-token and --api-version apply to --provider meta only."
        )
    if account_sid is None:
        raise click.ClickException("--account-sid is required for a Twilio channel.")
    if auth_token is None:
        auth_token = click.prompt("Auth token", hide_input=True)
    return {"account_sid": account_sid, "auth_token": auth_token}


def _meta_settings(
    account_sid: str | None,
    auth_token: str | None,
    phone_number_id: str | None,
    verify_token: str | None,
    api_version: str | None,
) -> dict[str, Any]:
    import os

    from gateway.config import META_ACCESS_TOKEN_VARIABLE, META_APP_SECRET_VARIABLE

    if account_sid is not None or auth_token is not None:
        raise click.ClickException("--account-sid and --auth-token apply to --provider twilio only.")
    if phone_number_id is None:
        raise click.ClickException("--phone-number-id is required with --provider meta.")
    if verify_token is None:
        raise click.ClickException("--verify-token is required with --provider meta.")
    app_secret = os.environ.get(META_APP_SECRET_VARIABLE) or click.prompt("Meta app secret", hide_input=True)
    access_token = os.environ.get(META_ACCESS_TOKEN_VARIABLE) or click.prompt("Meta access token", hide_input=True)
    settings = {
        "provider": "meta",
        "phone_number_id": phone_number_id.strip(),
        "verify_token": verify_token,
        "app_secret": app_secret.strip(),
        "access_token": access_token.strip(),
    }
    if api_version is not None:
        settings["api_version"] = api_version.strip()
    return settings


@channel.command("list")
def channel_list() -> None:
    """List the channels and their health, inbound and outbound.

    MAILBOX is "ok" or the last error of an email channel's mailbox or sign-in. FAILED SEND
    ATTEMPTS 24H counts the send attempts a provider rejected or could not be reached for,
    and the sent messages it reported failed, in the last 24 hours. LAST SEND FAILURE is the
    latest of those within 30 days: its time, provider error code and message.
    """
    from inbox.channel_config import list_channels
    from inbox.send_failures import send_failure_summaries

    with _session() as session:
        rows = list_channels(session)
        if not rows:
            click.echo("No channels yet. Add one with `switchboard channel add email|whatsapp`.")
            return
        failures = send_failure_summaries(session, [row.id for row in rows])
        click.echo("ID\tKIND\tSTATE\tNAME\tADDRESS\tLAST MAILBOX SYNC\tMAILBOX\tFAILED SEND ATTEMPTS 24H\tLAST SEND FAILURE")
        for row in rows:
            health = f"error: {row.last_error}" if row.last_error else "ok"
            if row.kind != "email":
                # WhatsApp messages arrive by webhook: there is no mailbox to sync or check.
                synced = health = "-"
            else:
                synced = row.last_sync_at.isoformat(timespec="seconds") if row.last_sync_at else "never"
            state = "enabled" if row.is_active else "disabled"
            sends = failures[row.id]
            last_failure = "-"
            if sends.last_failed_at is not None:
                code = f"error {sends.last_error_code}: " if sends.last_error_code else ""
                message = " ".join((sends.last_error_message or "").split())[:200]
                last_failure = f"{sends.last_failed_at.isoformat(timespec='seconds')} {code}{message}"
            click.echo(
                f"{row.id}\t{row.kind}\t{state}\t{row.name}\t{row.address}\t{synced}\t{health}"
                f"\t{sends.failed_last_24h}\t{last_failure}"
            )


@channel.command("disable")
@click.argument("channel_id", type=int)
def channel_disable(channel_id: int) -> None:
    """Take a channel out of service; its conversations and messages stay.

    A disabled channel receives nothing: its mailbox is not read, and its webhooks reject
    customer messages with HTTP 503. New replies through it are rejected, and replies queued
    before wait until it is enabled again.
    """
    _set_channel_active(channel_id, False)


@channel.command("enable")
@click.argument("channel_id", type=int)
def channel_enable(channel_id: int) -> None:
    """Put a disabled channel back in service; its queued replies go out."""
    _set_channel_active(channel_id, True)


@channel.command("rename")
@click.argument("channel_id", type=int)
@click.argument("name")
def channel_rename(channel_id: int, name: str) -> None:
    """Give a channel a new NAME, the one agents see. Names need not be unique."""
    from inbox.audit import Action, record_audit
    from inbox.channel_config import rename_channel

    with _session() as session:
        try:
            changed, previous = rename_channel(session, channel_id, name)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        if changed.name != previous:
            record_audit(session, None, Action.CHANNEL_CHANGED, "channel", changed.id, changed.name,
                         {"name": {"from": previous, "to": changed.name}})
        session.commit()
        click.echo(f"Channel {changed.id} ({previous}) is now called {changed.name}.")


_CHANNEL_SET_KEYS = """\b
Keys by kind of channel:
  every channel:   address (the mailbox's address or the WhatsApp number)
  email:           imap_host imap_port imap_username imap_password imap_ssl
                   smtp_host smtp_port smtp_username smtp_password smtp_security
                   max_message_bytes max_attachment_bytes reopen_window_days
                   oauth_client_secret oauth_refresh_token oauth_access_token
  whatsapp twilio: account_sid auth_token
  whatsapp meta:   phone_number_id app_secret access_token verify_token api_version waba_id
Folders change on the Channels page or with PATCH /api/v1/channels/ID, the name with
`switchboard channel rename`. A channel's kind and provider do not change."""


@channel.command("set", epilog=_CHANNEL_SET_KEYS)
@click.argument("channel_id", type=int)
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def channel_set(channel_id: int, assignments: tuple[str, ...]) -> None:
    """Change settings of a channel, e.g. imap_password=- smtp_port=465 smtp_security=ssl.

    A value of - prompts for it without echo (for passwords and tokens). An empty value
    removes an optional setting. Running workers pick the change up within about a minute, and
    a mailbox reader waiting to reconnect after an error, such as a wrong password, within 5 s.
    """
    from gateway.channel_settings import channel_snapshot, normalize_address
    from inbox.audit import Action, record_audit, setting_changes
    from inbox.channel_config import SECRET_SETTINGS, public_settings, update_channel_settings
    from inbox.models import Channel

    changes: dict[str, str] = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator or not key:
            raise click.ClickException(f"{assignment!r} is not KEY=VALUE, e.g. smtp_port=587.")
        if value == "-":
            label = key.replace("_", " ").replace("imap", "IMAP").replace("smtp", "SMTP")
            value = click.prompt(label[0].upper() + label[1:], hide_input=True)
        changes[key] = value
    with _session() as session:
        found = session.get(Channel, channel_id)
        before = channel_snapshot(found) if found is not None else {}
        try:
            if found is not None and "address" in changes:
                changes["address"] = normalize_address(found.kind, changes["address"])
            changed = update_channel_settings(session, channel_id, changes)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        audited = setting_changes(before, channel_snapshot(changed))
        if audited:
            record_audit(session, None, Action.CHANNEL_CHANGED, "channel", changed.id, changed.name, audited)
        session.commit()
        shown = {**public_settings(changed), "address": changed.address}
        for key in changes:
            value = "(hidden)" if key in SECRET_SETTINGS else shown.get(key, "(removed)")
            click.echo(f"{key} = {value}")
        click.echo(f"Channel {changed.id} ({changed.name}) updated.")


def _set_channel_active(channel_id: int, active: bool) -> None:
    from gateway.channel_settings import set_channel_active_audited

    with _session() as session:
        try:
            changed = set_channel_active_audited(session, None, channel_id, active)
        except InboxError as error:
            raise click.ClickException(error.message) from error
        session.commit()
        click.echo(f"Channel {changed.id} ({changed.name}) is {'enabled' if active else 'disabled'}.")


@main.group()
def payloads() -> None:
    """List inbound payloads that could not be imported, and import them again."""


@payloads.command("list")
@click.option("--status", type=click.Choice(["failed", "pending"]), default="failed", show_default=True,
              help="failed: could not be parsed or stored; pending: waiting for a worker.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def payloads_list(status: str, limit: int) -> None:
    """List stored inbound payloads, newest first, with the error of each failed one."""
    from sqlalchemy import select

    from inbox.models import RawPayload

    with _session() as session:
        rows = session.scalars(
            select(RawPayload).where(RawPayload.status == status).order_by(RawPayload.id.desc()).limit(limit)
        ).all()
        if not rows:
            click.echo(f"No {status} payloads.")
            return
        click.echo("ID\tCHANNEL\tFORMAT\tRECEIVED\tBYTES\tERROR")
        for row in rows:
            error = " ".join((row.error or "-").split())[:300]
            received = row.received_at.isoformat(timespec="seconds")
            click.echo(f"{row.id}\t{row.channel_id}\t{row.format}\t{received}\t{len(row.body)}\t{error}")


@payloads.command("reprocess")
@click.argument("payload_id", type=int)
def payloads_reprocess(payload_id: int) -> None:
    """Parse a failed payload again and import it, for example after an upgrade fixed its cause."""
    from gateway.reprocess import reprocess_payload

    try:
        result = reprocess_payload(_session_factory(), payload_id)
    except InboxError as error:
        raise click.ClickException(error.message) from error
    if result["message_id"] is None:
        click.echo(f"Payload {payload_id} is a status callback and is queued for the worker again.")
    elif result["duplicate"]:
        click.echo(f"Payload {payload_id} was already imported as message {result['message_id']}.")
    else:
        click.echo(
            f"Payload {payload_id} imported as message {result['message_id']}"
            f" in conversation {result['conversation_id']}."
        )


# --- reports -------------------------------------------------------------------------------


@main.group()
def report() -> None:
    """Print the backlog, trend and satisfaction reports that managers see at /reports."""


@report.command("backlog")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True,
              help="How many of the longest-waiting conversations to list.")
def report_backlog(limit: int) -> None:
    """Print the open, pending and snoozed conversations by status, priority, channel, team and wait."""
    from inbox.models import utcnow
    from inbox.reports import backlog_report

    with _session() as session:
        backlog = backlog_report(session, utcnow(), limit)
    click.echo(f"Backlog at {backlog.generated_at.isoformat(timespec='seconds')}: "
               f"{backlog.total} conversations (open, pending or snoozed), {backlog.unassigned} unassigned")
    sections = [
        ("STATUS", backlog.by_status), ("PRIORITY", backlog.by_priority), ("WAIT", backlog.by_age),
        ("CHANNEL", backlog.by_channel), ("TEAM", backlog.by_team),
    ]
    for title, rows in sections:
        if not rows:
            continue
        click.echo(f"\n{title}\tIN BACKLOG")
        for row in rows:
            click.echo(f"{row.label}\t{row.count}")
    if backlog.oldest:
        click.echo("\nID\tWAITING SINCE\tSTATUS\tPRIORITY\tCHANNEL\tTEAM\tASSIGNEE\tCONTACT")
        for row in backlog.oldest:
            click.echo(
                f"{row.id}\t{row.waiting_since.isoformat(timespec='seconds')}\t{row.status}\t{row.priority}"
                f"\t{row.channel}\t{row.team or '-'}\t{row.assignee or '-'}\t{row.contact}"
            )


def _range_options(command):
    """Add the options that choose a report's days: --days, or --from and --to."""
    command = click.option("--to", "last", help="The last day, included (default today).")(command)
    command = click.option("--from", "first", help="The first day, such as 2026-01-31.")(command)
    return click.option("--days", help="Days counted back from today, today included (1 to 90, default 14).")(command)


@report.command("trend")
@_range_options
def report_trend(days: str | None, first: str | None, last: str | None) -> None:
    """Print per day: created, resolved, open at the end, and first response times in seconds.

    Days are those of SWITCHBOARD_TIME_ZONE (UTC by default).
    """
    from inbox.reports import trend_report

    first_day, last_day, zone = _report_range(days, first, last)
    with _session() as session:
        trend = trend_report(session, first_day, last_day, zone)
    click.echo(f"Days in {trend.time_zone}")
    click.echo("DATE\tCREATED\tRESOLVED\tOPEN AT END\tFIRST RESPONSES\tMEDIAN FIRST RESPONSE S\tP90 FIRST RESPONSE S")
    for day in trend.to_dict()["days"]:
        median = day["median_first_response_seconds"]
        p90 = day["p90_first_response_seconds"]
        click.echo(
            f"{day['date']}\t{day['created']}\t{day['resolved']}\t{day['open_at_end']}\t{day['first_responses']}"
            f"\t{'-' if median is None else median}\t{'-' if p90 is None else p90}"
        )


@report.command("satisfaction")
@_range_options
def report_satisfaction(days: str | None, first: str | None, last: str | None) -> None:
    """Print the customers' answers to the satisfaction question, in all and per agent.

    Days are those of SWITCHBOARD_TIME_ZONE (UTC by default).
    """
    from inbox.satisfaction_report import satisfaction_report

    first_day, last_day, zone = _report_range(days, first, last)
    with _session() as session:
        report = satisfaction_report(session, first_day, last_day, zone)
    click.echo(f"Answers from {report.first_day} to {report.last_day}, days in {report.time_zone}")
    click.echo("AGENT\tRATINGS\tAVERAGE RATING\tYES OR NO ANSWERS\tANSWERED YES %")
    for name, answers in [*((row.name, row.answers) for row in report.by_agent), ("All agents", report.total)]:
        average = answers.format_average_rating() or "-"
        share = "-" if answers.yes_share is None else f"{100 * answers.yes_share:.0f}"
        click.echo(f"{name}\t{answers.ratings}\t{average}\t{answers.yes + answers.no}\t{share}")
    spread = "  ".join(f"{score}: {count}" for score, count in sorted(report.total.by_score.items(), reverse=True))
    click.echo(f"Ratings by score: {spread}")


def _report_range(days: str | None, first: str | None, last: str | None):
    """Return the first and last day of a report's range and the workspace's zone, or stop with the error."""
    from inbox.models import utcnow
    from inbox.proactive.quiet_hours import zone_or_none
    from inbox.reports import parse_trend_range

    config = _load_config()
    zone = zone_or_none(config.time_zone)
    if zone is None:
        raise click.ClickException(f"SWITCHBOARD_TIME_ZONE={config.time_zone!r} is invalid; give an IANA name such as Europe/Berlin.")
    args = {name: value for name, value in (("days", days), ("from", first), ("to", last)) if value is not None}
    try:
        first_day, last_day = parse_trend_range(args, utcnow().astimezone(zone).date())
    except InboxError as error:
        raise click.ClickException(error.message) from error
    return first_day, last_day, zone


# --- trying it out -------------------------------------------------------------------------


@main.group()
def attachments() -> None:
    """Look after the attachment folder."""


@attachments.command("prune")
@click.option("--min-age-hours", type=click.IntRange(1, None), default=24, show_default=True,
              help="Only files older than this are removed, so a mail being imported keeps its files.")
@click.option("--dry-run", is_flag=True, help="List the files without removing them.")
def attachments_prune(min_age_hours: int, dry_run: bool) -> None:
    """Remove attachment files that no message refers to (left by a rolled-back import)."""
    import time
    from pathlib import Path

    from sqlalchemy import select

    from inbox.models import Attachment
    from inbox.storage import AttachmentStore

    config = _load_config()
    store = AttachmentStore(config.attachments_dir or Path(config.instance_dir) / "attachments")
    with _session() as session:
        referenced = set(session.scalars(select(Attachment.storage_key).where(Attachment.storage_key.is_not(None))))
    cutoff = time.time() - min_age_hours * 3600
    removed = 0
    for key in store.unreferenced(referenced):
        path = store.path(key)
        if path.stat().st_mtime > cutoff or _attachment_key_in_use(key):
            continue  # recent, or referenced by a message stored since the listing
        click.echo(f"{'would remove' if dry_run else 'removing'} {path}")
        if not dry_run:
            path.unlink(missing_ok=True)
        removed += 1
    click.echo(f"{removed} unreferenced file(s) {'found' if dry_run else 'removed'} in {store.root}.")


def _attachment_key_in_use(key: str) -> bool:
    from sqlalchemy import select

    from inbox.models import Attachment

    with _session() as session:
        return session.scalar(select(Attachment.id).where(Attachment.storage_key == key).limit(1)) is not None


@main.group()
def simulate() -> None:
    """Send test traffic to a running Switchboard."""


@simulate.command("whatsapp")
@click.option("--from", "sender", required=True, help="The customer's number, e.g. +15551230000.")
@click.option("--name", "profile_name", default=None, help="The customer's WhatsApp profile name.")
@click.option("--channel", "channel_id", type=int, help="The WhatsApp channel id (default: the first one).")
@click.option("--url", default=None, help="The running service (default http://SWITCHBOARD_HOST:SWITCHBOARD_PORT).")
@click.argument("text")
def simulate_whatsapp(sender: str, profile_name: str | None, channel_id: int | None, url: str | None, text: str) -> None:
    """Post a correctly signed webhook carrying TEXT, as if a customer wrote it.

    The webhook has the channel's provider's shape: Twilio's form signed with the auth token,
    or Meta's Cloud API JSON signed with the app secret.
    """
    from gateway.simulate import SimulationError, send_simulated_whatsapp

    config = _load_config()
    base_url = url or f"http://{config.host}:{config.port}"
    try:
        outcome = send_simulated_whatsapp(
            _session_factory(), config, base_url, sender, text, channel_id, profile_name
        )
    except SimulationError as error:
        raise click.ClickException(str(error)) from error
    click.echo(outcome)


@simulate.command("email")
@click.option("--from", "sender", required=True, help="The customer's address, e.g. grace@example.com.")
@click.option("--name", default=None, help="The customer's display name.")
@click.option("--subject", default="Test message", show_default=True, help="The mail's subject.")
@click.option("--channel", "channel_id", type=int, help="The email channel id (default: the first one).")
@click.argument("text")
def simulate_email(sender: str, name: str | None, subject: str, channel_id: int | None, text: str) -> None:
    """Put a mail carrying TEXT into the channel's mailbox, as if a customer sent it.

    The mail is appended over IMAP with the channel's own settings, so this also checks
    them. The running service's mailbox reader imports it like any new mail.
    """
    from gateway.simulate import SimulationError, deliver_simulated_email

    try:
        outcome = deliver_simulated_email(_session_factory(), sender, text, channel_id, name, subject)
    except SimulationError as error:
        raise click.ClickException(str(error)) from error
    click.echo(outcome)


if __name__ == "__main__":
    sys.exit(main())
