"""Provider settings of a channel: from CLI options to the stored JSON, and back to the
settings objects that ``channels`` adapters take. Also the admin's channels page and the
API route that changes an email channel's folders, with the health both show. The page
also sets each channel's default team, the team whose queue takes its new conversations,
and lets admins rename a channel, disable or enable it, and change its connection settings
and credentials (see "editing a channel" below).

An email channel that signs in with OAuth 2.0 keeps its refresh token and its latest access
token (with the expiry) in its settings. ``ChannelTokens`` hands that access token to the
IMAP reader and the SMTP sender of every process, and refreshes it when it is about to
expire or a server rejected it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session, sessionmaker

from channels.email.imap import ImapSettings
from channels.email.oauth import (
    OAuthClient,
    OAuthError,
    OAuthGrantError,
    TokenGrant,
    is_fresh,
    refresh_access_token,
)
from channels.email.smtp import SmtpSettings
from channels.errors import ParseError
from channels.whatsapp import TwilioSettings, normalize_phone
from channels.whatsapp.meta import DEFAULT_API_BASE_URL, DEFAULT_API_VERSION, MetaSettings
from gateway.admin_api import error_status
from gateway.auth import current_agent, db, error_response, require_role
from gateway.config import Config
from gateway.pages import page_role
from inbox.agents import normalize_email
from inbox.audit import Action, record_audit, setting_changes
from inbox.channel_config import (
    SECRET_SETTINGS,
    email_folders,
    list_channels,
    public_settings,
    rename_channel,
    sent_folder,
    set_channel_active,
    store_oauth_tokens,
    update_channel_settings,
    update_email_folders,
    whatsapp_provider,
)
from inbox.errors import InboxError, InvalidInput, NotFound
from inbox.mailboxes import folder_states, record_channel_error
from inbox.models import Channel, MailboxCheckpoint, Role, utcnow
from inbox.send_failures import SendFailureSummary, send_failure_summaries
from inbox.serialize import isoformat
from inbox.teams import list_teams, set_channel_default_team_audited

log = logging.getLogger(__name__)

SMTP_SECURITY = ("starttls", "ssl", "none")

blueprint = Blueprint("channel_settings", __name__)


def imap_settings(
    channel: Channel, tokens: ChannelTokens | None = None, *, folder: str | None = None
) -> ImapSettings:
    """Return the reader's settings for ``folder``, by default the channel's first folder.

    ``tokens`` is required for a channel using OAuth 2.0.
    """
    return mailbox_settings(channel.settings, tokens, folder=folder)


def mailbox_settings(
    settings: Mapping[str, Any], tokens: ChannelTokens | None = None, *, folder: str | None = None
) -> ImapSettings:
    """Return IMAP settings from a channel's stored settings, like ``imap_settings``."""
    return ImapSettings(
        host=settings["imap_host"],
        port=int(settings["imap_port"]),
        username=settings["imap_username"],
        password=settings.get("imap_password") or "",
        oauth2_tokens=_required_tokens(dict(settings), tokens),
        use_ssl=bool(settings.get("imap_ssl", True)),
        folder=folder or email_folders(dict(settings))[0],
        **({"max_message_bytes": int(settings["max_message_bytes"])} if settings.get("max_message_bytes") else {}),
    )


def smtp_settings(
    channel_name: str, address: str, settings: dict[str, Any], tokens: ChannelTokens | None = None
) -> SmtpSettings:
    """Return the sender's settings; ``tokens`` is required for a channel using OAuth 2.0."""
    return SmtpSettings(
        host=settings["smtp_host"],
        port=int(settings["smtp_port"]),
        username=settings.get("smtp_username") or None,
        password=settings.get("smtp_password") or None,
        security=settings.get("smtp_security", "starttls"),
        from_address=address,
        from_name=channel_name,
        oauth2_tokens=_required_tokens(settings, tokens),
    )


def twilio_settings(address: str, settings: dict[str, Any], config: Config) -> TwilioSettings:
    return TwilioSettings(
        account_sid=settings["account_sid"],
        auth_token=settings["auth_token"],
        from_number=address,
        api_base_url=config.twilio_api_base_url,
    )


