"""``switchboard simulate whatsapp``: a signed Twilio webhook, for trying the inbox without Twilio."""

from __future__ import annotations

import secrets

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from channels.errors import ParseError
from channels.whatsapp import normalize_phone
from gateway.config import Config
from inbox.models import Channel


class SimulationError(Exception):
    """The simulated webhook could not be built or was not accepted."""


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

    Returns a one-line description of the outcome. Raises ``SimulationError`` when no
    WhatsApp channel fits, the number is invalid, or the service rejects the request.
    """
    query = select(Channel).where(Channel.kind == "whatsapp").order_by(Channel.id)
    if channel_id is not None:
        query = query.where(Channel.id == channel_id)
    # The session closes before the POST: on SQLite an open transaction would hold the
    # write lock that the service needs to store the message.
    with session_factory() as session:
        channel = session.scalar(query.limit(1))
        if channel is not None:
            session.expunge(channel)
    if channel is None and channel_id is not None:
        raise SimulationError(
            f"No WhatsApp channel {channel_id}. `switchboard channel list` shows the channels."
        )
    if channel is None:
        raise SimulationError(
            "No WhatsApp channel found. Add one first: switchboard channel add whatsapp "
            "--name Demo --number +14155238886 --account-sid AC... --auth-token ..."
        )
    if not base_url.startswith(("http://", "https://")):
        raise SimulationError(f"--url {base_url!r} needs a scheme, e.g. http://127.0.0.1:5000.")
    try:
        sender = normalize_phone(sender)
    except ParseError as error:
        raise SimulationError(f"--from: {error}") from error
    if not text.strip():
        raise SimulationError("The message text is empty.")

    path = f"/webhooks/twilio/{channel.id}/messages"
    target = base_url.rstrip("/") + path
    # The service checks the signature against its public URL when one is configured.
    signed = (config.public_url.rstrip("/") + path) if config.public_url else target
    form = build_message_form(channel, sender, text, profile_name)
    signature = RequestValidator(channel.settings.get("auth_token", "")).compute_signature(signed, form)
    try:
        response = requests.post(target, data=form, headers={"X-Twilio-Signature": signature}, timeout=15)
    except requests.ConnectionError as error:
        raise SimulationError(f"Cannot connect to Switchboard at {base_url}. Is `make run` running?") from error
    except requests.RequestException as error:
        raise SimulationError(f"The request to {target} failed: {error}") from error
    if response.status_code == 403:
        raise SimulationError(
            "Switchboard rejected the signature (403). If the service runs with "
            "SWITCHBOARD_PUBLIC_URL, set the same value for this command."
        )
    if response.status_code != 200:
        raise SimulationError(f"Switchboard returned {response.status_code}: {response.text[:300]}")
    return f"Delivered message {form['MessageSid']} from {sender} to channel {channel.id} ({channel.name})."
