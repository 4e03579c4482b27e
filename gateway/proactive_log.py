"""The audit log of proactive updates: ``GET /api/v1/proactive/sends`` and the /updates/log page.

Both are for managers and admins. The page is a shell; its module (static/js/updates-log.js)
reads the API with the filter the form sets.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request

from gateway.auth import csrf_token, current_agent, db, error_response, require_role
from gateway.pages import page_role
from inbox.errors import InboxError, InvalidInput
from inbox.models import Role
from inbox.proactive.audit import CHANNELS, RESULTS, list_sends, logged_templates, parse_send_filter, send_to_dict
from inbox.proactive.triggers import TRIGGERS

blueprint = Blueprint("proactive_log", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    return error_response(400, error.code, error.message, error.field)


@blueprint.get("/api/v1/proactive/sends")
@require_role(Role.MANAGER)
def sends() -> Any:
    where = parse_send_filter(request.args)
    page = list_sends(db(), where, limit=_limit(), cursor=request.args.get("cursor") or None)
    return jsonify({"items": [send_to_dict(row) for row in page.items], "next_cursor": page.next_cursor})


def _limit() -> int:
    value = request.args.get("limit", "").strip()
    if not value:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {value!r}.", field="limit")
    return int(value)


@blueprint.get("/updates/log")
@page_role(Role.MANAGER)
def log_page() -> Any:
    return render_template(
        "updates_log.html", agent=current_agent(), csrf_token=csrf_token(),
        triggers=TRIGGERS, results=RESULTS, channels=CHANNELS, templates=logged_templates(db()),
    )