def uses_oauth(settings: dict[str, Any]) -> bool:
    return settings.get("auth") == "oauth2"


def channel_tokens(
    session_factory: sessionmaker[Session], channel_id: int, settings: dict[str, Any]
) -> ChannelTokens | None:
    """Return the token source of a channel that signs in with OAuth 2.0, else None."""
    return ChannelTokens(session_factory, channel_id) if uses_oauth(settings) else None


def _required_tokens(settings: dict[str, Any], tokens: ChannelTokens | None) -> ChannelTokens | None:
    if not uses_oauth(settings):
        return None
    if tokens is None:
        raise ValueError("this channel signs in with OAuth 2.0: pass its ChannelTokens")
    return tokens


def oauth_client(settings: dict[str, Any]) -> OAuthClient:
    """Return the app registration stored in an OAuth 2.0 channel's settings."""
    return OAuthClient(
        token_url=settings["oauth_token_url"],
        client_id=settings["oauth_client_id"],
        client_secret=settings.get("oauth_client_secret") or "",
        scopes=tuple((settings.get("oauth_scopes") or "").split()),
    )


class ChannelTokens:
    """The access tokens of one OAuth 2.0 email channel, cached in its stored settings.

    Every reader and sender, in any process, reads the cached token from the database, so
    one refresh serves all of them. Each database session ends before the HTTP call to the
    token endpoint. A refresh failure that needs an admin is stored as the channel's error.
    ``clock`` exists for tests that move time.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        channel_id: int,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.session_factory = session_factory
        self.channel_id = channel_id
        self.clock = clock

    def __repr__(self) -> str:
        return f"ChannelTokens(channel_id={self.channel_id})"

    def access_token(self) -> str:
        """Return the cached access token, or a new one when it expires within a minute."""
        settings = self._load()
        if _fresh_token(settings, self.clock()):
            return settings["oauth_access_token"]
        with _refresh_lock(self.channel_id):
            settings = self._load()  # another thread may have refreshed while this one waited
            if _fresh_token(settings, self.clock()):
                return settings["oauth_access_token"]
            return self._refresh(settings)

    def renew_access_token(self, rejected: str) -> str:
        """Return a new access token in place of ``rejected``, which a server refused."""
        with _refresh_lock(self.channel_id):
            settings = self._load()
            if settings.get("oauth_access_token") != rejected and _fresh_token(settings, self.clock()):
                return settings["oauth_access_token"]
            return self._refresh(settings)

    def _refresh(self, settings: dict[str, Any]) -> str:
        """Refresh with the stored refresh token and store the result.

        When the token endpoint rejects the refresh token, the stored one is read again: if
        another process rotated it or an admin replaced it meanwhile, the new one is tried.
        """
        for _ in range(3):
            used = settings["oauth_refresh_token"]
            try:
                grant = refresh_access_token(oauth_client(settings), used, now=self.clock())
            except OAuthGrantError as error:
                latest = self._load()
                if latest.get("oauth_refresh_token") not in (None, used):
                    settings = latest
                    continue
                raise self._grant_failed(error) from error
            self._store(used, grant)
            return grant.access_token
        raise self._grant_failed(OAuthGrantError("the refresh token kept changing while it was used"))

    def _store(self, used: str, grant: TokenGrant) -> None:
        with self.session_factory() as session:
            stored = store_oauth_tokens(
                session, self.channel_id, used, grant.access_token, grant.expires_at, grant.refresh_token
            )
        if grant.refresh_token:
            log.info("channel %s: the token endpoint rotated the refresh token", self.channel_id)
        if not stored:
            log.info(
                "channel %s: the refresh token changed during the refresh, so the stored one is kept",
                self.channel_id,
            )

    def _grant_failed(self, error: OAuthGrantError) -> OAuthGrantError:
        """Store the error for the admin, with the command that fixes it, and return it."""
        message = (
            f"OAuth 2.0 sign-in failed: {error}. Authorize Switchboard for this mailbox again and "
            f"store the new refresh token with `switchboard channel reauthorize {self.channel_id}`, "
            "which also replaces a wrong client id or secret."
        )
        log.warning("channel %s: %s", self.channel_id, message)
        with self.session_factory() as session:
            record_channel_error(session, self.channel_id, message)
        return OAuthGrantError(message)

    def _load(self) -> dict[str, Any]:
        with self.session_factory() as session:
            channel = session.get(Channel, self.channel_id)
            if channel is None:
                raise OAuthError(f"channel {self.channel_id} not found", transient=False)
            return dict(channel.settings or {})


def _fresh_token(settings: dict[str, Any], now: datetime) -> bool:
    expires_at = settings.get("oauth_access_token_expires_at")
    if not settings.get("oauth_access_token") or not expires_at:
        return False
    return is_fresh(datetime.fromisoformat(expires_at), now)


# One refresh per channel at a time in this process, so the reader and the sender do not
# both spend a refresh token. Across processes, store_oauth_tokens stores only the first
# result for a refresh token, and ChannelTokens._refresh retries with a rotated one.
_refresh_locks: dict[int, threading.Lock] = {}
_refresh_locks_guard = threading.Lock()


def _refresh_lock(channel_id: int) -> threading.Lock:
    with _refresh_locks_guard:
        return _refresh_locks.setdefault(channel_id, threading.Lock())


def meta_settings(settings: dict[str, Any], config: Config) -> MetaSettings:
    """Return a Meta channel's send settings. Its own api_base_url wins over the service's."""
    return MetaSettings(
        phone_number_id=settings["phone_number_id"],
        access_token=settings["access_token"],
        api_base_url=settings.get("api_base_url") or config.meta_api_base_url or DEFAULT_API_BASE_URL,
        api_version=settings.get("api_version") or DEFAULT_API_VERSION,
    )


def webhook_url(channel: Channel, base_url: str) -> str | None:
    """Return the URL to enter in the provider's console for inbound messages, or None for email.

    ``base_url`` is the public URL of the service, such as https://support.example.com.
    """
    provider = whatsapp_provider(channel)
    base = base_url.rstrip("/")
    if provider == "meta":
        return f"{base}/webhooks/meta/{channel.id}"
    if provider == "twilio":
        return f"{base}/webhooks/twilio/{channel.id}/messages"
    return None


# --- health ----------------------------------------------------------------------------------


def channel_health(
    channel: Channel,
    states: Mapping[tuple[int, str], MailboxCheckpoint],
    public_url: str,
    failures: SendFailureSummary | None = None,
) -> dict[str, Any]:
    """Return a channel's state and health as the API and the channels page show them.

    ``states`` are the checkpoint rows from ``inbox.mailboxes.folder_states``, and
    ``public_url`` is the service's URL, for a WhatsApp channel's webhook. An email
    channel lists each folder it reads with that folder's own sync time, lag and error.
    Its own ``sync_lag_seconds`` is the lag of the folder furthest behind. ``failures``
    is the channel's send failure summary (``inbox.send_failures``), shown as ``sends``.
    """
    now = utcnow()
    item: dict[str, Any] = {
        "id": channel.id,
        "kind": channel.kind,
        "name": channel.name,
        "address": channel.address,
        "is_active": channel.is_active,
        "last_sync_at": isoformat(channel.last_sync_at),
        # Seconds since the mailbox was last read completely; None for WhatsApp and
        # for a mailbox that was never read.
        "sync_lag_seconds": None,
        "last_error": channel.last_error,
        "last_error_at": isoformat(channel.last_error_at),
        # What to enter in the provider's console; None for email.
        "webhook_url": webhook_url(channel, public_url),
        "warnings": [],
        "sends": send_health_to_dict(failures or SendFailureSummary()),
    }
    if channel.kind != "email":
        return item

    folders = []
    for name in email_folders(channel.settings or {}):
        row = states.get((channel.id, name))
        synced = row.last_sync_at if row else None
        folders.append({
            "name": name,
            "uidvalidity": row.uidvalidity if row else None,
            "last_uid": row.last_uid if row else 0,
            "last_sync_at": isoformat(synced),
            "sync_lag_seconds": round((now - synced).total_seconds()) if synced else None,
            "last_error": row.last_error if row else None,
            "last_error_at": isoformat(row.last_error_at) if row else None,
        })
    lags = [folder["sync_lag_seconds"] for folder in folders if folder["sync_lag_seconds"] is not None]
    if lags:
        item["sync_lag_seconds"] = max(lags)
    elif channel.last_sync_at:
        # Read before folders kept their own sync time.
        item["sync_lag_seconds"] = round((now - channel.last_sync_at).total_seconds())
    item["folders"] = folders
    item["sent_folder"] = sent_folder(channel.settings or {})
    if channel.sent_copy_error:
        item["warnings"].append({
            "code": "sent_copy_failed",
            "message": channel.sent_copy_error,
            "at": isoformat(channel.sent_copy_error_at),
        })
    return item


def send_health_to_dict(failures: SendFailureSummary) -> dict[str, Any]:
    """Return the outbound side of a channel's health: its last send failure and the 24-hour count."""
    last = None
    if failures.last_failed_at is not None:
        last = {
            "at": isoformat(failures.last_failed_at),
            "code": failures.last_error_code,
            "message": failures.last_error_message,
        }
    return {"last_failure": last, "failed_last_24h": failures.failed_last_24h}


