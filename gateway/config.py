"""Typed configuration from ``SWITCHBOARD_*`` environment variables or a TOML file.

The TOML file named by ``SWITCHBOARD_CONFIG`` uses the same names in lower case without the
prefix (``database_url = "..."``); environment variables win over the file.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import tomllib
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from inbox.proactive.quiet_hours import parse_quiet_hours, zone_or_none
from inbox.proactive.sending import ProactiveSettings
from inbox.proactive.triggers import parse_business_hours
from inbox.workspace import EmailFallback, OutsideWindow, WorkspaceSettings

PREFIX = "SWITCHBOARD_"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
# In a source checkout every command shares the checkout's instance/ folder, whichever
# folder it runs from; an installed copy uses ./instance.
DEFAULT_INSTANCE_DIR = (
    _SOURCE_ROOT / "instance" if (_SOURCE_ROOT / "pyproject.toml").exists() else Path("instance")
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
OUTSIDE_WINDOW_CHOICES = ("hold", "reject")
EMAIL_FALLBACK_CHOICES = ("offer", "automatic")
# A lower per-address limit would reject people behind one office address before the
# per-email limit of 10 reports that their password is wrong.
LOGIN_ATTEMPTS_MINIMUM = 10
# Each concurrent send takes a thread and, while it records its outcome, a database connection.
MAX_OUTBOX_CONCURRENCY = 32
# A longer wait would only keep a reply to a silent Twilio in flight, and its lease long.
MAX_TWILIO_TIMEOUT = 300.0
# A shorter wait would time out ordinary requests, and every send that timed out is looked up
# at Twilio before it is sent again.
MIN_TWILIO_TIMEOUT = 1.0
# Seconds between two checks of the outbox or of a mailbox without IDLE. A shorter interval
# keeps a worker polling the database in a busy loop. A far longer one delays replies that
# other processes queue, and an infinite one overflows the thread's wait and stops it.
POLL_INTERVAL_RANGE = (0.1, 3600.0)
# The lowest pacing rate, one message per 100 seconds. A rate near zero makes a send
# interval too long for a datetime.
MIN_WHATSAPP_SEND_RATE = 0.01
# Read elsewhere: the config file's name, the test suite's database, the OAuth 2.0 secrets
# that `switchboard channel add email` and `channel reauthorize` take, and the Meta
# credentials that `switchboard channel add whatsapp --provider meta` stores on the channel.
META_APP_SECRET_VARIABLE = PREFIX + "META_APP_SECRET"
META_ACCESS_TOKEN_VARIABLE = PREFIX + "META_ACCESS_TOKEN"
_OTHER_VARIABLES = frozenset({
    PREFIX + "CONFIG", PREFIX + "TEST_DATABASE_URL",
    PREFIX + "OAUTH_CLIENT_SECRET", PREFIX + "OAUTH_REFRESH_TOKEN", PREFIX + "WORKER_NICE",
    META_APP_SECRET_VARIABLE, META_ACCESS_TOKEN_VARIABLE,
})

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """The configuration is missing a value or has an invalid one."""


@dataclass(frozen=True)
class Config:
    database_url: str = ""
    secret_key: str = ""
    redis_url: str | None = None
    public_url: str | None = None
    # How many reverse proxies in front of the service set X-Forwarded-Proto/-Host/-Port/-For.
    # Those headers are trusted only from that many hops, so a client cannot forge them.
    trusted_proxies: int = 0
    twilio_api_base_url: str | None = None
    # Replaces https://graph.facebook.com for Meta channels without their own api_base_url.
    meta_api_base_url: str | None = None
    instance_dir: str = str(DEFAULT_INSTANCE_DIR)
    # Where attachment files are kept; every web and worker process must see the same folder.
    attachments_dir: str = ""
    host: str = "127.0.0.1"
    port: int = 5000
    # Seconds a browser session stays valid without activity.
    session_lifetime: int = 12 * 3600
    # Seconds a browser session stays valid after its sign-in, however active it is.
    session_absolute_lifetime: int = 7 * 24 * 3600
    # Seconds a password reset link that an admin created stays valid.
    password_reset_lifetime: int = 24 * 3600
    # Sign-in attempts per client address in 5 minutes, whatever the email; successful ones
    # do not count.
    login_address_attempts: int = 50
    # Password checks that run at once per web process; each takes about 32 MiB (scrypt).
    password_check_concurrency: int = 4
    # Seconds between checks of every live Socket.IO connection against its sign-in's limits.
    socket_check_interval: float = 30.0
    # Send session cookies only over HTTPS; always on when public_url is https.
    secure_cookies: bool = False
    imap_poll_interval: float = 60.0
    outbox_poll_interval: float = 2.0
    # Sends that one process's outbox dispatcher makes at once. Replies to one contact on one
    # channel still go one at a time, in order.
    outbox_concurrency: int = 4
    # Seconds that a Twilio request of the outbox (a send or a lookup) waits to connect, and
    # again for the response. It also sizes the lease of each Twilio send attempt.
    twilio_timeout: float = 30.0
    # WhatsApp messages per second that one sender number may send; 0 turns pacing off.
    whatsapp_send_rate: float = 10.0
    # Seconds that the signed link Twilio fetches a reply's attachment from stays valid.
    whatsapp_media_url_lifetime: int = 4 * 3600
    log_level: str = "INFO"
    # A free-text WhatsApp reply after the 24-hour window: "hold" it until the customer
    # writes, or "reject" it so that the agent sends an approved template.
    whatsapp_outside_window: str = "hold"
    # Comma-separated keywords that opt a contact out of (or back into) proactive messages,
    # besides STOP, UNSUBSCRIBE and START.
    whatsapp_opt_out_keywords: str = ""
    whatsapp_opt_in_keywords: str = ""
    # A WhatsApp reply that failed for good: "offer" to resend it by email, or resend it
    # "automatic"ally, when the contact has an email address.
    whatsapp_email_fallback: str = "offer"
    # Seconds the list of approved WhatsApp templates is kept before Twilio is asked again.
    whatsapp_template_refresh: float = 600.0
    # The workspace's IANA time zone: business hours, and quiet hours of contacts whose own
    # zone is unknown.
    time_zone: str = "UTC"
    # Working days and hours in the workspace's zone, for triggers counted in business hours.
    business_hours: str = "mon-fri 09:00-17:00"
    # Local time span in the contact's zone with no proactive update; "off" for none.
    quiet_hours: str = "21:00-08:00"
    # Run the proactive-update scheduler in worker processes.
    proactive_enabled: bool = True
    # Seconds between two sweeps for due proactive updates.
    proactive_sweep_interval: float = 60.0
    # The maximum of proactive updates per conversation in any 24 hours; 0 for no cap.
    proactive_daily_cap: int = 3
    # Hours back that a sweep still sends an occurrence it has not handled, e.g. after downtime.
    proactive_catch_up_hours: float = 24.0
    # The maximum of occurrences one sweep handles; the rest wait for the next sweep.
    proactive_batch_size: int = 500
    # Seconds after its time that a missed sweep still runs once when the scheduler is back.
    scheduler_misfire_grace: int = 3600
    # Seconds between a standby scheduler's attempts to become the leader (PostgreSQL).
    scheduler_leader_retry: float = 15.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration. Raises ``ConfigError`` for an unreadable file or bad value."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}

        config_file = environ.get(PREFIX + "CONFIG")
        if config_file:
            try:
                values.update(tomllib.loads(Path(config_file).read_text()))
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise ConfigError(f"cannot read {PREFIX}CONFIG file {config_file}: {error}") from error

        for spec in fields(cls):
            name = PREFIX + spec.name.upper()
            if name in environ:
                values[spec.name] = environ[name]

        known = {spec.name: spec for spec in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown keys in {PREFIX}CONFIG file: {', '.join(unknown)}")
        ignored = sorted(
            name for name in environ
            if name.startswith(PREFIX) and name.removeprefix(PREFIX).lower() not in known
            and name not in _OTHER_VARIABLES
        )
        if ignored:
            # A misspelt variable would otherwise fall back to a default without a word.
            log.warning("ignoring unknown environment variables: %s", ", ".join(ignored))
        typed = {name: _convert(name, known[name].type, value) for name, value in values.items()}
        config = cls(**typed).with_defaults()
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value that would only fail later, at a worse moment."""
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"{PREFIX}LOG_LEVEL={self.log_level!r} is invalid; use one of {', '.join(LOG_LEVELS)}."
            )
        if not 0 <= self.trusted_proxies <= 10:
            raise ConfigError(
                f"{PREFIX}TRUSTED_PROXIES={self.trusted_proxies} is invalid; give the number of reverse "
                "proxies in front of the service, from 0 to 10."
            )
        for name, choices in (
            ("whatsapp_outside_window", OUTSIDE_WINDOW_CHOICES),
            ("whatsapp_email_fallback", EMAIL_FALLBACK_CHOICES),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"{PREFIX}{name.upper()}={getattr(self, name)!r} is invalid; use {' or '.join(choices)}."
                )
        if self.whatsapp_template_refresh <= 0:
            raise ConfigError(
                f"{PREFIX}WHATSAPP_TEMPLATE_REFRESH={self.whatsapp_template_refresh} is invalid; "
                "give a positive number of seconds."
            )
        for name in ("whatsapp_opt_out_keywords", "whatsapp_opt_in_keywords"):
            too_long = [word for word in keyword_list(getattr(self, name)) if len(word) > 50]
            if too_long:
                raise ConfigError(
                    f"{PREFIX}{name.upper()} has a keyword longer than 50 characters: {too_long[0]!r}."
                )
        # The comparisons are written so that NaN fails them too.
        if not (self.whatsapp_send_rate == 0 or MIN_WHATSAPP_SEND_RATE <= self.whatsapp_send_rate < math.inf):
            raise ConfigError(
                f"{PREFIX}WHATSAPP_SEND_RATE={self.whatsapp_send_rate} is invalid; give messages per "
                f"second per sender, from {MIN_WHATSAPP_SEND_RATE:g}, or 0 to send without pacing."
            )
        if not 1 <= self.outbox_concurrency <= MAX_OUTBOX_CONCURRENCY:
            raise ConfigError(
                f"{PREFIX}OUTBOX_CONCURRENCY={self.outbox_concurrency} is invalid; give the number of sends "
                f"one process makes at once, from 1 to {MAX_OUTBOX_CONCURRENCY}."
            )
        if not MIN_TWILIO_TIMEOUT <= self.twilio_timeout <= MAX_TWILIO_TIMEOUT:
            raise ConfigError(
                f"{PREFIX}TWILIO_TIMEOUT={self.twilio_timeout} is invalid; give the seconds to wait for "
                f"Twilio, from {MIN_TWILIO_TIMEOUT:g} to {MAX_TWILIO_TIMEOUT:g}."
            )
        shortest, longest = POLL_INTERVAL_RANGE
        for name in ("outbox_poll_interval", "imap_poll_interval"):
            if not shortest <= getattr(self, name) <= longest:
                raise ConfigError(
                    f"{PREFIX}{name.upper()}={getattr(self, name)} is invalid; give seconds from "
                    f"{shortest:g} to {longest:g}."
                )
        if self.whatsapp_media_url_lifetime < 60:
            raise ConfigError(
                f"{PREFIX}WHATSAPP_MEDIA_URL_LIFETIME={self.whatsapp_media_url_lifetime} is invalid; "
                "give at least 60 seconds, so that Twilio can fetch the attachment."
            )
        if self.session_lifetime < 60 or self.session_absolute_lifetime < self.session_lifetime:
            raise ConfigError(
                f"{PREFIX}SESSION_LIFETIME={self.session_lifetime} and {PREFIX}SESSION_ABSOLUTE_LIFETIME="
                f"{self.session_absolute_lifetime} are invalid; give at least 60 seconds for the idle "
                "timeout and an absolute lifetime no shorter than it."
            )
        for name, value, minimum in (
            ("login_address_attempts", self.login_address_attempts, LOGIN_ATTEMPTS_MINIMUM),
            ("password_check_concurrency", self.password_check_concurrency, 1),
            ("socket_check_interval", self.socket_check_interval, 1),
        ):
            if value < minimum:
                raise ConfigError(f"{PREFIX}{name.upper()}={value} is invalid; give at least {minimum}.")
        if not 300 <= self.password_reset_lifetime <= 30 * 24 * 3600:
            raise ConfigError(
                f"{PREFIX}PASSWORD_RESET_LIFETIME={self.password_reset_lifetime} is invalid; give from "
                "300 seconds to 30 days in seconds."
            )
        self._validate_proactive()
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{PREFIX}PORT={self.port} is invalid; use a port from 1 to 65535.")
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ConfigError(
                    f"{PREFIX}PUBLIC_URL={self.public_url!r} is invalid; give the scheme and host "
                    "that Twilio calls, without a path, e.g. https://support.example.com."
                )
        for name in ("redis_url", "twilio_api_base_url", "meta_api_base_url"):
            value = getattr(self, name)
            if value and "://" not in value:
                raise ConfigError(f"{PREFIX}{name.upper()}={value!r} is invalid: it needs a scheme.")

    def _validate_proactive(self) -> None:
        try:
            proactive_settings_from(self)
        except ValueError as error:
            raise ConfigError(f"{PREFIX}{str(error)}") from None
        for name, value, minimum in (
            ("proactive_sweep_interval", self.proactive_sweep_interval, 1),
            ("proactive_batch_size", self.proactive_batch_size, 1),
            ("proactive_daily_cap", self.proactive_daily_cap, 0),
            ("proactive_catch_up_hours", self.proactive_catch_up_hours, 0),
            ("scheduler_misfire_grace", self.scheduler_misfire_grace, 1),
            ("scheduler_leader_retry", self.scheduler_leader_retry, 1),
        ):
            if value < minimum:
                raise ConfigError(f"{PREFIX}{name.upper()}={value} is invalid; give at least {minimum}.")

    def with_defaults(self) -> Config:
        """Fill in the embedded defaults: a SQLite file and a secret key under instance_dir."""
        instance = Path(self.instance_dir)
        changes: dict[str, Any] = {}
        if not self.database_url:
            instance.mkdir(parents=True, exist_ok=True)
            changes["database_url"] = f"sqlite:///{(instance / 'switchboard.db').resolve()}"
        if not self.secret_key:
            changes["secret_key"] = _instance_secret(instance)
        if not self.attachments_dir:
            changes["attachments_dir"] = str((instance / "attachments").resolve())
        if self.public_url and self.public_url.startswith("https://"):
            changes["secure_cookies"] = True
        return _replace(self, changes)


