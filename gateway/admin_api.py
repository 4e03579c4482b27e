"""The JSON API for people and access: agent accounts (admin), one's own account, the audit log.

Routes sit under /api/v1 beside ``gateway.api`` and follow its rules: the guard in
``gateway.auth`` checks sign-in and CSRF, ``require_role`` the role, and errors are JSON
``{"error": {"code", "message", "field"?}}``. A change that can end someone's credentials
closes their live Socket.IO connections after it commits.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, session, url_for

from gateway.auth import LoginThrottle, current_agent, db, error_response, require_role, session_limits
from inbox.agents import (
    add_agent,
    change_own_password,
    change_role,
    create_reset_link,
    end_own_sign_in,
    get_agent_or_404,
    issue_api_token,
    list_agents,
    list_api_tokens,
    list_sign_ins,
    revoke_api_token,
    session_for_token,
    set_agent_active,
    set_temporary_password,
)
from inbox.audit import audit_event_to_dict, list_audit_events, parse_audit_filter
from inbox.errors import Conflict, Forbidden, InboxError, InvalidInput, NotFound
from inbox.models import Agent, AgentSession, ApiToken, PasswordReset, Role
from inbox.serialize import isoformat

log = logging.getLogger(__name__)

blueprint = Blueprint("admin_api", __name__, url_prefix="/api/v1")

MAX_PAGE = 200


def error_status(error: InboxError) -> int:
    """Return the HTTP status of an inbox error, by its class whatever its code."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, Forbidden):
        return 403
    return 400


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    return error_response(error_status(error), error.code, error.message, error.field)


# ---- Helpers the pages share ----------------------------------------------------------------


def signed_in_agent() -> Agent:
    agent = current_agent()
    assert agent is not None  # the guard returned 401 otherwise
    return agent


def close_stale_connections(agent_id: int) -> None:
    """Close the agent's live connections whose sign-in or token stopped working. Call after commit."""
    current_app.extensions["switchboard.check_agent_connections"](agent_id)


def reset_url(token: str) -> str:
    """Return the absolute URL of a password reset link, on the public URL when one is set."""
    path = url_for("admin_pages.reset_password", token=token)
    base = current_app.extensions["switchboard"].config.public_url or request.host_url
    return base.rstrip("/") + path


def reset_link_to_dict(token: str, reset: PasswordReset) -> dict[str, Any]:
    return {"reset_url": reset_url(token), "expires_at": isoformat(reset.expires_at)}


def reset_lifetime() -> int:
    return current_app.extensions["switchboard"].config.password_reset_lifetime


def password_throttle() -> LoginThrottle:
    return current_app.extensions["switchboard.password_throttle"]


def account_to_dict(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "email": agent.email,
        "name": agent.name,
        "role": agent.role,
        "active": agent.is_active,
        "must_change_password": agent.must_change_password,
        "last_seen_at": isoformat(agent.last_seen_at),
        "created_at": isoformat(agent.created_at),
        "max_open_conversations": agent.max_open_conversations,
    }


def token_to_dict(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "created_at": isoformat(row.created_at),
        "last_used_at": isoformat(row.last_used_at),
    }


def sign_in_to_dict(row: AgentSession, current_hash: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": isoformat(row.created_at),
        "last_seen_at": isoformat(row.last_seen_at),
        "user_agent": row.user_agent,
        "ip_address": row.ip_address,
        "current": row.token_hash == current_hash,
    }


def current_sign_in_hash() -> str | None:
    """Return the stored hash of this request's sign-in, or None for a bearer token."""
    token = session.get("sign_in")
    if not token or current_agent_uses_token():
        return None
    row = session_for_token(db(), token)
    return row.token_hash if row is not None else None


def current_agent_uses_token() -> bool:
    return bool(g.get("token_auth"))


def create_account(actor: Agent, body: dict[str, Any]) -> tuple[Agent, dict[str, Any] | None]:
    """Create an agent from a request body; without a password, also a reset link to set one.

    Returns the agent and the link (or None). The caller commits.
    """
    password = body.get("password")
    chosen = password not in (None, "")
    created = add_agent(
        db(), actor, body.get("email"), body.get("name"),
        password if chosen else secrets.token_urlsafe(24), body.get("role", Role.AGENT.value),
    )
    if chosen:
        # The admin has seen this password, so the agent replaces it at the first sign-in.
        created.must_change_password = True
        return created, None
    token, reset = create_reset_link(db(), actor, created.id, reset_lifetime())
    return created, reset_link_to_dict(token, reset)


def audit_page_limit(text: str) -> int:
    """Return the page size that ``text`` requests. Raises ``InvalidInput`` outside 1 to ``MAX_PAGE``."""
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}, not {text[:20]!r}.", field="limit")
    return limit


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body


# ---- Agent accounts (admin) -------------------------------------------------------------------