def channels_with_health(public_url: str, include_settings: bool) -> list[dict[str, Any]]:
    """Return every channel's health; with ``include_settings``, also its masked settings."""
    session = db()
    channels = list_channels(session)
    channel_ids = [channel.id for channel in channels]
    states = folder_states(session, channel_ids)
    failures = send_failure_summaries(session, channel_ids)
    items = []
    for channel in channels:
        item = channel_health(channel, states, public_url, failures[channel.id])
        if include_settings:
            item["settings"] = public_settings(channel)
        items.append(item)
    return items


# --- the channels page and API ---------------------------------------------------------------


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    status = {"not_found": 404, "conflict": 409}.get(error.code, 400)
    return error_response(status, error.code, error.message, error.field)


@blueprint.patch("/api/v1/channels/<id:id>")
@require_role(Role.ADMIN)
def update_channel(id: int) -> Any:  # noqa: A002 - the API's path parameter is named id
    """Change the folders an email channel reads and its Sent folder; absent keys stay as they are."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    unknown = sorted(set(body) - {"imap_folders", "sent_folder"})
    if unknown:
        raise InvalidInput(f"Unknown setting {unknown[0]!r}; use imap_folders or sent_folder.", field=unknown[0])
    session = db()
    channel = session.get(Channel, id)
    current = channel.settings if channel is not None else {}
    folders = body.get("imap_folders", email_folders(current))
    sent = body.get("sent_folder", sent_folder(current))
    before = dict(current)
    changed = update_email_folders(session, id, folders, sent)
    _audit_settings(changed, before)
    session.commit()
    states = folder_states(session, [changed.id])
    failures = send_failure_summaries(session, [changed.id])[changed.id]
    return {**channel_health(changed, states, _public_url(), failures), "settings": public_settings(changed)}


@blueprint.get("/channels")
@page_role(Role.ADMIN)
def channels_page() -> Any:
    return _render_channels_page()


@blueprint.post("/channels/<id:channel_id>/folders")
@page_role(Role.ADMIN)
def save_folders(channel_id: int) -> Any:
    folders = [line for line in request.form.get("imap_folders", "").splitlines() if line.strip()]
    sent = request.form.get("sent_folder", "")
    session = db()
    channel = session.get(Channel, channel_id)
    before = dict(channel.settings) if channel is not None else {}
    try:
        changed = update_email_folders(session, channel_id, folders, sent)
    except InboxError as error:
        session.rollback()
        form = {"channel_id": channel_id, "imap_folders": "\n".join(folders), "sent_folder": sent}
        return _render_channels_page(error=error, form=form), 400
    _audit_settings(changed, before)
    session.commit()
    return redirect(url_for("channel_settings.channels_page", _anchor=f"channel-{channel_id}"), code=303)


@blueprint.post("/channels/<id:channel_id>/default-team")
@page_role(Role.MANAGER)
def save_default_team(channel_id: int) -> Any:
    """Set the channel's default team from the form; an empty value clears it."""
    value = request.form.get("default_team_id", "").strip()
    session = db()
    try:
        if value and not (value.isascii() and value.isdigit()):
            raise InvalidInput(f"Invalid team id {value!r}. Pick a team from the list.", field="default_team_id")
        channel = set_channel_default_team_audited(session, current_agent(), channel_id, int(value) if value else None)
    except InboxError as error:
        session.rollback()
        log.info("channel %s: default team not saved: %s", channel_id, error.message)
        form = {"team_channel_id": channel_id, "default_team_id": value}
        return _render_channels_page(error=error, form=form), error_status(error)
    session.commit()
    flash(_default_team_notice(channel), f"channel-{channel.id}")
    return redirect(url_for("channel_settings.channels_page", _anchor=f"channel-{channel.id}-team"), code=303)


