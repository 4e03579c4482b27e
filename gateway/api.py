"""The JSON API under /api/v1. Views are thin: they validate, call one ``inbox`` function and return its result.

Authentication and CSRF are enforced for every route by ``gateway.auth``'s guard.
Errors are JSON ``{"error": {"code", "message", "field"?}}`` with a 4xx status.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file
from werkzeug.exceptions import HTTPException
from sqlalchemy import select

from channels.types import Attachment as AttachmentData
from channels.whatsapp.twilio import ContentApiError, TwilioSettings
from gateway.auth import current_agent, db, error_response, require_role
from gateway.channel_settings import channels_with_health, twilio_settings
from gateway.openapi import OPENAPI
from gateway.reprocess import reprocess_payload
from gateway.whatsapp_templates import TemplateCatalog, parse_template_reply, template_list_to_dict
from inbox.channel_config import whatsapp_provider
from inbox.contacts import rename_contact
from inbox.conversations import get_conversation_or_404, list_conversations, mark_conversation_read
from inbox.errors import Conflict, InboxError, InvalidInput, NotFound
from inbox.events import latest_event_id
from inbox.fallback import send_by_email
from inbox.held import cancel_held_reply
from inbox.models import Attachment, Channel, Conversation, PayloadStatus, RawPayload, Role
from inbox.replies import create_reply
from inbox.serialize import conversation_to_dict, isoformat, message_to_dict
from inbox.storage import attachment_store

log = logging.getLogger(__name__)

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    status = 409 if isinstance(error, Conflict) else {"not_found": 404}.get(error.code, 400)
    return error_response(status, error.code, error.message, error.field)


@blueprint.errorhandler(ContentApiError)
def _content_api_error(error: ContentApiError) -> Any:
    log.warning("Twilio's Content API failed: %s", error)
    return error_response(
        502, "templates_unavailable", f"The WhatsApp templates could not be read from Twilio: {error}"
    )


def init_app(app: Flask) -> None:
    config = app.extensions["switchboard"].config
    app.extensions["whatsapp_templates"] = TemplateCatalog(config.whatsapp_template_refresh)
    # Unmatched URLs never reach the blueprint's handlers, so JSON errors for /api/ paths
    # are registered on the app.
    app.register_error_handler(404, _not_found)
    app.register_error_handler(405, _method_not_allowed)


def _not_found(error: HTTPException) -> Any:
    if request.path.startswith("/api/"):
        return error_response(404, "not_found", "No such API route.")
    return error


def _method_not_allowed(error: HTTPException) -> Any:
    if request.path.startswith("/api/"):
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}.")
    return error


def _int_arg(name: str, default: int, minimum: int = 1, maximum: int = 200) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, not {value!r}.", field=name) from None
    if not minimum <= number <= maximum:
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}.", field=name)
    return number


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body


@blueprint.get("/openapi.json")
def openapi() -> Any:
    return jsonify(OPENAPI)


@blueprint.get("/me")
def me() -> Any:
    agent = current_agent()
    assert agent is not None
    return jsonify({"id": agent.id, "email": agent.email, "name": agent.name, "role": agent.role})


@blueprint.get("/conversations")
def conversations() -> Any:
    session = db()
    # Read before the snapshot: a client that replays events after this id misses nothing
    # committed while the page was being read (it may see some twice, and dedupes by id).
    snapshot_event_id = latest_event_id(session)
    page = list_conversations(session, limit=_int_arg("limit", 50), cursor=request.args.get("cursor"))
    return jsonify(
        {
            "items": [conversation_to_dict(c) for c in page.items],
            "next_cursor": page.next_cursor,
            "last_event_id": snapshot_event_id,
        }
    )


@blueprint.get("/conversations/<id:conversation_id>")
def conversation(conversation_id: int) -> Any:
    found = get_conversation_or_404(db(), conversation_id)
    return jsonify(
        {**conversation_to_dict(found), "messages": [message_to_dict(m) for m in found.messages]}
    )


@blueprint.post("/conversations/<id:conversation_id>/messages")
def reply(conversation_id: int) -> Any:
    agent = current_agent()
    assert agent is not None
    session = db()
    attachments: list[AttachmentData] = []
    template = None
    if request.mimetype == "multipart/form-data":
        # A reply with files: the text in the field "text", each file in a field "attachments".
        text = request.form.get("text", "")
        for upload in request.files.getlist("attachments"):
            attachments.append(AttachmentData(
                upload.filename or "attachment", upload.mimetype or "application/octet-stream", upload.read()
            ))
    else:
        body = _json_body()
        if "template" in body:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} not found", field="conversation_id")
            if conversation.channel.kind != "whatsapp":
                raise InvalidInput("Templates can only be sent on WhatsApp channels.", field="template")
            text, template = parse_template_reply(
                _template_catalog(), _twilio_settings(conversation.channel), body["template"]
            )
        else:
            text = body.get("text")
            if not isinstance(text, str):
                raise InvalidInput("text is required and must be a string.", field="text")
    message = create_reply(session, conversation_id, agent.id, text, attachments, template=template)
    data = message_to_dict(message)
    session.commit()
    current_app.extensions["switchboard"].outbox_wakeup.set()
    log.info(
        "agent %s %s message %s in conversation %s",
        agent.id, "held" if data["held"] else "queued", message.id, conversation_id,
    )
    return jsonify(data), 201


@blueprint.post("/messages/<id:message_id>/cancel")
def cancel_held(message_id: int) -> Any:
    session = db()
    message = cancel_held_reply(session, message_id)
    data = message_to_dict(message)
    session.commit()
    return jsonify(data)


@blueprint.post("/messages/<id:message_id>/email")
def resend_by_email(message_id: int) -> Any:
    agent = current_agent()
    assert agent is not None
    session = db()
    email = send_by_email(session, message_id, agent.id)
    data = message_to_dict(email)
    session.commit()
    current_app.extensions["switchboard"].outbox_wakeup.set()
    log.info("agent %s resent message %s by email as message %s", agent.id, message_id, email.id)
    return jsonify(data), 201


@blueprint.get("/channels/<id:channel_id>/templates")
def templates(channel_id: int) -> Any:
    channel = db().get(Channel, channel_id)
    if channel is None or channel.kind != "whatsapp":
        raise NotFound(f"No WhatsApp channel {channel_id}.", field="channel_id")
    refresh = request.args.get("refresh", "").lower() in ("1", "true", "yes")
    return jsonify(template_list_to_dict(_template_catalog().approved(_twilio_settings(channel), refresh=refresh)))


def _template_catalog() -> TemplateCatalog:
    return current_app.extensions["whatsapp_templates"]


def _twilio_settings(channel: Channel) -> TwilioSettings:
    if whatsapp_provider(channel) == "meta":
        # TODO: list Meta's message templates and send them through the outbox (send_template exists).
        raise InvalidInput(
            "Template replies are not available on Meta WhatsApp Cloud API channels yet.", field="template"
        )
    return twilio_settings(channel.address, channel.settings, current_app.extensions["switchboard"].config)


@blueprint.post("/conversations/<id:conversation_id>/read")
def read(conversation_id: int) -> Any:
    session = db()
    mark_conversation_read(session, conversation_id)
    session.commit()
    return Response(status=204)


@blueprint.patch("/contacts/<id:contact_id>")
def contact(contact_id: int) -> Any:
    name = _json_body().get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidInput("name must be a string, or null to use the channel's name again.", field="name")
    session = db()
    found = rename_contact(session, contact_id, name)
    data = {"id": found.id, "name": found.name, "name_set_by_agent": found.name_set_by_agent}
    session.commit()
    return jsonify(data)


@blueprint.get("/attachments/<id:attachment_id>")
def attachment(attachment_id: int) -> Any:
    found = db().get(Attachment, attachment_id)
    if found is None:
        raise NotFound(f"Attachment {attachment_id} not found.")
    if found.storage_key:
        path = attachment_store(db()).path(found.storage_key)
        if not path.is_file():
            log.error("attachment %s: file %s is missing from the attachment folder", attachment_id, found.storage_key)
            raise NotFound(f"Attachment {attachment_id} is missing from the attachment folder; ask an admin.")
        response = send_file(path, mimetype="application/octet-stream", conditional=True, max_age=0)
    elif found.data is not None:
        response = Response(found.data, mimetype="application/octet-stream")
    elif found.fetch_status == "pending":
        raise NotFound(f"Attachment {attachment_id} is still being downloaded from the provider; try again shortly.")
    else:
        raise NotFound(f"Attachment {attachment_id} was not stored: {found.omitted_reason}")
    # Customer files are never rendered by the browser in our origin.
    response.headers["Content-Disposition"] = content_disposition(found.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def content_disposition(filename: str) -> str:
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{ascii_name or 'attachment'}\"; filename*=UTF-8''{quote(filename)}"


@blueprint.get("/channels")
def channels() -> Any:
    agent = current_agent()
    show_settings = agent is not None and agent.role == Role.ADMIN.value
    public_url = current_app.extensions["switchboard"].config.public_url or request.host_url
    return jsonify({"items": channels_with_health(public_url, include_settings=show_settings)})


@blueprint.get("/payloads")
@require_role(Role.ADMIN)
def payloads() -> Any:
    status = request.args.get("status", PayloadStatus.FAILED.value)
    if status not in {s.value for s in PayloadStatus}:
        raise InvalidInput(f"Unknown status {status!r}; use failed or processed.", field="status")
    rows = db().scalars(
        select(RawPayload)
        .where(RawPayload.status == status)
        .order_by(RawPayload.id.desc())
        .limit(_int_arg("limit", 50))
    )
    return jsonify(
        {
            "items": [
                {
                    "id": row.id,
                    "channel_id": row.channel_id,
                    "format": row.format,
                    "status": row.status,
                    "error": row.error,
                    "size": len(row.body),
                    "received_at": isoformat(row.received_at),
                }
                for row in rows
            ]
        }
    )


@blueprint.post("/payloads/<id:payload_id>/reprocess")
@require_role(Role.ADMIN)
def reprocess(payload_id: int) -> Any:
    result = reprocess_payload(current_app.extensions["switchboard"].session_factory, payload_id)
    return jsonify(result)
