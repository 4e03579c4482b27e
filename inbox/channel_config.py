"""Adding, listing, renaming, disabling and changing channels.

Provider settings are stored as JSON on the channel. The channels page and ``switchboard
channel set`` both change them through ``update_channel_settings``, so both accept and
reject the same values.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.errors import Conflict, InvalidInput, NotFound
from inbox.models import Channel

CHANNEL_KINDS = ("email", "whatsapp")
# A WhatsApp channel's "provider" setting; channels without one use Twilio.
WHATSAPP_PROVIDERS = ("twilio", "meta")
# Settings that are credentials: never shown by listings or the API.
SECRET_SETTINGS = frozenset({
    "imap_password", "smtp_password", "auth_token",
    "oauth_client_secret", "oauth_refresh_token", "oauth_access_token",
    "app_secret", "access_token", "verify_token",
})
SMTP_SECURITY = ("starttls", "ssl", "none")
# The sign-in methods of an email channel, for IMAP and SMTP. A channel without "auth" uses passwords.
AUTH_MODES = ("password", "oauth2")
OAUTH_PROVIDERS = ("google", "microsoft", "custom")
# The folders an email channel reads when its settings name none.
DEFAULT_FOLDERS = ("INBOX",)
# The length of mailbox_checkpoints.folder, which stores each folder's checkpoint.
MAX_FOLDER_NAME_LENGTH = 500
# The length of channels.name.
MAX_CHANNEL_NAME_LENGTH = 200

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_PHONE_NUMBER_ID = re.compile(r"^[0-9]{1,30}$")
_GRAPH_API_VERSION = re.compile(r"^v[0-9]{1,3}\.[0-9]{1,3}$")


def _require_text(settings: dict[str, Any], key: str, label: str) -> None:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{label} is missing.", field=key)


def _require_port(settings: dict[str, Any], key: str, label: str) -> None:
    value = settings.get(key)
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{label} must be a port number from 1 to 65535, not {value!r}.", field=key)


def check_email_address(address: str) -> None:
    """Check the address of an email channel. Raises ``InvalidInput``."""
    if not _EMAIL.match(address):
        raise InvalidInput(f"{address!r} is not a valid email address.", field="address")


def validate_channel(kind: str, address: str, settings: dict[str, Any]) -> None:
    """Check a channel's address and provider settings. Raises ``InvalidInput``."""
    if not address.strip():
        label = "The email address" if kind == "email" else "The sender number"
        raise InvalidInput(f"{label} is missing.", field="address")
    if kind == "email":
        check_email_address(address)
        _require_text(settings, "imap_host", "The IMAP host")
        _require_port(settings, "imap_port", "The IMAP port")
        _require_text(settings, "imap_username", "The IMAP username")
        auth = settings.get("auth", "password")
        if auth not in AUTH_MODES:
            raise InvalidInput("The sign-in method must be password or oauth2.", field="auth")
        if auth == "oauth2":
            _validate_oauth(settings)
        else:
            _require_text(settings, "imap_password", "The IMAP password")
        _require_text(settings, "smtp_host", "The SMTP host")
        _require_port(settings, "smtp_port", "The SMTP port")
        if settings.get("smtp_security") not in SMTP_SECURITY:
            raise InvalidInput("The SMTP security must be starttls, ssl or none.", field="smtp_security")
        if auth == "password" and settings.get("smtp_username") and not settings.get("smtp_password"):
            raise InvalidInput("The SMTP password is missing for the SMTP username.", field="smtp_password")
        for key in ("max_message_bytes", "max_attachment_bytes"):
            value = settings.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidInput(f"The {key} setting must be a positive number of bytes.", field=key)
        email_folder_settings(settings)
    elif kind == "whatsapp":
        if not _E164.match(address):
            raise InvalidInput(f"{address!r} is not a phone number in E.164 form (+14155238886).", field="address")
        provider = settings.get("provider", "twilio")
        if provider == "meta":
            _validate_meta(settings)
            return
        if provider != "twilio":
            raise InvalidInput(f"Unknown WhatsApp provider {provider!r}; use twilio or meta.", field="provider")
        if not _ACCOUNT_SID.match(str(settings.get("account_sid", ""))):
            raise InvalidInput(
                "The Twilio Account SID must be AC followed by 32 hexadecimal digits.", field="account_sid"
            )
        # An empty token would make every webhook signature "valid" for anyone.
        _require_text(settings, "auth_token", "The Twilio auth token")