def _default_team_notice(channel: Channel) -> str:
    team = channel.default_team
    if team is None:
        return f"Saved: new conversations on {channel.name} no longer go to a team."
    if team.round_robin:
        return (f"Saved: new conversations on {channel.name} go to {team.name}'s queue "
                "and are assigned round robin to its online members.")
    return (f"Saved: new conversations on {channel.name} go to {team.name}'s queue. "
            f"Round robin is off for {team.name}, so they wait there unassigned.")


@blueprint.post("/channels/<id:channel_id>/settings")
@page_role(Role.ADMIN)
def save_settings(channel_id: int) -> Any:
    """Change a channel's address and connection settings from its settings form.

    The values go through ``update_channel_settings``, like ``switchboard channel set``.
    A secret field left empty keeps the stored secret.
    """
    session = db()
    channel = session.get(Channel, channel_id)
    if channel is None:
        error = NotFound(f"Channel {channel_id} not found.", field="channel_id")
        return _render_channels_page(error=error, form={"settings_channel_id": channel_id}), 404
    before = channel_snapshot(channel)
    submitted = {key: value for key, value in request.form.items() if key != "csrf_token"}
    try:
        changes = settings_changes(channel, submitted)
        if changes:
            channel = update_channel_settings(session, channel_id, changes)
    except InboxError as error:
        session.rollback()
        log.info("channel %s: settings not saved: %s", channel_id, error.message)
        form = {"settings_channel_id": channel_id, "values": _shown_values(submitted)}
        return _render_channels_page(error=error, form=form), error_status(error)
    changed = _audit_channel_change(channel, before)
    session.commit()
    _forget_cached_channel(channel_id)
    if changed:
        flash(f"Saved the settings of {channel.name}: {_listed(changed)}.", f"channel-{channel_id}-settings")
    else:
        flash(f"Nothing changed: the settings of {channel.name} are as they were.", f"channel-{channel_id}-settings")
    return redirect(url_for("channel_settings.channels_page", _anchor=f"channel-{channel_id}-settings"), code=303)


