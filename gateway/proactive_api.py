"""The JSON API of proactive update templates, and the estimate of a conversation.

Every template route needs the manager role (or admin). A template that fails validation gets
422 with ``error.problems``, a list of ``{field, line, reason}``, so an editor can show each
problem beside its field. Authentication and CSRF come from ``gateway.auth``'s guard.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.api import _inbox_error as api_inbox_error
from gateway.api import _json_body
from gateway.auth import current_agent, db, error_response, require_role
from gateway.config import proactive_settings_from
from inbox.channel_config import whatsapp_provider
from inbox.conversations import get_conversation_or_404
from inbox.errors import InboxError, InvalidInput
from inbox.models import Conversation, Role, utcnow
from inbox.proactive.context import context_values, describe_duration, sample_context
from inbox.proactive.estimates import Estimate, estimate_for
from inbox.proactive.sending import quiet_hours_end, subject_with_reference
from inbox.proactive.templates import (
    BODY_FIELDS,
    RenderedUpdate,
    CONDITION_KEYS,
    DraftTemplate,
    PLACEHOLDERS,
    TRIGGER_PARAMS,
    InvalidTemplate,
    TemplateProblem,
    TemplateRenderError,
    check_source,
    create_update_template,
    delete_update_template,
    get_update_template_or_404,
    list_update_templates,
    normalize_fields,
    render_update,
    template_applies,
    template_fields,
    template_to_dict,
    update_update_template,
    validate_template,
)
from inbox.serialize import isoformat
from inbox.window import window_is_open

log = logging.getLogger(__name__)

blueprint = Blueprint("proactive_api", __name__, url_prefix="/api/v1")

# A conversation picked for a preview: its id, with or without the "#" of its reference.
_CONVERSATION_REFERENCE = re.compile(r"^#?\s*([0-9]{1,18})$")


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    if isinstance(error, InvalidTemplate):
        return _problems_response(error.problems)
    return api_inbox_error(error)


def _problems_response(problems: list[TemplateProblem]) -> Any:
    first = problems[0]
    body = {
        "code": "invalid_template",
        "message": f"The template is invalid: {first.field}: {first.reason}"
                   + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
        "field": first.field,
        "problems": [problem.to_dict() for problem in problems],
    }
    return jsonify({"error": body}), 422


# ---- Templates ----------------------------------------------------------------------------


@blueprint.get("/update-templates")
@require_role(Role.MANAGER)
def list_templates() -> Any:
    return jsonify({"items": [template_to_dict(template) for template in list_update_templates(db())]})


@blueprint.get("/update-templates/catalogue")
@require_role(Role.MANAGER)
def catalogue() -> Any:
    """Return the placeholders, the triggers with their parameters, and the condition keys."""
    return jsonify({
        "placeholders": [
            {"name": placeholder.name, "description": placeholder.description, "example": placeholder.example}
            for placeholder in PLACEHOLDERS.values()
        ],
        "triggers": [
            {
                "name": trigger,
                "params": [
                    {"name": name, "kind": param.kind, "required": param.required, "minimum": param.minimum}
                    for name, param in params.items()
                ],
            }
            for trigger, params in TRIGGER_PARAMS.items()
        ],
        "conditions": list(CONDITION_KEYS),
    })


@blueprint.post("/update-templates")
@require_role(Role.MANAGER)
def create_template() -> Any:
    session = db()
    template = create_update_template(session, current_agent(), _json_body())
    _commit_or_conflict(template.name)
    log.info("agent %s created update template %s", current_agent().id, template.id)
    return jsonify(template_to_dict(template)), 201


@blueprint.get("/update-templates/<id:template_id>")
@require_role(Role.MANAGER)
def get_template(template_id: int) -> Any:
    return jsonify(template_to_dict(get_update_template_or_404(db(), template_id)))


@blueprint.patch("/update-templates/<id:template_id>")
@require_role(Role.MANAGER)
def update_template(template_id: int) -> Any:
    session = db()
    template = get_update_template_or_404(session, template_id)
    update_update_template(session, template, _json_body(), current_agent())
    _commit_or_conflict(template.name)
    log.info("agent %s changed update template %s", current_agent().id, template.id)
    return jsonify(template_to_dict(template))


@blueprint.post("/update-templates/<id:template_id>/enable")
@require_role(Role.MANAGER)
def enable_template(template_id: int) -> Any:
    return _set_enabled(template_id, True)


@blueprint.post("/update-templates/<id:template_id>/disable")
@require_role(Role.MANAGER)
def disable_template(template_id: int) -> Any:
    return _set_enabled(template_id, False)


def _set_enabled(template_id: int, enabled: bool) -> Any:
    # Through the full validation, so a template saved before a rule was added cannot be
    # enabled until it meets the rule.
    session = db()
    template = get_update_template_or_404(session, template_id)
    update_update_template(session, template, {"enabled": enabled}, current_agent())
    session.commit()
    log.info("agent %s %s update template %s", current_agent().id, "enabled" if enabled else "disabled", template.id)
    return jsonify(template_to_dict(template))


@blueprint.delete("/update-templates/<id:template_id>")
@require_role(Role.MANAGER)
def delete_template(template_id: int) -> Any:
    session = db()
    template = get_update_template_or_404(session, template_id)
    called_off = delete_update_template(session, template, current_agent())
    session.commit()
    log.info("agent %s deleted update template %s; %d held update(s) called off",
             current_agent().id, template_id, called_off)
    return "", 204


@blueprint.post("/update-templates/validate")
@require_role(Role.MANAGER)
def validate() -> Any:
    """Validate a whole template without saving it; ``id`` names the template being edited."""
    fields = normalize_fields(_json_body())
    if "id" in fields and not isinstance(fields["id"], int):
        raise InvalidInput("id must be a template id.", field="id")
    problems = validate_template(fields, session=db())
    if problems:
        return _problems_response(problems)
    return jsonify({"valid": True, "problems": []})


@blueprint.post("/update-templates/preview")
@require_role(Role.MANAGER)
def preview_unsaved() -> Any:
    """Render template fields from the request, for an editor with unsaved changes."""
    body = _json_body()
    fields = body.get("template")
    if not isinstance(fields, dict):
        raise InvalidInput("template must be an object with the template's fields.", field="template")
    return _preview(normalize_fields(fields), body.get("conversation"))


@blueprint.post("/update-templates/<id:template_id>/preview")
@require_role(Role.MANAGER)
def preview_saved(template_id: int) -> Any:
    template = get_update_template_or_404(db(), template_id)
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return _preview(template_fields(template), body.get("conversation"))


def _preview(fields: dict[str, Any], pick: object) -> Any:
    """Render ``fields`` for the picked conversation, or with sample values when there is none."""
    problems = [problem for field in BODY_FIELDS for problem in check_source(field, fields.get(field))]
    if problems:
        return _problems_response(problems)

    session = db()
    draft = DraftTemplate.from_fields(fields)
    conversation = None
    applies = None
    if pick in (None, ""):
        context = sample_context()
    else:
        conversation = get_conversation_or_404(session, _conversation_id(pick))
        context = context_values(conversation, estimate_for(session, conversation, utcnow()))
        applies = template_applies(draft, conversation)

    try:
        rendered = render_update(draft, context)
    except TemplateRenderError as error:
        return _problems_response([error.problem])
    sends, nothing_reason = _version_sent(session, conversation, rendered, fields.get("whatsapp_content_sid"))
    if applies is False:
        # Sending checks the conditions first, so a conversation they leave out gets nothing at all.
        nothing_reason = _reason("conditions_not_met", "The conversation does not meet the template's conditions.")
    deferred = None
    if conversation is not None and sends is not None and applies is not False:
        deferred = _quiet_hours_deferral(conversation)
    return jsonify({
        "conversation": _conversation_summary(conversation),
        "applies": applies,
        "sends": sends,
        "nothing_reason": nothing_reason,
        "deferred": deferred,
        "context": context,
        "rendered": {
            "subject": _sent_subject(rendered.subject, conversation, context),
            "email_body": rendered.email_body,
            "whatsapp_body": rendered.whatsapp_body,
            "whatsapp_content_sid": fields.get("whatsapp_content_sid") or None,
            "whatsapp_variables": rendered.whatsapp_variables,
        },
    })


def _version_sent(
    session: Session, conversation: Conversation | None, rendered: RenderedUpdate, content_sid: str | None
) -> tuple[str | None, dict[str, str] | None]:
    """Return which version of the update the conversation's channel would get now, and why
    it would get none.

    The version is "email", "whatsapp_body" (inside the 24-hour window), "whatsapp_template"
    (the approved template outside it), or None. When a picked conversation would get none, the
    reason is a ``{code, message}`` with the code that ``inbox.proactive.sending`` records for
    that skip, ``no_content`` or ``outside_window``. Otherwise the reason is None. The choice is
    the one sending makes after its skips.
    """
    if conversation is None:
        return None, None
    channel = conversation.channel
    if channel.kind == "email":
        if rendered.email_body:
            return "email", None
        return None, _reason("no_content", "The template has no email body.")
    if rendered.whatsapp_body and window_is_open(session, conversation, utcnow()):
        return "whatsapp_body", None
    if content_sid and whatsapp_provider(channel) != "meta":
        return "whatsapp_template", None

    if rendered.whatsapp_body:
        return None, _reason(
            "outside_window",
            "The 24-hour window is closed because the customer has not written in the last 24 hours, "
            "and the template has no approved template (Content SID) that this channel can send.",
        )
    if content_sid:
        return None, _reason(
            "no_content",
            "The template has no WhatsApp body, and this channel, which uses Meta's API, cannot send "
            "an approved template by its Content SID.",
        )
    return None, _reason("no_content", "The template has no WhatsApp body and no approved template (Content SID).")


def _quiet_hours_deferral(conversation: Conversation) -> dict[str, str] | None:
    """Return ``{code, message, until}`` when the contact's quiet hours would hold an update
    sent now, else None. ``until`` is the UTC time they end, as sending computes it."""
    settings = proactive_settings_from(current_app.extensions["switchboard"].config)
    now = utcnow()
    zone, end = quiet_hours_end(conversation, settings, now)
    if end is None:
        return None
    quiet = settings.quiet_hours
    local_end = end.astimezone(zone)
    return {
        "code": "quiet_hours",
        "message": (
            f"Held until {local_end:%H:%M} ({zone.key}), {local_end:%a %d %b}, because it is within "
            f"the contact's quiet hours ({quiet.start:%H:%M}–{quiet.end:%H:%M}) now. "
            "The update then goes if it still applies."
        ),
        "until": isoformat(end),
    }


def _reason(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _sent_subject(subject: str, conversation: Conversation | None, context: dict[str, Any]) -> str:
    """Return the subject as it is sent, with the conversation reference that sending adds."""
    if not subject:
        return subject
    if conversation is not None:
        return subject_with_reference(subject, conversation.id)
    sample = _CONVERSATION_REFERENCE.match(str(context.get("reference", "")))
    return subject_with_reference(subject, int(sample.group(1))) if sample else subject


def _conversation_id(pick: object) -> int:
    if isinstance(pick, int) and not isinstance(pick, bool) and pick > 0:
        return pick
    match = _CONVERSATION_REFERENCE.match(pick.strip()) if isinstance(pick, str) else None
    if match is None or int(match.group(1)) < 1:
        raise InvalidInput(
            f"conversation must be a conversation id or reference such as #42, not {pick!r}.", field="conversation"
        )
    return int(match.group(1))


def _conversation_summary(conversation: Conversation | None) -> dict[str, Any] | None:
    if conversation is None:
        return None
    return {
        "id": conversation.id,
        "reference": f"#{conversation.id}",
        "subject": conversation.subject,
        "status": conversation.status,
        "channel": conversation.channel.kind,
        "contact_name": conversation.contact.name,
    }


def _commit_or_conflict(name: str) -> None:
    # Validation checked the name, but another request may have taken it since.
    try:
        db().commit()
    except IntegrityError:
        db().rollback()
        raise InvalidTemplate([TemplateProblem("name", None, f"a template named {name!r} already exists")]) from None


# ---- The estimate of one conversation, for every agent ------------------------------------


@blueprint.get("/conversations/<id:conversation_id>/estimate")
def conversation_estimate(conversation_id: int) -> Any:
    session = db()
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return error_response(404, "not_found", f"Conversation {conversation_id} not found.", "conversation_id")
    estimate = estimate_for(session, conversation, utcnow())
    return jsonify(estimate_to_dict(estimate))


def estimate_to_dict(estimate: Estimate) -> dict[str, Any]:
    return {
        "queue_position": estimate.queue_position,
        "first_response": _duration(estimate.first_response),
        "resolution": _duration(estimate.resolution),
        "basis": estimate.basis,
        "samples": estimate.samples,
    }


def _duration(value: timedelta | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"seconds": int(value.total_seconds()), "text": describe_duration(value)}
