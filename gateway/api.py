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
from channels.whatsapp.meta import MessageTemplatesError, MetaSettings
from channels.whatsapp.twilio import ContentApiError, TwilioSettings
from gateway import collab_api
from gateway.auth import current_agent, db, error_response, require_role
from gateway.channel_settings import channels_with_health, meta_settings, twilio_settings
from gateway.openapi import OPENAPI
from gateway.reprocess import reprocess_payload
from gateway.whatsapp_templates import (
    TemplateCatalog,
    TemplateList,
    parse_meta_template_reply,
    parse_template_reply,
    template_list_to_dict,
)
from inbox.activity import activity_to_dict, list_activities
from inbox.assignment import online_agent_ids, open_assigned_counts
from inbox.channel_config import whatsapp_provider
from inbox.conversations import (
    get_conversation_or_404, list_conversations, list_messages, mark_conversation_read, parse_before, parse_filter,
)
from inbox.errors import Conflict, InboxError, InvalidInput, NotFound
from inbox.events import latest_event_id
from inbox.fallback import send_by_email
from inbox.held import cancel_held_reply
from inbox.merge import merge_conversations
from inbox.notes import list_notes, note_to_dict
from inbox.models import Agent, Attachment, Channel, Conversation, PayloadStatus, RawPayload, Role, Team, utcnow
from inbox.replies import StaleReply, TemplateContent, create_reply
from inbox.search import search_highlights
from inbox.serialize import agent_ref, conversation_to_dict, conversations_to_dicts, isoformat, label_ref, message_to_dict, team_ref
from inbox.storage import attachment_store
from inbox.teams import (
    create_label,
    create_team_audited,
    list_labels,
    list_teams,
    set_agent_capacity_audited,
    set_channel_default_team_audited,
    update_team_audited,
)
from inbox.views import agent_views, count_views
from inbox.workflow import BulkRejected, change_conversation, change_conversations, parse_changes

log = logging.getLogger(__name__)

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

# The largest reply request, its files included: a few WhatsApp files of up to 16 MB each.
REPLY_BODY_LIMIT = 64 * 1024 * 1024
# Notes, mentions and canned responses: nested, so they share this blueprint's error handlers.
blueprint.register_blueprint(collab_api.blueprint)


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    status = 409 if isinstance(error, Conflict) else {"not_found": 404, "conflict": 409, "forbidden": 403}.get(error.code, 400)
    if isinstance(error, BulkRejected):
        # Every conversation that cannot take the change, so a client can show each reason.
        body = {"code": error.code, "message": error.message, "field": error.field, "items": error.items()}
        return jsonify({"error": body}), status
    return error_response(status, error.code, error.message, error.field)


@blueprint.errorhandler(StaleReply)
def _stale_reply(error: StaleReply) -> Any:
    # What arrived, so the agent can read it before sending anyway or editing.
    body = {
        "code": error.code, "message": error.message, "field": error.field,
        "messages": [message_to_dict(message) for message in error.messages],
        "newest_message_id": max(message.id for message in error.messages),
    }
    return jsonify({"error": body}), 409


@blueprint.errorhandler(ContentApiError)
def _content_api_error(error: ContentApiError) -> Any:
    log.warning("Twilio's Content API failed: %s", error)
    return error_response(
        502, "templates_unavailable", f"The WhatsApp templates could not be read from Twilio: {error}"
    )


@blueprint.errorhandler(MessageTemplatesError)
def _message_templates_error(error: MessageTemplatesError) -> Any:
    log.warning("Meta's message templates could not be read: %s", error)
    return error_response(
        502, "templates_unavailable", f"The WhatsApp templates could not be read from Meta: {error}"
    )


def init_app(app: Flask) -> None:
    from gateway import contacts_api

    # The contact routes (profile, search, edits, merge) live in their own module.
    app.register_blueprint(contacts_api.blueprint)
    config = app.extensions["switchboard"].config
    app.extensions["whatsapp_templates"] = TemplateCatalog(config.whatsapp_template_refresh)
    # Unmatched URLs never reach the blueprint's handlers, so JSON errors for /api/ paths
    # are registered on the app.
    app.register_error_handler(404, _not_found)
    app.register_error_handler(405, _method_not_allowed)
    app.register_error_handler(413, _too_large)


def allow_reply_files() -> None:
    """Let a reply carry its files: other requests stay within the app's 2 MB limit.

    Registered before the authentication guard, which may read the form for its CSRF token.
    """
    if request.endpoint == "api.reply":
        request.max_content_length = REPLY_BODY_LIMIT


def _not_found(error: HTTPException) -> Any:
    if request.path.startswith("/api/"):
        return error_response(404, "not_found", "No such API route.")
    return error