@blueprint.post("/channels/<id:channel_id>/name")
@page_role(Role.ADMIN)
def save_name(channel_id: int) -> Any:
    name = request.form.get("name", "")
    session = db()
    try:
        channel, previous = rename_channel(session, channel_id, name)
    except InboxError as error:
        session.rollback()
        form = {"name_channel_id": channel_id, "name": name}
        return _render_channels_page(error=error, form=form), error_status(error)
    if channel.name != previous:
        record_audit(session, current_agent(), Action.CHANNEL_CHANGED, "channel", channel.id, channel.name,
                     {"name": {"from": previous, "to": channel.name}})
    session.commit()
    flash(f"Saved: the channel {previous} is now called {channel.name}.", f"channel-{channel_id}-name")
    return redirect(url_for("channel_settings.channels_page", _anchor=f"channel-{channel_id}"), code=303)


@blueprint.post("/channels/<id:channel_id>/disable")
@page_role(Role.ADMIN)
def disable_channel(channel_id: int) -> Any:
    return _save_active(channel_id, False)


@blueprint.post("/channels/<id:channel_id>/enable")
@page_role(Role.ADMIN)
def enable_channel(channel_id: int) -> Any:
    return _save_active(channel_id, True)


def _save_active(channel_id: int, active: bool) -> Any:
    session = db()
    try:
        channel = set_channel_active_audited(session, current_agent(), channel_id, active)
    except InboxError as error:
        session.rollback()
        return _render_channels_page(error=error, form={"state_channel_id": channel_id}), error_status(error)
    session.commit()
    _forget_cached_channel(channel_id)
    log.info("channel %s %s by agent %s", channel_id, "enabled" if active else "disabled", current_agent().id)
    if active:
        notice = f"{channel.name} is enabled: it receives and sends again."
    else:
        notice = f"{channel.name} is disabled: it receives nothing, and replies through it are rejected."
    flash(notice, f"channel-{channel_id}-state")
    return redirect(url_for("channel_settings.channels_page", _anchor=f"channel-{channel_id}"), code=303)