def _validate_oauth(settings: dict[str, Any]) -> None:
    if settings.get("oauth_provider") not in OAUTH_PROVIDERS:
        raise InvalidInput("The OAuth provider must be google, microsoft or custom.", field="oauth_provider")
    _require_text(settings, "oauth_client_id", "The OAuth client id")
    _require_text(settings, "oauth_refresh_token", "The OAuth refresh token")
    _require_text(settings, "oauth_token_url", "The OAuth token URL")
    if not isinstance(settings.get("oauth_client_secret", ""), str):
        raise InvalidInput("The OAuth client secret must be text.", field="oauth_client_secret")
    if not isinstance(settings.get("oauth_scopes", ""), str):
        raise InvalidInput("The OAuth scopes must be text, separated by spaces.", field="oauth_scopes")
    url = urlsplit(settings["oauth_token_url"])
    # The refresh token travels in this request, so only a loopback test server may use http.
    if not url.hostname or not (url.scheme == "https" or (url.scheme == "http" and _is_loopback(url.hostname))):
        raise InvalidInput(
            f"The OAuth token URL {settings['oauth_token_url']!r} must be an https:// URL "
            "(http:// only for a server on this machine).",
            field="oauth_token_url",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_meta(settings: dict[str, Any]) -> None:
    if not _PHONE_NUMBER_ID.match(str(settings.get("phone_number_id", ""))):
        raise InvalidInput(
            "The Meta phone number ID must be the digits shown in the app's WhatsApp API setup.",
            field="phone_number_id",
        )
    _require_text(settings, "verify_token", "The webhook verify token")
    # Without the app secret no webhook signature can be checked, so every webhook is rejected.
    _require_text(settings, "app_secret", "The Meta app secret")
    _require_text(settings, "access_token", "The Meta access token")
    base_url = settings.get("api_base_url")
    if base_url is not None and not (isinstance(base_url, str) and base_url.startswith(("http://", "https://"))):
        raise InvalidInput(
            f"The Cloud API base URL {base_url!r} must start with http:// or https://.", field="api_base_url"
        )
    waba_id = settings.get("waba_id")
    if waba_id is not None and not _PHONE_NUMBER_ID.match(str(waba_id)):
        raise InvalidInput(
            "The WhatsApp Business Account ID must be the digits shown in the app's WhatsApp API setup.",
            field="waba_id",
        )
    version = settings.get("api_version")
    if version is not None and not _GRAPH_API_VERSION.match(str(version)):
        raise InvalidInput(
            f"The Graph API version {version!r} must look like v23.0.", field="api_version"
        )


def whatsapp_provider(channel: Channel) -> str | None:
    """Return "twilio" or "meta" for a WhatsApp channel, and None for any other channel."""
    if channel.kind != "whatsapp":
        return None
    return (channel.settings or {}).get("provider", "twilio")


def find_meta_channel(session: Session, phone_number_id: str) -> Channel | None:
    """Return the WhatsApp channel that uses Meta's phone number id ``phone_number_id``, if any."""
    # Channels are few, and filtering inside JSON differs between SQLite and PostgreSQL.
    for channel in session.scalars(select(Channel).where(Channel.kind == "whatsapp").order_by(Channel.id)):
        settings = channel.settings or {}
        if settings.get("provider") == "meta" and settings.get("phone_number_id") == phone_number_id:
            return channel
    return None


def add_channel(
    session: Session, kind: str, name: str, address: str, settings: dict[str, Any]
) -> Channel:
    """Add a channel to the session. Raises ``InvalidInput`` or ``Conflict`` (same address)."""
    if kind not in CHANNEL_KINDS:
        raise InvalidInput(f"Unknown channel kind {kind!r}; use email or whatsapp.", field="kind")
    name = check_channel_name(name)
    validate_channel(kind, address, settings)
    if kind == "email":
        settings = {**settings, **email_folder_settings(settings)}
        settings.pop("imap_folder", None)
    existing = session.scalar(select(Channel).where(Channel.kind == kind, Channel.address == address))
    if existing is not None:
        raise Conflict(
            f"Channel {existing.id} ({existing.name}) already uses {address}.", field="address"
        )
    if kind == "whatsapp" and settings.get("provider") == "meta":
        existing = find_meta_channel(session, settings["phone_number_id"])
        if existing is not None:
            raise Conflict(
                f"Channel {existing.id} ({existing.name}) already uses phone number ID "
                f"{settings['phone_number_id']}.",
                field="phone_number_id",
            )
    channel = Channel(kind=kind, name=name, address=address, settings=settings)
    session.add(channel)
    session.flush()
    return channel


def check_channel_name(name: str) -> str:
    """Return the channel name without surrounding spaces. Raises ``InvalidInput``.

    Names need not be unique: agents tell channels apart by name, kind and address.
    """
    name = name.strip()
    if not name:
        raise InvalidInput("The channel name is empty.", field="name")
    if len(name) > MAX_CHANNEL_NAME_LENGTH:
        raise InvalidInput(
            f"The channel name has {len(name)} characters; the maximum is {MAX_CHANNEL_NAME_LENGTH}.", field="name"
        )
    if any(ord(character) < 32 or ord(character) == 127 for character in name):
        raise InvalidInput("The channel name contains a control character.", field="name")
    return name


def rename_channel(session: Session, channel_id: int, name: str) -> tuple[Channel, str]:
    """Give a channel a new name and return it with its previous name.

    Raises ``NotFound`` for an unknown channel and ``InvalidInput`` for a name that
    ``check_channel_name`` rejects.
    """
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"Channel {channel_id} not found.", field="channel_id")
    previous = channel.name
    channel.name = check_channel_name(name)
    return channel, previous


