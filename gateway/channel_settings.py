"""Provider settings of a channel: from CLI options to the stored JSON, and back to the
settings objects that ``channels`` adapters take."""

from __future__ import annotations

from typing import Any

from channels.email.imap import ImapSettings
from channels.email.smtp import SmtpSettings
from channels.whatsapp import TwilioSettings
from gateway.config import Config
from inbox.models import Channel

SMTP_SECURITY = ("starttls", "ssl", "none")


def imap_settings(channel: Channel) -> ImapSettings:
    settings = channel.settings
    return ImapSettings(
        host=settings["imap_host"],
        port=int(settings["imap_port"]),
        username=settings["imap_username"],
        password=settings["imap_password"],
        use_ssl=bool(settings.get("imap_ssl", True)),
        folder=settings.get("imap_folder") or "INBOX",
        **({"max_message_bytes": int(settings["max_message_bytes"])} if settings.get("max_message_bytes") else {}),
    )


def smtp_settings(channel_name: str, address: str, settings: dict[str, Any]) -> SmtpSettings:
    return SmtpSettings(
        host=settings["smtp_host"],
        port=int(settings["smtp_port"]),
        username=settings.get("smtp_username") or None,
        password=settings.get("smtp_password") or None,
        security=settings.get("smtp_security", "starttls"),
        from_address=address,
        from_name=channel_name,
    )


def twilio_settings(address: str, settings: dict[str, Any], config: Config) -> TwilioSettings:
    return TwilioSettings(
        account_sid=settings["account_sid"],
        auth_token=settings["auth_token"],
        from_number=address,
        api_base_url=config.twilio_api_base_url,
    )