def set_channel_active_audited(session: Session, actor: Any, channel_id: int, active: bool) -> Channel:
    """Enable or disable a channel and log it, unless it already was so. Raises ``NotFound``."""
    channel = session.get(Channel, channel_id)
    was_active = channel.is_active if channel is not None else None
    channel = set_channel_active(session, channel_id, active)
    if was_active != active:
        action = Action.CHANNEL_ENABLED if active else Action.CHANNEL_DISABLED
        record_audit(session, actor, action, "channel", channel.id, channel.name)
    return channel


def _forget_cached_channel(channel_id: int) -> None:
    # Imported here because gateway.webhooks imports gateway.api, which imports this module.
    from gateway.webhooks import forget_cached_channel

    forget_cached_channel(current_app, channel_id)


def _listed(keys: list[str]) -> str:
    labels = [FIELD_LABELS.get(key, key) for key in keys]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _shown_values(submitted: Mapping[str, str]) -> dict[str, str]:
    """Return the submitted values the form may show again: every one but the secrets."""
    return {key: value for key, value in submitted.items() if key not in SECRET_SETTINGS}


def channel_snapshot(channel: Channel) -> dict[str, Any]:
    """Return the channel's settings and address, as the audit log compares them."""
    return {**(channel.settings or {}), "address": channel.address}


def _audit_channel_change(channel: Channel, before: dict[str, Any]) -> list[str]:
    """Log what changed since ``before`` (secrets by name only) and return the changed keys."""
    changes = setting_changes(before, channel_snapshot(channel))
    if changes:
        record_audit(db(), current_agent(), Action.CHANNEL_CHANGED, "channel", channel.id, channel.name, changes)
    return list(changes)


def _audit_settings(channel: Channel, before: dict[str, Any]) -> None:
    changes = setting_changes(before, channel.settings)
    if changes:
        record_audit(db(), current_agent(), Action.CHANNEL_CHANGED, "channel", channel.id, channel.name, changes)


def _render_channels_page(error: InboxError | None = None, form: dict[str, Any] | None = None) -> str:
    channels = channels_with_health(_public_url(), include_settings=False)
    rows = list_channels(db())
    default_teams = {channel.id: channel.default_team_id for channel in rows}
    form = form or {}
    settings_forms = {
        channel.id: settings_form(
            channel, form.get("values") if form.get("settings_channel_id") == channel.id else None
        )
        for channel in rows
    }
    return render_template(
        "channel_settings.html", agent=current_agent(), channels=channels, error=error, form=form,
        teams=list_teams(db()), default_teams=default_teams, settings_forms=settings_forms,
        providers={channel.id: whatsapp_provider(channel) for channel in rows},
        public_url_set=bool(current_app.extensions["switchboard"].config.public_url),
    )


def _public_url() -> str:
    return current_app.extensions["switchboard"].config.public_url or request.host_url


# --- editing a channel -----------------------------------------------------------------------
#
# The settings form shows the fields of the channel's kind, provider and sign-in method. What
# it submits becomes the text changes that ``switchboard channel set`` also passes to
# ``update_channel_settings``, so the page and the command line accept the same values.


@dataclass(frozen=True)
class SettingField:
    """One input of a channel's settings form, named by its settings key."""

    key: str
    label: str
    # text, number, secret (a password input that is never filled), checkbox or select
    input: str = "text"
    help: str = ""
    choices: tuple[str, ...] = ()
    # The value of a checkbox whose setting is not stored.
    default: bool = False


@dataclass(frozen=True)
class FieldGroup:
    legend: str
    fields: tuple[SettingField, ...]
    note: str = ""


