"""Twilio and Meta webhooks: verify the signature, parse into the neutral model, hand to ``inbox``.

Twilio's signature covers the exact URL Twilio called. Behind a TLS-terminating proxy the
service sees ``http://127.0.0.1:5000/...`` while Twilio signed ``https://support.example/...``,
so when ``SWITCHBOARD_PUBLIC_URL`` is set the URL is rebuilt from it and the request's path
and query string. Meta's signature covers the body alone.

A disabled channel takes no customer messages: after the signature check its webhooks
reject them with 503. Meta then retries them for a period it sets, and Twilio
records the failure and calls the number's fallback URL, if one is set. Delivery reports of
messages sent before the channel was disabled are still recorded.

Twilio also fetches the attachments of our WhatsApp replies from here
(``/webhooks/twilio/<channel>/media/<token>``). Twilio's fetch carries no credentials, so
the link itself is the credential: a token signed with the secret key that names one
attachment of one outbound message and expires (``SWITCHBOARD_WHATSAPP_MEDIA_URL_LIFETIME``).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from channels.errors import ParseError, SignatureError
from channels.whatsapp import (
    RAW_FORMAT,
    STATUS_RAW_FORMAT,
    is_status_callback,
    parse_inbound,
    parse_status,
    validate_signature,
)
from channels.whatsapp import meta
from gateway.api import content_disposition
from gateway.auth import error_response
from gateway.group_commit import payload_committer
from gateway.webhook_worker import wake_webhook_workers
from inbox.channel_config import find_meta_channel, whatsapp_provider
from inbox.delivery import record_delivery_status
from inbox.ingest import ingest_message, record_failed_payload
from inbox.models import Attachment, Channel, Direction
from inbox.storage import attachment_store

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# How long a channel's auth token and enabled state are used without reading them again. A
# signature that fails with a cached token is checked once more with the stored one, so a new
# token applies at once. The old token is still accepted until its cache entry expires, and a
# channel disabled in another process still takes messages here until then.
AUTH_TOKEN_CACHE_SECONDS = 30.0
TWILIO_CACHE_KEY = "switchboard.twilio_auth_tokens"
_MEDIA_TOKEN_SALT = "switchboard.twilio-media"


def signed_url(public_url: str | None) -> str:
    """Return the URL Twilio signed for this request."""
    if not public_url:
        return request.url
    query = request.query_string.decode("latin-1")
    return public_url.rstrip("/") + request.path + (f"?{query}" if query else "")


def _form(raw: bytes) -> dict[str, str]:
    # Parsed from the kept bytes, so the stored raw payload is exactly what was signed.
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def _auth_token(channel_id: int, *, refresh: bool = False) -> str | None:
    """Return the channel's Twilio auth token ("" when it has none), or None for no Twilio WhatsApp channel.

    Tokens are kept for ``AUTH_TOKEN_CACHE_SECONDS``, so that a webhook does not pay for a
    transaction of its own (on SQLite every transaction takes the write lock).
    """
    return _twilio_channel(channel_id, refresh=refresh)[0]


def _twilio_channel(channel_id: int, *, refresh: bool = False) -> tuple[str | None, bool]:
    """Return the channel's cached auth token, as ``_auth_token`` does, and whether it is enabled."""
    cache = current_app.extensions.setdefault(TWILIO_CACHE_KEY, {})
    now = time.monotonic()
    cached = cache.get(channel_id)
    if cached is not None and not refresh and now - cached[0] < AUTH_TOKEN_CACHE_SECONDS:
        return cached[1], cached[2]
    state = current_app.extensions["switchboard"]
    with state.session_factory() as session:
        channel = session.get(Channel, channel_id)
        # A Meta channel has no Twilio URLs: nobody can sign for them, and that is no error.
        is_twilio = channel is not None and whatsapp_provider(channel) == "twilio"
        token = (channel.settings.get("auth_token") or "") if is_twilio else None
        active = bool(channel and channel.is_active)
    cache[channel_id] = (now, token, active)
    return token, active


def forget_cached_channel(app: Any, channel_id: int) -> None:
    """Drop this process's cached auth token and state of a channel, after an admin changed it."""
    app.extensions.get(TWILIO_CACHE_KEY, {}).pop(channel_id, None)


def _channel_disabled(channel_id: int) -> Any | None:
    """Return a 503 response when the channel is disabled, else None.

    The cached state is read again before a rejection, so a channel enabled a moment ago
    takes messages at once.
    """
    if _twilio_channel(channel_id)[1] or _twilio_channel(channel_id, refresh=True)[1]:
        return None
    log.info("rejected a Twilio message on channel %s, which is disabled", channel_id)
    return disabled_response(channel_id)