def _too_large(error: HTTPException) -> Any:
    if not request.path.startswith("/api/"):
        return error
    limit = (request.max_content_length or 0) / 1048576
    message = f"The request is larger than {limit:.0f} MB, the most this endpoint accepts."
    if request.endpoint == "api.reply":
        return error_response(413, "too_large", message + " Send the files in several replies.", field="attachments")
    return error_response(413, "too_large", message)


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
    where = parse_filter(request.args, _agent().id)
    page = list_conversations(session, limit=_int_arg("limit", 50), cursor=request.args.get("cursor"), where=where)
    items = conversations_to_dicts(session, page.items)
    if page.search is not None:
        highlights = search_highlights(session, page.search, page.items, page.search_hits)
        for item in items:
            item["search"] = highlights[item["id"]].to_dict()
    return jsonify(
        {
            "items": items,
            "next_cursor": page.next_cursor,
            "last_event_id": snapshot_event_id,
        }
    )


@blueprint.get("/conversations/<id:conversation_id>")
def conversation(conversation_id: int) -> Any:
    found = get_conversation_or_404(db(), conversation_id)
    # The newest page only: older messages come from /messages with ``before``.
    messages = list_messages(db(), conversation_id, limit=_int_arg("messages_limit", 50))
    return jsonify(
        {
            **conversation_to_dict(found),
            "messages": [message_to_dict(m) for m in messages.items],
            "messages_before": messages.before,
            "activities": [activity_to_dict(a) for a in list_activities(db(), conversation_id)],
            "notes": [note_to_dict(note) for note in list_notes(db(), conversation_id)],
        }
    )


@blueprint.get("/conversations/<id:conversation_id>/messages")
def messages_page(conversation_id: int) -> Any:
    page = list_messages(
        db(), conversation_id, limit=_int_arg("limit", 50), before=parse_before(request.args.get("before"))
    )
    return jsonify({"items": [message_to_dict(m) for m in page.items], "before": page.before})


@blueprint.post("/conversations/<id:conversation_id>/messages")
def reply(conversation_id: int) -> Any:
    agent = current_agent()
    assert agent is not None
    session = db()
    attachments: list[AttachmentData] = []
    template = None
    if request.mimetype == "multipart/form-data":
        # A reply with files: the text in the field "text", each file in a field "attachments".
        seen_message_id, confirm_stale = collab_api.parse_stale_check(request.form)
        text = request.form.get("text", "")
        for upload in request.files.getlist("attachments"):
            attachments.append(AttachmentData(
                upload.filename or "attachment", upload.mimetype or "application/octet-stream", upload.read()
            ))
    else:
        body = _json_body()
        seen_message_id, confirm_stale = collab_api.parse_stale_check(body)
        if "template" in body:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} not found", field="conversation_id")
            if conversation.channel.kind != "whatsapp":
                raise InvalidInput("Templates can only be sent on WhatsApp channels.", field="template")
            text, template = _parse_template(conversation.channel, body["template"])
        else:
            text = body.get("text")
            if not isinstance(text, str):
                raise InvalidInput("text is required and must be a string.", field="text")
    message = create_reply(
        session, conversation_id, agent.id, text, attachments, template=template,
        seen_message_id=seen_message_id, confirm_stale=confirm_stale,
    )
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
    provider = whatsapp_provider(channel) or "twilio"
    templates: TemplateList
    if provider == "meta":
        templates = _template_catalog().approved_meta(_meta_settings(channel), _waba_id(channel), refresh=refresh)
    else:
        templates = _template_catalog().approved(_twilio_settings(channel), refresh=refresh)
    return jsonify(template_list_to_dict(templates, provider))


def _template_catalog() -> TemplateCatalog:
    return current_app.extensions["whatsapp_templates"]


def _parse_template(channel: Channel, value: Any) -> tuple[str, TemplateContent]:
    """Check a template reply against the channel's approved templates, by its provider."""
    catalog = _template_catalog()
    if whatsapp_provider(channel) == "meta":
        return parse_meta_template_reply(catalog, _meta_settings(channel), _waba_id(channel), value)
    return parse_template_reply(catalog, _twilio_settings(channel), value)


def _twilio_settings(channel: Channel) -> TwilioSettings:
    return twilio_settings(channel.address, channel.settings, current_app.extensions["switchboard"].config)


def _meta_settings(channel: Channel) -> MetaSettings:
    return meta_settings(channel.settings, current_app.extensions["switchboard"].config)


def _waba_id(channel: Channel) -> str:
    """Return the Meta channel's WhatsApp Business Account id. Raises ``Conflict`` without one."""
    waba_id = (channel.settings or {}).get("waba_id")
    if not waba_id:
        raise Conflict(
            f"Channel {channel.id} has no WhatsApp Business Account ID, so its message templates "
            f"cannot be listed. Set it with `switchboard channel set {channel.id} waba_id=<id>`.",
            field="waba_id", code="waba_id_missing",
        )
    return str(waba_id)


@blueprint.post("/conversations/<id:conversation_id>/read")
def read(conversation_id: int) -> Any:
    session = db()
    mark_conversation_read(session, conversation_id)
    session.commit()
    return Response(status=204)


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
        known = ", ".join(sorted(s.value for s in PayloadStatus))
        raise InvalidInput(f"Unknown status {status!r}; use one of {known}.", field="status")
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


# ---- Conversation workflow: changes, bulk changes, merge, views, teams, labels ------------