_EMAIL_ADDRESS = FieldGroup("Mailbox", (
    SettingField("address", "Email address", help="Replies go out from this address."),
))
_IMAP_SERVER = (
    SettingField("imap_host", "IMAP host"),
    SettingField("imap_port", "IMAP port", "number", help="Usually 993 with TLS, 143 without."),
    SettingField("imap_username", "IMAP username"),
)
_IMAP_PASSWORD = SettingField("imap_password", "IMAP password", "secret")
_IMAP_TLS = SettingField("imap_ssl", "Connect to IMAP with TLS (IMAPS)", "checkbox", default=True)
_SMTP_SERVER = (
    SettingField("smtp_host", "SMTP host"),
    SettingField("smtp_port", "SMTP port", "number", help="Usually 587 with STARTTLS, 465 with TLS."),
    SettingField("smtp_username", "SMTP username", help="Empty for a relay that needs no sign-in."),
)
_SMTP_PASSWORD = SettingField("smtp_password", "SMTP password", "secret", help="Needed when an SMTP username is set.")
_SMTP_SECURITY = SettingField(
    "smtp_security", "SMTP security", "select", choices=SMTP_SECURITY,
    help="starttls upgrades a plain connection; ssl is TLS from the start (port 465); none is unencrypted.",
)
_OAUTH = FieldGroup("OAuth 2.0 sign-in", (
    SettingField("oauth_client_id", "Client ID"),
    SettingField("oauth_client_secret", "Client secret", "secret"),
    SettingField("oauth_token_url", "Token URL", help="An https:// URL of the provider's token endpoint."),
    SettingField("oauth_scopes", "Scopes", help="Separated by spaces."),
), note="A new refresh token, after you authorize Switchboard for the mailbox again, is stored with "
        "switchboard channel reauthorize.")
_EMAIL_LIMITS = FieldGroup("Limits", (
    SettingField("max_message_bytes", "Largest mail to import, in bytes", "number",
                 help="Larger mail is imported as its header and a note. Empty for the default, 40 MiB."),
    SettingField("max_attachment_bytes", "Largest attachment to keep, in bytes", "number",
                 help="Larger attachments are listed by name and size but not stored. "
                      "Empty for the default, 30 MiB."),
    SettingField("reopen_window_days", "Reopen window, in days", "number",
                 help="A reply this many days or fewer after a resolved conversation's last message "
                      "reopens it. Empty for the default, 7."),
))
_TWILIO = (
    FieldGroup("WhatsApp number", (
        SettingField("address", "Sender number", help="In E.164 form, such as +14155238886."),
    )),
    FieldGroup("Twilio", (
        SettingField("account_sid", "Account SID", help="AC followed by 32 hexadecimal digits."),
        SettingField("auth_token", "Auth token", "secret", help="Also checks the signature of every webhook."),
    )),
)
_META = (
    FieldGroup("WhatsApp number", (
        SettingField("address", "Sender number", help="In E.164 form, such as +14155238886."),
    )),
    FieldGroup("Meta WhatsApp Cloud API", (
        SettingField("phone_number_id", "Phone number ID"),
        SettingField("waba_id", "WhatsApp Business Account ID", help="Needed for the template list."),
        SettingField("api_version", "Graph API version", help="Such as v23.0. Empty for Switchboard's default."),
        SettingField("verify_token", "Webhook verify token", "secret"),
        SettingField("app_secret", "App secret", "secret", help="Checks the signature of every webhook."),
        SettingField("access_token", "Access token", "secret"),
    )),
)

# Labels of the keys, for the notice that names what was saved.
FIELD_LABELS = {
    field.key: "the address" if field.key == "address" else field.label
    for fields in (
        _IMAP_SERVER, _SMTP_SERVER, (_IMAP_PASSWORD, _IMAP_TLS, _SMTP_PASSWORD, _SMTP_SECURITY),
        *(group.fields for group in (_EMAIL_ADDRESS, _OAUTH, _EMAIL_LIMITS, *_TWILIO, *_META)),
    )
    for field in fields
}
FIELD_LABELS["imap_ssl"] = "IMAP TLS"