def disabled_response(channel_id: int) -> Any:
    return error_response(
        503, "channel_disabled", f"Channel {channel_id} is disabled; an admin can enable it on the Channels page."
    )


def _signature_problem(channel_id: int, form: dict[str, str]) -> Any | None:
    """Return an error response unless the request carries a valid signature for the channel."""
    state = current_app.extensions["switchboard"]
    url = signed_url(state.config.public_url)
    signature = request.headers.get("X-Twilio-Signature")
    auth_token = _auth_token(channel_id)
    for attempt in range(2):
        if auth_token is None:
            return error_response(404, "not_found", f"No Twilio WhatsApp channel {channel_id}.")
        if not auth_token:
            # Without a token any request would "verify", so the request is rejected.
            log.error("WhatsApp channel %s has no Twilio auth token; rejecting its webhooks", channel_id)
            return error_response(403, "invalid_signature", "The channel has no Twilio auth token configured.")
        try:
            validate_signature(auth_token, url, form, signature)
            return None
        except SignatureError as error:
            if attempt == 0 and signature:
                # The token may have been changed since it was cached: check with the stored one.
                auth_token = _auth_token(channel_id, refresh=True)
                continue
            log.warning("rejected Twilio webhook for channel %s: %s", channel_id, error)
    return error_response(403, "invalid_signature", "The X-Twilio-Signature header is missing or invalid.")


@blueprint.post("/twilio/<id:channel_id>/messages")
def twilio_message(channel_id: int) -> Any:
    raw = request.get_data()
    form = _form(raw)
    problem = _signature_problem(channel_id, form)
    if problem is not None:
        return problem
    if is_status_callback(form):
        # A sender or Messaging Service whose status callback URL is this one posts the
        # delivery reports here. Parsed as messages they would come from our own number.
        log.info("Twilio status callback posted to the messages URL of channel %s", channel_id)
        return _queue_twilio_status(channel_id, raw, form)
    disabled = _channel_disabled(channel_id)
    if disabled is not None:
        return disabled
    state = current_app.extensions["switchboard"]

    try:
        inbound = parse_inbound(form, raw)
    except ParseError as error:
        with state.session_factory() as session:
            payload_id = record_failed_payload(session, channel_id, raw, RAW_FORMAT, str(error))
        log.warning("unparseable Twilio message on channel %s kept as payload %s: %s", channel_id, payload_id, error)
        return error_response(400, "invalid_payload", str(error))

    # Stored and acknowledged here, then ingested by the webhook worker (see inbox.webhook_queue).
    try:
        queued = payload_committer(state).store(channel_id, raw, RAW_FORMAT)
    except Exception:
        # Nothing was stored, so Twilio must retry: it does on a 5xx.
        log.exception("storing Twilio message %s on channel %s failed", inbound.provider_message_id, channel_id)
        return error_response(500, "storing_failed", "The message could not be stored; send it again.")
    if queued:
        wake_webhook_workers(state)
    else:
        log.info("replayed Twilio message %s on channel %s ignored", inbound.provider_message_id, channel_id)
    return Response(EMPTY_TWIML, mimetype="text/xml")


@blueprint.post("/twilio/<id:channel_id>/status")
def twilio_status(channel_id: int) -> Any:
    raw = request.get_data()
    form = _form(raw)
    problem = _signature_problem(channel_id, form)
    if problem is not None:
        return problem
    return _queue_twilio_status(channel_id, raw, form)


def _queue_twilio_status(channel_id: int, raw: bytes, form: dict[str, str]) -> Any:
    """Store a signed status callback for the webhook worker and return the response to Twilio."""
    try:
        status = parse_status(form)
    except ParseError as error:
        log.warning("unparseable Twilio status callback on channel %s: %s", channel_id, error)
        return error_response(400, "invalid_payload", str(error))
    # Stored and acknowledged here, then applied by the webhook worker (see inbox.webhook_queue).
    state = current_app.extensions["switchboard"]
    try:
        queued = payload_committer(state).store(channel_id, raw, STATUS_RAW_FORMAT)
    except Exception:
        # Nothing was stored, so Twilio must retry: it does on a 5xx.
        log.exception("storing Twilio status %s for %s on channel %s failed",
                      status.state.value, status.provider_message_id, channel_id)
        return error_response(500, "storing_failed", "The status could not be stored; send it again.")
    if queued:
        wake_webhook_workers(state)
    else:
        # Twilio posts a callback again when our response was slow or lost, which is routine.
        log.debug("replayed Twilio status %s for %s on channel %s ignored",
                  status.state.value, status.provider_message_id, channel_id)
    return Response(status=204)


# --- Meta WhatsApp Cloud API ---------------------------------------------------------------