@blueprint.get("/agents/accounts")
@require_role(Role.ADMIN)
def accounts() -> Any:
    return jsonify({"items": [account_to_dict(agent) for agent in list_agents(db())]})


@blueprint.post("/agents")
@require_role(Role.ADMIN)
def create_account_route() -> Any:
    actor = signed_in_agent()
    created, link = create_account(actor, _json_body())
    data = account_to_dict(created)
    db().commit()
    log.info("agent %s created agent %s with role %s", actor.id, created.id, created.role)
    return jsonify({**data, "password_reset": link}), 201


@blueprint.put("/agents/<id:agent_id>/role")
@require_role(Role.ADMIN)
def set_role_route(agent_id: int) -> Any:
    changed = change_role(db(), signed_in_agent(), agent_id, _json_body().get("role"))
    data = account_to_dict(changed)
    db().commit()
    return jsonify(data)


@blueprint.post("/agents/<id:agent_id>/disable")
@require_role(Role.ADMIN)
def disable_route(agent_id: int) -> Any:
    changed = set_agent_active(db(), signed_in_agent(), agent_id, False)
    data = account_to_dict(changed)
    db().commit()
    close_stale_connections(agent_id)
    log.info("agent %s disabled agent %s", signed_in_agent().id, agent_id)
    return jsonify(data)


@blueprint.post("/agents/<id:agent_id>/enable")
@require_role(Role.ADMIN)
def enable_route(agent_id: int) -> Any:
    changed = set_agent_active(db(), signed_in_agent(), agent_id, True)
    data = account_to_dict(changed)
    db().commit()
    return jsonify(data)


@blueprint.post("/agents/<id:agent_id>/password-reset")
@require_role(Role.ADMIN)
def password_reset_route(agent_id: int) -> Any:
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    actor = signed_in_agent()
    temporary = body.get("temporary_password")
    if temporary is not None:
        changed = set_temporary_password(db(), actor, agent_id, temporary)
        data = {"agent": account_to_dict(changed), "reset_url": None, "expires_at": None}
        db().commit()
        close_stale_connections(agent_id)
        return jsonify(data)
    token, reset = create_reset_link(db(), actor, agent_id, reset_lifetime())
    data = {"agent": account_to_dict(get_agent_or_404(db(), agent_id)), **reset_link_to_dict(token, reset)}
    db().commit()
    return jsonify(data)


# ---- One's own account ------------------------------------------------------------------------


@blueprint.post("/me/password")
def change_password() -> Any:
    agent = signed_in_agent()
    body = _json_body()
    throttle = password_throttle()
    key = f"agent:{agent.id}"
    if not throttle.try_attempt(key):
        log.warning("password change throttled for agent %s", agent.id)
        return error_response(429, "too_many_attempts", "Too many attempts; wait a few minutes and try again.")
    keep = None if current_agent_uses_token() else session.get("sign_in")
    change_own_password(db(), agent, body.get("current_password"), body.get("new_password"), keep)
    db().commit()
    throttle.reset(key)
    close_stale_connections(agent.id)
    log.info("agent %s changed their password", agent.id)
    return Response(status=204)


@blueprint.get("/me/tokens")
def tokens() -> Any:
    return jsonify({"items": [token_to_dict(row) for row in list_api_tokens(db(), signed_in_agent())]})


@blueprint.post("/me/tokens")
def create_token() -> Any:
    agent = signed_in_agent()
    token, row = issue_api_token(db(), agent, agent, _json_body().get("name"))
    data = {**token_to_dict(row), "token": token}
    db().commit()
    return jsonify(data), 201


@blueprint.delete("/me/tokens/<id:token_id>")
def revoke_token(token_id: int) -> Any:
    agent = signed_in_agent()
    revoke_api_token(db(), agent, token_id)
    db().commit()
    close_stale_connections(agent.id)
    return Response(status=204)


@blueprint.get("/me/sessions")
def sign_ins() -> Any:
    current = current_sign_in_hash()
    rows = list_sign_ins(db(), signed_in_agent(), session_limits())
    return jsonify({"items": [sign_in_to_dict(row, current) for row in rows]})


@blueprint.delete("/me/sessions/<id:session_id>")
def end_sign_in(session_id: int) -> Any:
    agent = signed_in_agent()
    end_own_sign_in(db(), agent, session_id)
    db().commit()
    close_stale_connections(agent.id)
    return Response(status=204)


# ---- The audit log (admin) --------------------------------------------------------------------


@blueprint.get("/audit")
@require_role(Role.ADMIN)
def audit() -> Any:
    limit = audit_page_limit(request.args.get("limit", "50"))
    page = list_audit_events(db(), parse_audit_filter(request.args), limit, request.args.get("cursor"))
    return jsonify({"items": [audit_event_to_dict(event) for event in page.items], "next_cursor": page.next_cursor})
