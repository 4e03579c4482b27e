"""``switchboard simulate``: a customer's message, for trying the inbox and checking a channel.

``simulate whatsapp`` posts a signed provider webhook to the running service. A Twilio
channel gets Twilio's incoming-message form, signed in ``X-Twilio-Signature`` with the
channel's auth token over the URL the service checks. A Meta Cloud API channel gets the
Cloud API's ``messages`` webhook JSON, signed in ``X-Hub-Signature-256`` with the channel's
app secret over the body.

``simulate email`` appends a customer's mail to the channel's mailbox folder over IMAP, with
the channel's own settings, where the mailbox reader finds it like any new mail.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from channels.email.imap import ImapReader
from channels.errors import ChannelError, ParseError
from channels.whatsapp import meta, normalize_phone
from gateway.channel_settings import channel_tokens, imap_settings
from gateway.config import Config
from inbox.channel_config import whatsapp_provider
from inbox.models import Channel


# One address without a display name: a local part, "@" and a domain with a dot.
_ADDRESS = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+")


class SimulationError(Exception):
    """The simulated message could not be built or was not accepted."""


def build_message_form(channel: Channel, sender: str, text: str, profile_name: str | None) -> dict[str, str]:
    """Return the form Twilio posts for an incoming WhatsApp text message."""
    return {
        "SmsMessageSid": (sid := "SM" + secrets.token_hex(16)),
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": channel.settings.get("account_sid", ""),
        "MessagingServiceSid": "",
        "From": f"whatsapp:{sender}",
        "To": f"whatsapp:{channel.address}",
        "Body": text,
        "NumMedia": "0",
        "NumSegments": "1",
        "ProfileName": profile_name or "",
        "WaId": sender.lstrip("+"),
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def build_meta_webhook(channel: Channel, sender: str, text: str, profile_name: str | None) -> tuple[str, bytes]:
    """Return a new message id and the Cloud API webhook body of an incoming text message."""
    message_id = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
    wa_id = sender.lstrip("+")
    settings = channel.settings or {}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": channel.address.lstrip("+"),
            "phone_number_id": settings.get("phone_number_id", ""),
        },
        "contacts": [{"profile": {"name": profile_name or ""}, "wa_id": wa_id}],
        "messages": [{
            "from": wa_id,
            "id": message_id,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": text},
        }],
    }
    # Meta puts the WhatsApp Business Account id in entry.id; nothing here reads it.
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": str(settings.get("waba_id") or "0"), "changes": [{"field": "messages", "value": value}]}],
    }
    return message_id, json.dumps(document, ensure_ascii=False).encode()


def send_simulated_whatsapp(
    session_factory: sessionmaker[Session],
    config: Config,
    base_url: str,
    sender: str,
    text: str,
    channel_id: int | None = None,
    profile_name: str | None = None,
) -> str:
    """Post a signed inbound-message webhook to the service at ``base_url``.

    The webhook has the shape of the channel's provider, Twilio or Meta's Cloud API. Returns
    a one-line description of the outcome. Raises ``SimulationError`` when no WhatsApp
    channel fits, the number is invalid, the channel has no signing secret, or the service
    rejects the request.
    """
    channel = _find_channel(
        session_factory, "whatsapp", channel_id,
        "Add one first: switchboard channel add whatsapp "
        "--name Demo --number +14155238886 --account-sid AC... --auth-token ...",
    )
    if not channel.is_active:
        raise SimulationError(
            f"Channel {channel.id} ({channel.name}) is disabled, so the service rejects its webhooks. "
            f"`switchboard channel enable {channel.id}` puts it back in service."
        )
    if not base_url.startswith(("http://", "https://")):
        raise SimulationError(f"--url {base_url!r} needs a scheme, e.g. http://127.0.0.1:5000.")
    try:
        sender = normalize_phone(sender)
    except ParseError as error:
        raise SimulationError(f"--from: {error}") from error
    if not text.strip():
        raise SimulationError("The message text is empty.")

    on_meta = whatsapp_provider(channel) == "meta"
    if on_meta:
        message_id, response = _post_meta(channel, base_url, sender, text, profile_name)
    else:
        message_id, response = _post_twilio(channel, config, base_url, sender, text, profile_name)
    if response.status_code == 403:
        if on_meta:
            hint = ("The service checks it with the app secret in its own database, so run this "
                    "command with the service's SWITCHBOARD_DATABASE_URL.")
        else:
            hint = "If the service runs with SWITCHBOARD_PUBLIC_URL, set the same value for this command."
        raise SimulationError(f"Switchboard rejected the signature (403). {hint}")
    if response.status_code != 200:
        raise SimulationError(f"Switchboard returned {response.status_code}: {response.text[:300]}")
    return f"Delivered message {message_id} from {sender} to channel {channel.id} ({channel.name})."


def _find_channel(
    session_factory: sessionmaker[Session], kind: str, channel_id: int | None, how_to_add: str
) -> Channel:
    """Return channel ``channel_id``, or the first channel of ``kind``, detached from its session.

    Raises ``SimulationError`` when there is none; ``how_to_add`` ends the message when the
    workspace has no channel of the kind yet.
    """
    query = select(Channel).where(Channel.kind == kind).order_by(Channel.id)
    if channel_id is not None:
        query = query.where(Channel.id == channel_id)
    # The session closes before the message goes out: on SQLite an open transaction would
    # hold the write lock that the service needs to store the message.
    with session_factory() as session:
        channel = session.scalar(query.limit(1))
        if channel is not None:
            session.expunge(channel)
    label = "WhatsApp" if kind == "whatsapp" else kind
    if channel is None and channel_id is not None:
        raise SimulationError(f"No {label} channel {channel_id}. `switchboard channel list` shows the channels.")
    if channel is None:
        raise SimulationError(f"No {label} channel found. {how_to_add}")
    return channel


def _post_twilio(
    channel: Channel, config: Config, base_url: str, sender: str, text: str, profile_name: str | None
) -> tuple[str, requests.Response]:
    path = f"/webhooks/twilio/{channel.id}/messages"
    target = base_url.rstrip("/") + path
    # The service checks the signature against its public URL when one is configured.
    signed = (config.public_url.rstrip("/") + path) if config.public_url else target
    form = build_message_form(channel, sender, text, profile_name)
    signature = RequestValidator(channel.settings.get("auth_token", "")).compute_signature(signed, form)
    return form["MessageSid"], _post(target, base_url, form, {"X-Twilio-Signature": signature})


def _post_meta(
    channel: Channel, base_url: str, sender: str, text: str, profile_name: str | None
) -> tuple[str, requests.Response]:
    app_secret = (channel.settings or {}).get("app_secret") or ""
    if not app_secret:
        raise SimulationError(
            f"Channel {channel.id} has no Meta app secret, so no webhook for it can be signed. "
            f"Set it with `switchboard channel set {channel.id} app_secret=-`."
        )
    message_id, body = build_meta_webhook(channel, sender, text, profile_name)
    headers = {"Content-Type": "application/json", meta.SIGNATURE_HEADER: meta.signature(app_secret, body)}
    target = f"{base_url.rstrip('/')}/webhooks/meta/{channel.id}"
    return message_id, _post(target, base_url, body, headers)


def _post(target: str, base_url: str, data: dict[str, str] | bytes, headers: dict[str, str]) -> requests.Response:
    try:
        return requests.post(target, data=data, headers=headers, timeout=15)
    except requests.ConnectionError as error:
        raise SimulationError(
            f"Cannot connect to Switchboard at {base_url}. Is `make run` running? If it listens on "
            "another port, run this command with the same SWITCHBOARD_PORT, or give --url."
        ) from error
    except requests.RequestException as error:
        raise SimulationError(f"The request to {target} failed: {error}") from error


def build_email(channel: Channel, sender: str, name: str | None, subject: str, text: str) -> EmailMessage:
    """Return a plain-text mail from ``sender`` to the channel's address, as a customer's client writes it."""
    message = EmailMessage()
    message["From"] = formataddr((name or "", sender))
    message["To"] = channel.address
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message.set_content(text)
    return message


def deliver_simulated_email(
    session_factory: sessionmaker[Session],
    sender: str,
    text: str,
    channel_id: int | None = None,
    name: str | None = None,
    subject: str = "Test message",
) -> str:
    """Put a customer's mail into the channel's mailbox folder with IMAP APPEND.

    The mailbox reader then imports it as it imports any new mail, so this also checks the
    channel's IMAP settings. Returns a one-line description of the outcome. Raises
    ``SimulationError`` when no email channel fits, the address is invalid, or the mail
    server rejects the connection or the message.
    """
    channel = _find_channel(
        session_factory, "email", channel_id,
        "Add one first (docs/quickstart.md, step 5): "
        "switchboard channel add email --name Support --address support@example.com ...",
    )
    if not channel.is_active:
        raise SimulationError(
            f"Channel {channel.id} ({channel.name}) is disabled, so its mailbox is not read. "
            f"`switchboard channel enable {channel.id}` puts it back in service."
        )
    sender = sender.strip()
    if not _ADDRESS.fullmatch(sender):
        raise SimulationError(f"--from: {sender!r} is not an email address such as grace@example.com.")
    if sender.lower() == channel.address.lower():
        raise SimulationError(
            f"--from: {sender} is the channel's own address, so a reply would go to its own mailbox. "
            "Use a customer's address."
        )
    if not text.strip():
        raise SimulationError("The message text is empty.")
    if "\r" in subject or "\n" in subject:
        raise SimulationError("--subject must be one line.")

    mail = build_email(channel, sender, name, subject, text)
    settings = imap_settings(channel, channel_tokens(session_factory, channel.id, channel.settings))
    try:
        with ImapReader(settings) as mailbox:
            mailbox.append(mail.as_bytes(), datetime.now(UTC), seen=False)
    except ChannelError as error:
        raise SimulationError(f"The mail was not delivered. {error}") from error
    return (
        f"Delivered mail {mail['Message-ID']} from {sender} into {settings.folder!r} of channel "
        f"{channel.id} ({channel.name}). The running service imports it at its next check of the mailbox."
    )