# A parsed message, rejected message or status of a Meta webhook.
RoutedItem = TypeVar("RoutedItem", meta.ParsedMessage, meta.RejectedMessage, meta.ParsedStatus)


def _meta_channel(channel_id: int) -> Channel | Any:
    """Return the channel when it is a Meta WhatsApp channel, else a 404 response."""
    state = current_app.extensions["switchboard"]
    with state.session_factory() as session:
        channel = session.get(Channel, channel_id)
        if channel is None or whatsapp_provider(channel) != "meta":
            return error_response(404, "not_found", f"No Meta WhatsApp channel {channel_id}.")
        session.expunge(channel)
    return channel


@blueprint.get("/meta/<id:channel_id>")
def meta_verification(channel_id: int) -> Any:
    """Return the challenge of Meta's subscription check when the verify token matches."""
    channel = _meta_channel(channel_id)
    if not isinstance(channel, Channel):
        return channel
    try:
        challenge = meta.verification_challenge(channel.settings.get("verify_token") or "", request.args)
    except SignatureError as error:
        log.warning("rejected Meta webhook verification for channel %s: %s", channel_id, error)
        return error_response(403, "invalid_verify_token", "The verify token does not match the channel's.")
    except ParseError as error:
        log.warning("invalid Meta webhook verification for channel %s: %s", channel_id, error)
        return error_response(400, "invalid_request", str(error))
    log.info("Meta webhook verification for channel %s succeeded", channel_id)
    response = Response(challenge, mimetype="text/plain")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.post("/meta/<id:channel_id>")
def meta_events(channel_id: int) -> Any:
    raw = request.get_data()
    channel = _meta_channel(channel_id)
    if not isinstance(channel, Channel):
        return channel
    try:
        meta.verify_signature(channel.settings.get("app_secret") or "", raw, request.headers.get(meta.SIGNATURE_HEADER))
    except SignatureError as error:
        log.warning("rejected Meta webhook for channel %s: %s", channel_id, error)
        return error_response(403, "invalid_signature", f"The {meta.SIGNATURE_HEADER} header is missing or invalid.")
    state = current_app.extensions["switchboard"]

    try:
        events = meta.parse_webhook(raw)
    except ParseError as error:
        with state.session_factory() as session:
            payload_id = record_failed_payload(session, channel_id, raw, meta.RAW_FORMAT, str(error))
        log.warning("unparseable Meta webhook on channel %s kept as payload %s: %s", channel_id, payload_id, error)
        return error_response(400, "invalid_payload", str(error))

    for description in events.ignored:
        log.info("Meta webhook on channel %s: ignored %s", channel_id, description)
    routes = _meta_routes(channel, events)
    disabled = _disabled_message_targets(routes, events)
    if disabled:
        # Nothing of this body is stored, because Meta's retry after the channel is enabled
        # again brings all of it. Statuses stored now would only be duplicates then.
        log.info("rejected a Meta webhook on channel %s: it carries messages for disabled channel(s) %s",
                 channel_id, ", ".join(str(target) for target in disabled))
        return disabled_response(disabled[0])
    failures = _store_meta_messages(routes, events) + _record_meta_statuses(routes, events)
    if failures:
        # Meta sends the whole body again; what was stored already is a duplicate then.
        return error_response(500, "storing_failed", "Some events could not be stored; they were kept for retry.")
    return Response(status=200)


def _meta_routes(channel: Channel, events: meta.WebhookEvents) -> dict[str, int | None]:
    """Map each phone number id in ``events`` to the channel that receives it, or None.

    Meta calls one URL per app, so a webhook can carry events of the app's other numbers.
    Another channel receives them only when it has the same app secret, because the
    signature proves possession of this channel's secret and nothing more.
    """
    phone_number_ids = {item.phone_number_id for item in [*events.messages, *events.statuses, *events.rejected]}
    app_secret = (channel.settings.get("app_secret") or "").encode()
    routes: dict[str, int | None] = {}
    state = current_app.extensions["switchboard"]
    with state.session_factory() as session:
        for phone_number_id in phone_number_ids:
            if phone_number_id == channel.settings.get("phone_number_id"):
                routes[phone_number_id] = channel.id
                continue
            other = find_meta_channel(session, phone_number_id)
            other_secret = (other.settings.get("app_secret") or "").encode() if other is not None else b""
            if other is not None and hmac.compare_digest(other_secret, app_secret):
                routes[phone_number_id] = other.id
            else:
                routes[phone_number_id] = None
                log.warning(
                    "Meta webhook on channel %s carries events of phone number id %s, which no "
                    "channel of the same app uses; they are ignored", channel.id, phone_number_id,
                )
    return routes