def workspace_settings_from(config: Config) -> WorkspaceSettings:
    """Return the settings that ``inbox`` functions read, taken from ``config``."""
    return WorkspaceSettings(
        outside_window=OutsideWindow(config.whatsapp_outside_window),
        email_fallback=EmailFallback(config.whatsapp_email_fallback),
        opt_out_keywords=frozenset(keyword_list(config.whatsapp_opt_out_keywords)),
        opt_in_keywords=frozenset(keyword_list(config.whatsapp_opt_in_keywords)),
    )


def proactive_settings_from(config: Config) -> ProactiveSettings:
    """Return the proactive-update rules from ``config``.

    Raises ``ValueError`` whose message starts with the offending setting's name.
    """
    zone = zone_or_none(config.time_zone)
    if zone is None:
        raise ValueError(f"TIME_ZONE={config.time_zone!r} is invalid; give an IANA name such as Europe/Berlin.")
    try:
        business_hours = parse_business_hours(config.business_hours, zone)
    except ValueError as error:
        raise ValueError(f"BUSINESS_HOURS: {error}") from None
    try:
        quiet_hours = parse_quiet_hours(config.quiet_hours)
    except ValueError as error:
        raise ValueError(f"QUIET_HOURS: {error}") from None
    return ProactiveSettings(
        workspace_zone=zone,
        quiet_hours=quiet_hours,
        business_hours=business_hours,
        daily_cap=config.proactive_daily_cap,
        catch_up=timedelta(hours=config.proactive_catch_up_hours),
        batch_size=config.proactive_batch_size,
    )