def setting_groups(channel: Channel) -> tuple[FieldGroup, ...]:
    """Return the field groups of the channel's settings form, by kind, provider and sign-in."""
    provider = whatsapp_provider(channel)
    if provider == "meta":
        return _META
    if provider == "twilio":
        return _TWILIO
    if uses_oauth(channel.settings or {}):
        return (
            _EMAIL_ADDRESS,
            FieldGroup("Incoming mail (IMAP)", (*_IMAP_SERVER, _IMAP_TLS)),
            FieldGroup("Outgoing mail (SMTP)", (*_SMTP_SERVER, _SMTP_SECURITY)),
            _OAUTH,
            _EMAIL_LIMITS,
        )
    return (
        _EMAIL_ADDRESS,
        FieldGroup("Incoming mail (IMAP)", (*_IMAP_SERVER, _IMAP_PASSWORD, _IMAP_TLS)),
        FieldGroup("Outgoing mail (SMTP)", (*_SMTP_SERVER, _SMTP_PASSWORD, _SMTP_SECURITY)),
        _EMAIL_LIMITS,
    )


def replace_key(key: str) -> str:
    """Return the form name of the checkbox that replaces the secret ``key``."""
    return f"replace_{key}"


def settings_changes(channel: Channel, submitted: Mapping[str, str]) -> dict[str, str]:
    """Return the settings that the submitted form changes, as text for ``update_channel_settings``.

    A stored secret changes only when its replace box is ticked. An empty field then
    removes it, which the validation rejects for a required secret. Raises ``InvalidInput``
    for a new secret typed without the box and for an invalid number.
    """
    stored = channel.settings or {}
    changes: dict[str, str] = {}
    for group in setting_groups(channel):
        for field in group.fields:
            if field.key == "address":
                address = normalize_address(channel.kind, submitted.get("address", ""))
                if address != channel.address:
                    changes["address"] = address
            elif field.input == "secret":
                value = submitted.get(field.key, "")
                if not stored.get(field.key):
                    if value:
                        changes[field.key] = value
                elif submitted.get(replace_key(field.key)):
                    changes[field.key] = value
                elif value:
                    raise InvalidInput(
                        f"Tick \u201cReplace\u201d to change the stored {field.label}, or clear the field to keep it.",
                        field=field.key,
                    )
            elif field.input == "checkbox":
                value = "true" if submitted.get(field.key) else "false"
                if value != _setting_text(stored.get(field.key, field.default)):
                    changes[field.key] = value
            else:
                value = submitted.get(field.key, "").strip()
                if value != _setting_text(stored.get(field.key)):
                    changes[field.key] = value
    return changes


def normalize_address(kind: str, text: str) -> str:
    """Return a channel address as ``switchboard channel add`` stores it: an email address in
    lower case, a WhatsApp number in E.164 form. Raises ``InvalidInput`` for an invalid number."""
    text = text.strip()
    if kind == "email":
        return normalize_email(text)
    if not text:
        return text
    try:
        return normalize_phone(text)
    except ParseError as error:
        raise InvalidInput(f"The sender number is invalid: {error}.", field="address") from error


def settings_form(channel: Channel, submitted: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the channel's settings form: its field groups with the values to show, and its keys.

    ``submitted`` are the values of a form that was not saved, shown again in place of the
    stored ones. A secret is never shown, so its field only tells whether one is stored.
    """
    stored = channel.settings or {}
    groups = []
    keys = []
    for group in setting_groups(channel):
        fields = []
        for field in group.fields:
            keys.append(field.key)
            item: dict[str, Any] = {
                "key": field.key, "label": field.label, "input": field.input, "help": field.help,
                "choices": field.choices,
            }
            if field.input == "secret":
                item["stored"] = bool(stored.get(field.key))
                item["replace_name"] = replace_key(field.key)
                item["replace"] = bool(submitted and submitted.get(replace_key(field.key)))
            elif field.input == "checkbox":
                item["checked"] = (
                    bool(submitted.get(field.key)) if submitted is not None
                    else bool(stored.get(field.key, field.default))
                )
            elif submitted is not None:
                item["value"] = submitted.get(field.key, "")
            else:
                item["value"] = channel.address if field.key == "address" else _setting_text(stored.get(field.key))
            fields.append(item)
        groups.append({"legend": group.legend, "note": group.note, "fields": fields})
    return {"groups": groups, "field_keys": keys}


def _setting_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