def _disabled_message_targets(routes: dict[str, int | None], events: meta.WebhookEvents) -> list[int]:
    """Return the disabled channels that messages in ``events`` are for, in id order."""
    targets = {target for target, _ in _routed(routes, [*events.messages, *events.rejected])}
    if not targets:
        return []
    state = current_app.extensions["switchboard"]
    with state.session_factory() as session:
        return sorted(session.scalars(
            select(Channel.id).where(Channel.id.in_(targets), Channel.is_active.is_(False))
        ))


def _routed(routes: dict[str, int | None], items: Iterable[RoutedItem]) -> Iterator[tuple[int, RoutedItem]]:
    """Yield each item whose phone number id has a channel, with that channel's id."""
    for item in items:
        target = routes.get(item.phone_number_id)
        if target is not None:
            yield target, item


def _store_meta_messages(routes: dict[str, int | None], events: meta.WebhookEvents) -> int:
    """Ingest each message, and keep each unparseable one as a failed payload. Returns the failures."""
    state = current_app.extensions["switchboard"]
    failures = 0
    for target, rejected in _routed(routes, events.rejected):
        with state.session_factory() as session:
            payload_id = record_failed_payload(session, target, rejected.raw, meta.RAW_FORMAT, rejected.error)
        log.warning("unparseable Meta message on channel %s kept as payload %s: %s", target, payload_id, rejected.error)

    for target, parsed in _routed(routes, events.messages):
        inbound = parsed.message
        try:
            with state.session_factory() as session:
                result = ingest_message(session, target, inbound)
        except Exception as error:
            log.exception("storing Meta message %s on channel %s failed", inbound.provider_message_id, target)
            with state.session_factory() as session:
                record_failed_payload(session, target, inbound.raw, meta.RAW_FORMAT, f"storing failed: {error}")
            failures += 1
            continue
        if result.duplicate:
            log.info("replayed Meta message %s on channel %s ignored", inbound.provider_message_id, target)
        elif inbound.media:
            state.media_wakeup.set()  # downloads run in the workers, after this answer
    return failures


def _record_meta_statuses(routes: dict[str, int | None], events: meta.WebhookEvents) -> int:
    """Apply each delivery report through the delivery state machine. Returns the failures."""
    state = current_app.extensions["switchboard"]
    failures = 0
    for target, parsed in _routed(routes, events.statuses):
        status = parsed.status
        try:
            with state.session_factory() as session:
                changed = record_delivery_status(session, target, status)
        except Exception:
            log.exception("recording Meta status %s for %s on channel %s failed",
                          status.state.value, status.provider_message_id, target)
            failures += 1
            continue
        log.info(
            "Meta status %s for %s on channel %s %s",
            status.state.value, status.provider_message_id, target,
            "applied" if changed else "not applied (stale, or kept until the send is recorded)",
        )
    return failures


def media_url(public_url: str, secret_key: str, channel_id: int, attachment_id: int) -> str:
    """Return the signed public URL that Twilio fetches an outbound attachment from."""
    token = URLSafeTimedSerializer(secret_key, salt=_MEDIA_TOKEN_SALT).dumps([channel_id, attachment_id])
    return f"{public_url.rstrip('/')}/webhooks/twilio/{channel_id}/media/{token}"


@blueprint.get("/twilio/<id:channel_id>/media/<token>")
def twilio_media(channel_id: int, token: str) -> Any:
    state = current_app.extensions["switchboard"]
    serializer = URLSafeTimedSerializer(state.config.secret_key, salt=_MEDIA_TOKEN_SALT)
    try:
        signed_channel, attachment_id = serializer.loads(token, max_age=state.config.whatsapp_media_url_lifetime)
    except SignatureExpired:
        log.warning("expired media link for channel %s requested", channel_id)
        return error_response(410, "expired", "This media link has expired.")
    except (BadSignature, ValueError, TypeError):
        return error_response(404, "not_found", "No such media.")
    if signed_channel != channel_id or not isinstance(attachment_id, int):
        return error_response(404, "not_found", "No such media.")

    with state.session_factory() as session:
        found = session.get(Attachment, attachment_id)
        # Only attachments of our own replies are served; customer files never leave this way.
        if (
            found is None
            or found.message.direction != Direction.OUTBOUND.value
            or found.message.channel_id != channel_id
        ):
            return error_response(404, "not_found", "No such media.")
        if found.storage_key:
            data = attachment_store(session).read(found.storage_key)
        elif found.data is not None:
            data = found.data
        else:
            return error_response(404, "not_found", "No such media.")
        response = Response(data, mimetype=found.content_type)
        filename = found.filename
    log.info("served attachment %s of channel %s to its provider", attachment_id, channel_id)
    response.headers["Content-Disposition"] = content_disposition(filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response