def set_channel_active(session: Session, channel_id: int, active: bool) -> Channel:
    """Enable or disable a channel.

    A disabled channel takes nothing in and sends nothing: its mailbox is not read, its
    webhooks answer inbound messages with 503 (``gateway.webhooks``), and new replies on it
    are rejected (``inbox.replies``). Replies queued before it was disabled wait until it is
    enabled again. Its conversations and messages stay.

    Raises ``NotFound`` for an unknown channel.
    """
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"Channel {channel_id} not found.", field="channel_id")
    channel.is_active = active
    return channel


# Settings that "channel set" changes as numbers or yes/no values rather than as text.
_INTEGER_SETTINGS = frozenset({"imap_port", "smtp_port", "max_message_bytes", "max_attachment_bytes",
                               "reopen_window_days"})
_BOOLEAN_SETTINGS = frozenset({"imap_ssl"})
# Settings that "channel set" may add to a channel that lacks them, by kind or provider.
_ADDABLE_EMAIL_SETTINGS = frozenset({
    "imap_host", "imap_port", "imap_username", "imap_password", "imap_ssl",
    "smtp_host", "smtp_port", "smtp_username", "smtp_password", "smtp_security",
    "oauth_client_secret", "oauth_refresh_token", "oauth_access_token",
    "max_message_bytes", "max_attachment_bytes", "reopen_window_days",
})
_ADDABLE_TWILIO_SETTINGS = frozenset({"auth_token"})
_ADDABLE_META_SETTINGS = frozenset({"app_secret", "access_token", "verify_token", "waba_id", "api_version"})


def _addable_settings(channel: Channel) -> frozenset[str]:
    if channel.kind == "email":
        return _ADDABLE_EMAIL_SETTINGS
    return _ADDABLE_META_SETTINGS if whatsapp_provider(channel) == "meta" else _ADDABLE_TWILIO_SETTINGS