def keyword_list(value: str) -> list[str]:
    """Split a comma-separated keyword setting into upper-case keywords without blanks."""
    return [word.strip().upper() for word in value.split(",") if word.strip()]


def _replace(config: Config, changes: dict[str, Any]) -> Config:
    return Config(**{**{f.name: getattr(config, f.name) for f in fields(config)}, **changes})


def _instance_secret(instance: Path) -> str:
    """Return the secret key kept in instance/secret_key, creating it on first use.

    Only for the embedded setup: a deployment sets SWITCHBOARD_SECRET_KEY, so that every
    web process signs sessions with the same key.
    """
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _convert(name: str, annotation: Any, value: Any) -> Any:
    kind = str(annotation)
    try:
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if kind.startswith(("int", "float")) and isinstance(value, bool):
            raise ValueError("a TOML true or false is not a number")
        if kind.startswith("int"):
            if isinstance(value, float):
                raise ValueError("a TOML float is not a whole number")  # int() would drop the fraction
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("str") and "None" not in kind:
            return str(value).strip()
        if "None" in kind and value in ("", None):
            return None
        return value if not isinstance(value, str) else value.strip()
    except ValueError:
        if kind.startswith("int"):
            expected = "a whole number"
        elif kind.startswith("float"):
            expected = "a number"
        else:
            expected = "a valid value"
        raise ConfigError(f"{PREFIX}{name.upper()}={value!r} is invalid: expected {expected}.") from None
