"""Twilio webhooks: verify the signature, parse into the neutral model, hand to ``inbox``.

The signature covers the exact URL Twilio called. Behind a TLS-terminating proxy the
service sees ``http://127.0.0.1:5000/...`` while Twilio signed ``https://support.example/...``,
so when ``SWITCHBOARD_PUBLIC_URL`` is set the URL is rebuilt from it and the request's path
and query string.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, request

from channels.errors import ParseError, SignatureError
from channels.whatsapp import parse_inbound, parse_status, validate_signature
from gateway.auth import error_response
from inbox.delivery import record_delivery_status
from inbox.ingest import ingest_message, record_failed_payload
from inbox.models import Channel

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def signed_url(public_url: str | None) -> str:
    """Return the URL Twilio signed for this request."""
    if not public_url:
        return request.url
    query = request.query_string.decode("latin-1")
    return public_url.rstrip("/") + request.path + (f"?{query}" if query else "")


def _form(raw: bytes) -> dict[str, str]:
    # Parsed from the kept bytes, so the stored raw payload is exactly what was signed.
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def _verified_channel(channel_id: int, form: dict[str, str]) -> Channel | Any:
    """Return the WhatsApp channel when the request's signature is valid, else an error response."""
    state = current_app.extensions["switchboard"]
    with state.session_factory() as session:
        channel = session.get(Channel, channel_id)
        if channel is None or channel.kind != "whatsapp":
            return error_response(404, "not_found", f"No WhatsApp channel {channel_id}.")
        session.expunge(channel)
    auth_token = channel.settings.get("auth_token") or ""
    if not auth_token:
        # Without a token any request would "verify"; refuse instead.
        log.error("WhatsApp channel %s has no Twilio auth token; rejecting its webhooks", channel_id)
        return error_response(403, "invalid_signature", "The channel has no Twilio auth token configured.")
    try:
        validate_signature(
            auth_token,
            signed_url(state.config.public_url),
            form,
            request.headers.get("X-Twilio-Signature"),
        )
    except SignatureError as error:
        log.warning("rejected Twilio webhook for channel %s: %s", channel_id, error)
        return error_response(403, "invalid_signature", "The X-Twilio-Signature header is missing or invalid.")
    return channel


@blueprint.post("/twilio/<id:channel_id>/messages")
def twilio_message(channel_id: int) -> Any:
    raw = request.get_data()
    form = _form(raw)
    channel = _verified_channel(channel_id, form)
    if not isinstance(channel, Channel):
        return channel
    state = current_app.extensions["switchboard"]

    try:
        inbound = parse_inbound(form, raw)
    except ParseError as error:
        with state.session_factory() as session:
            payload_id = record_failed_payload(session, channel_id, raw, "twilio-form", str(error))
        log.warning("unparseable Twilio message on channel %s kept as payload %s: %s", channel_id, payload_id, error)
        return error_response(400, "invalid_payload", str(error))

    try:
        with state.session_factory() as session:
            result = ingest_message(session, channel_id, inbound)
    except Exception as error:
        # Keep the payload for an admin, and answer 500 so that Twilio retries; a retry of
        # a payload that failed is processed again, not taken for a duplicate.
        log.exception("storing Twilio message %s on channel %s failed", inbound.provider_message_id, channel_id)
        with state.session_factory() as session:
            record_failed_payload(session, channel_id, raw, "twilio-form", f"storing failed: {error}")
        return error_response(500, "storing_failed", "The message could not be stored; it was kept for retry.")
    if result.duplicate:
        log.info("replayed Twilio message %s on channel %s ignored", inbound.provider_message_id, channel_id)
    elif inbound.media:
        state.media_wakeup.set()  # downloads run in the workers, after this answer
    return Response(EMPTY_TWIML, mimetype="text/xml")


@blueprint.post("/twilio/<id:channel_id>/status")
def twilio_status(channel_id: int) -> Any:
    form = _form(request.get_data())
    channel = _verified_channel(channel_id, form)
    if not isinstance(channel, Channel):
        return channel
    try:
        status = parse_status(form)
    except ParseError as error:
        log.warning("unparseable Twilio status callback on channel %s: %s", channel_id, error)
        return error_response(400, "invalid_payload", str(error))
    state = current_app.extensions["switchboard"]
    with state.session_factory() as session:
        changed = record_delivery_status(session, channel_id, status)
    log.info(
        "Twilio status %s for %s on channel %s %s",
        status.state.value, status.provider_message_id, channel_id,
        "applied" if changed else "not applied (stale, or kept until the send is recorded)",
    )
    return Response(status=204)