def update_channel_settings(session: Session, channel_id: int, changes: dict[str, str]) -> Channel:
    """Change some of a channel's settings, given as text, and check the result as a whole.

    Numbers and yes/no values are converted; an empty value removes an optional setting.
    The key ``address`` changes the channel's own address (a WhatsApp number must already
    be in E.164 form). Folders have their own function (``update_email_folders``). Raises
    ``NotFound`` for an unknown channel, ``InvalidInput`` for an unknown key, a bad value or
    a result that ``validate_channel`` rejects, and ``Conflict`` when another channel of the
    same kind uses the new address or Meta phone number ID.
    """
    channel = session.get(Channel, channel_id, with_for_update=True, populate_existing=True)
    if channel is None:
        raise NotFound(f"Channel {channel_id} not found.", field="channel_id")
    settings = dict(channel.settings)
    address = channel.address
    for key, text in changes.items():
        if key in ("imap_folders", "sent_folder", "imap_folder", "provider", "auth"):
            raise InvalidInput(
                f"The setting {key} cannot be changed with this command; see 'switchboard channel --help'.",
                field=key,
            )
        if key == "address":
            address = text.strip()
        elif text == "":
            settings.pop(key, None)
        elif key in _INTEGER_SETTINGS:
            if not (text.isascii() and text.isdigit()):
                raise InvalidInput(f"The setting {key} must be a whole number, not {text!r}.", field=key)
            settings[key] = int(text)
        elif key in _BOOLEAN_SETTINGS:
            if text.lower() not in ("true", "false", "yes", "no"):
                raise InvalidInput(f"The setting {key} must be true or false, not {text!r}.", field=key)
            settings[key] = text.lower() in ("true", "yes")
        elif key in settings or key in _addable_settings(channel):
            settings[key] = text
        else:
            known = sorted(set(channel.settings) | _addable_settings(channel) | {"address"})
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise InvalidInput(
                f"Unknown setting {key!r} for this {channel.kind} channel.{hint} Known settings: {', '.join(known)}.",
                field=key,
            )
    validate_channel(channel.kind, address, settings)
    _check_unused_elsewhere(session, channel, address, settings)
    channel.address = address
    # A new dict, because SQLAlchemy does not notice changes inside a JSON value.
    channel.settings = settings
    return channel


def _check_unused_elsewhere(session: Session, channel: Channel, address: str, settings: dict[str, Any]) -> None:
    """Raise ``Conflict`` when another channel already uses ``address`` or the Meta phone number ID."""
    if address != channel.address:
        other = session.scalar(
            select(Channel).where(Channel.kind == channel.kind, Channel.address == address, Channel.id != channel.id)
        )
        if other is not None:
            raise Conflict(f"Channel {other.id} ({other.name}) already uses {address}.", field="address")
    phone_number_id = settings.get("phone_number_id")
    if settings.get("provider") == "meta" and phone_number_id != (channel.settings or {}).get("phone_number_id"):
        other = find_meta_channel(session, phone_number_id)
        if other is not None and other.id != channel.id:
            raise Conflict(
                f"Channel {other.id} ({other.name}) already uses phone number ID {phone_number_id}.",
                field="phone_number_id",
            )


def list_channels(session: Session) -> list[Channel]:
    return list(session.scalars(select(Channel).order_by(Channel.id)))


def public_settings(channel: Channel) -> dict[str, Any]:
    """Return the channel's settings with every credential masked."""
    return {
        key: ("********" if key in SECRET_SETTINGS and value else value)
        for key, value in (channel.settings or {}).items()
    }


def store_oauth_tokens(
    session: Session,
    channel_id: int,
    used_refresh_token: str,
    access_token: str,
    expires_at: datetime,
    rotated_refresh_token: str | None = None,
) -> bool:
    """Store a refreshed access token, and the rotated refresh token if any, and commit.

    Stores nothing, and returns False, when the channel's refresh token is no longer
    ``used_refresh_token``: an admin replaced it, or another worker stored a rotated one
    first, and the stored token must win. Returns True when the tokens were stored.
    """
    with session.begin():
        channel = session.get(Channel, channel_id, with_for_update=True, populate_existing=True)
        if channel is None or (channel.settings or {}).get("oauth_refresh_token") != used_refresh_token:
            return False
        channel.settings = {
            **channel.settings,
            "oauth_access_token": access_token,
            "oauth_access_token_expires_at": expires_at.isoformat(),
            "oauth_refresh_token": rotated_refresh_token or used_refresh_token,
        }
        return True