def _agent() -> Agent:
    agent = current_agent()
    assert agent is not None  # the guard returned 401 otherwise
    return agent


@blueprint.patch("/conversations/<id:conversation_id>")
def change(conversation_id: int) -> Any:
    session = db()
    changes = parse_changes(_json_body(), utcnow())
    conversation = change_conversation(session, _agent(), conversation_id, changes)
    data = conversation_to_dict(conversation)
    session.commit()
    return jsonify(data)


@blueprint.post("/conversations/bulk")
def bulk_change() -> Any:
    body = _json_body()
    changes = body.get("changes")
    if not isinstance(changes, dict):
        raise InvalidInput("changes must be a JSON object of the fields to change.", field="changes")
    session = db()
    changed = change_conversations(session, _agent(), body.get("conversation_ids"), parse_changes(changes, utcnow()))
    data = [conversation_to_dict(conversation) for conversation in changed]
    session.commit()
    return jsonify({"items": data})


@blueprint.post("/conversations/<id:conversation_id>/merge")
def merge(conversation_id: int) -> Any:
    target_id = _json_body().get("target_id")
    if not isinstance(target_id, int) or isinstance(target_id, bool) or not 0 < target_id < 2**63:
        raise InvalidInput("target_id must be the id of the conversation to merge into.", field="target_id")
    session = db()
    target = merge_conversations(session, _agent(), conversation_id, target_id)
    data = conversation_to_dict(target)
    session.commit()
    return jsonify(data)


@blueprint.get("/conversations/counts")
def conversation_counts() -> Any:
    session = db()
    snapshot_event_id = latest_event_id(session)
    views = count_views(session, agent_views(session, _agent().id))
    return jsonify({"views": views, "last_event_id": snapshot_event_id})


def _team_to_dict(team: Team) -> dict[str, Any]:
    return {
        "id": team.id, "name": team.name, "members": [agent_ref(agent) for agent in team.members],
        "round_robin": team.round_robin,
    }


@blueprint.get("/teams")
def teams() -> Any:
    return jsonify({"items": [_team_to_dict(team) for team in list_teams(db())]})


@blueprint.post("/teams")
@require_role(Role.MANAGER)
def create_team_route() -> Any:
    body = _json_body()
    session = db()
    team = create_team_audited(
        session, _agent(), body.get("name"), body.get("agent_ids", []), body.get("round_robin", True)
    )
    data = _team_to_dict(team)
    session.commit()
    log.info("agent %s created team %s", _agent().id, team.id)
    return jsonify(data), 201


@blueprint.patch("/teams/<id:team_id>")
@require_role(Role.MANAGER)
def update_team_route(team_id: int) -> Any:
    body = _json_body()
    session = db()
    team = update_team_audited(
        session, _agent(), team_id, body.get("name"), body.get("agent_ids"), body.get("round_robin")
    )
    data = _team_to_dict(team)
    session.commit()
    return jsonify(data)


@blueprint.get("/labels")
def labels() -> Any:
    return jsonify({"items": [label_ref(label) for label in list_labels(db())]})


@blueprint.post("/labels")
@require_role(Role.MANAGER)
def create_label_route() -> Any:
    session = db()
    label = create_label(session, _json_body().get("name"))
    data = label_ref(label)
    session.commit()
    return jsonify(data), 201


@blueprint.get("/agents")
def agents() -> Any:
    session = db()
    rows = list(session.scalars(select(Agent).where(Agent.is_active.is_(True)).order_by(Agent.name)))
    online = online_agent_ids(session)
    counts = open_assigned_counts(session, [agent.id for agent in rows])
    return jsonify({"items": [_agent_to_dict(agent, online, counts) for agent in rows]})


def _agent_to_dict(agent: Agent, online: frozenset[int], counts: dict[int, int]) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "email": agent.email,
        "role": agent.role,
        "online": agent.id in online,
        "open_assigned": counts.get(agent.id, 0),
        "max_open_conversations": agent.max_open_conversations,
    }


@blueprint.patch("/agents/<id:agent_id>")
@require_role(Role.MANAGER)
def update_agent(agent_id: int) -> Any:
    body = _json_body()
    if "max_open_conversations" not in body:
        raise InvalidInput("Give max_open_conversations, a number or null.", field="max_open_conversations")
    session = db()
    agent = set_agent_capacity_audited(session, _agent(), agent_id, body["max_open_conversations"])
    data = _agent_to_dict(
        agent, online_agent_ids(session), open_assigned_counts(session, [agent.id])
    )
    session.commit()
    return jsonify(data)


@blueprint.put("/channels/<id:channel_id>/default-team")
@require_role(Role.MANAGER)
def set_default_team(channel_id: int) -> Any:
    body = _json_body()
    if "default_team_id" not in body:
        raise InvalidInput("Give default_team_id, a team id or null.", field="default_team_id")
    session = db()
    channel = set_channel_default_team_audited(session, _agent(), channel_id, body["default_team_id"])
    data = {"id": channel.id, "name": channel.name, "default_team": team_ref(channel.default_team)}
    session.commit()
    return jsonify(data)