def update_oauth_credentials(
    session: Session,
    channel_id: int,
    *,
    refresh_token: str,
    access_token: str,
    expires_at: datetime,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> Channel:
    """Replace an OAuth 2.0 channel's refresh token after a new authorization, and commit.

    The caller has already obtained ``access_token`` with the new credentials, so the
    channel's last error, which is usually the rejected old grant, is cleared. ``client_id``
    and ``client_secret`` replace the stored ones when given. Raises ``NotFound`` for an
    unknown channel and ``InvalidInput`` for a channel that does not sign in with OAuth 2.0
    or an empty refresh token or client id.
    """
    with session.begin():
        channel = session.get(Channel, channel_id, with_for_update=True, populate_existing=True)
        if channel is None:
            raise NotFound(f"Channel {channel_id} not found.", field="channel_id")
        if channel.kind != "email" or (channel.settings or {}).get("auth") != "oauth2":
            raise InvalidInput(
                f"Channel {channel_id} ({channel.name}) does not sign in with OAuth 2.0.", field="channel_id"
            )
        changes: dict[str, Any] = {
            "oauth_refresh_token": refresh_token,
            "oauth_access_token": access_token,
            "oauth_access_token_expires_at": expires_at.isoformat(),
        }
        if client_id is not None:
            changes["oauth_client_id"] = client_id
        if client_secret is not None:
            changes["oauth_client_secret"] = client_secret
        settings = {**channel.settings, **changes}
        _require_text(settings, "oauth_refresh_token", "The OAuth refresh token")
        _require_text(settings, "oauth_client_id", "The OAuth client id")
        channel.settings = settings
        channel.last_error = None
        channel.last_error_at = None
        return channel


def email_folders(settings: dict[str, Any]) -> list[str]:
    """Return the folders an email channel reads.

    Channels added before folder lists existed store one ``imap_folder``.
    """
    folders = settings.get("imap_folders")
    if folders:
        return list(folders)
    return [settings.get("imap_folder") or DEFAULT_FOLDERS[0]]


def sent_folder(settings: dict[str, Any]) -> str | None:
    """Return the folder that gets a copy of each sent reply, or None when copies are off."""
    return settings.get("sent_folder") or None


def email_folder_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Return the checked ``imap_folders`` and ``sent_folder`` settings of an email channel.

    Names are stripped and INBOX, which RFC 3501 section 5.1 makes case-insensitive, is
    spelled in capitals. Raises ``InvalidInput`` for a list that is empty, not a list or
    names a folder twice, and for a name that is empty, too long or contains a control
    character.
    """
    folders = settings.get("imap_folders")
    if folders is None:
        folders = [settings.get("imap_folder") or DEFAULT_FOLDERS[0]]
    if not isinstance(folders, list) or not folders:
        raise InvalidInput("The folders to read must be a list of at least one folder name.", field="imap_folders")
    checked: list[str] = []
    for name in folders:
        folder = _check_folder_name(name, "imap_folders")
        if folder in checked:
            raise InvalidInput(f"The folder {folder!r} is listed twice.", field="imap_folders")
        checked.append(folder)

    sent = settings.get("sent_folder")
    copies_off = sent is None or (isinstance(sent, str) and not sent.strip())
    return {
        "imap_folders": checked,
        "sent_folder": None if copies_off else _check_folder_name(sent, "sent_folder"),
    }


def update_email_folders(
    session: Session, channel_id: int, folders: Any, sent: Any
) -> Channel:
    """Set the folders an email channel reads and its Sent folder (None turns copies off).

    Running workers start and stop folder readers to match within about a minute. Raises
    ``NotFound`` for an unknown channel and ``InvalidInput`` for a channel that is not
    email or for invalid folder names (see ``email_folder_settings``).
    """
    # Locked and reread, so a worker storing a refreshed OAuth token meanwhile is not overwritten.
    channel = session.get(Channel, channel_id, with_for_update=True, populate_existing=True)
    if channel is None:
        raise NotFound(f"Channel {channel_id} not found.", field="channel_id")
    if channel.kind != "email":
        raise InvalidInput(f"Channel {channel_id} is a {channel.kind} channel; only email channels have folders.")
    checked = email_folder_settings({"imap_folders": folders, "sent_folder": sent})
    settings = {key: value for key, value in channel.settings.items() if key != "imap_folder"}
    # A new dict, because SQLAlchemy does not notice changes inside a JSON value.
    channel.settings = {**settings, **checked}
    return channel


def _check_folder_name(name: Any, field: str) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"A folder name must be text, not {name!r}.", field=field)
    folder = name.strip()
    if not folder:
        raise InvalidInput("A folder name is empty.", field=field)
    if any(ord(character) < 32 or ord(character) == 127 for character in folder):
        raise InvalidInput(f"The folder name {folder!r} contains a control character.", field=field)
    if len(folder) > MAX_FOLDER_NAME_LENGTH:
        raise InvalidInput(
            f"The folder name {folder[:40]!r}... is longer than {MAX_FOLDER_NAME_LENGTH} characters.", field=field
        )
    return "INBOX" if folder.upper() == "INBOX" else folder
