"""Browser pages for people and access: one's account, agents and the audit log (admin), teams (manager).

The pages are plain HTML forms, so they work from the keyboard and without scripts. Each
form posts with the session's CSRF token, which the guard in ``gateway.auth`` checks, then
calls the same ``inbox`` functions as the JSON API and redirects back with a notice. A
token or reset link is shown once, in the response to the form that created it, and never
stored in the session. ``/reset-password/<token>`` is the only page open without a sign-in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from gateway.admin_api import (
    audit_page_limit,
    close_stale_connections,
    create_account,
    error_status,
    current_sign_in_hash,
    password_throttle,
    reset_lifetime,
    reset_link_to_dict,
    signed_in_agent,
)
from gateway.auth import ROLE_RANK, csrf_token, csrf_token_matches, current_agent, db, session_limits
from gateway.pages import page_role
from gateway.user_agents import summarize_user_agent
from inbox.agents import (
    MIN_PASSWORD_LENGTH,
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
    set_agent_active,
    set_temporary_password,
    use_reset_link,
    valid_reset,
)
from inbox.assignment import online_agent_ids, open_assigned_counts
from inbox.audit import Action, SECRET_SETTING_HINTS, TARGET_TYPES, list_audit_events, parse_audit_filter
from inbox.errors import InboxError, InvalidInput
from inbox.models import Role
from inbox.teams import create_team_audited, list_teams, set_agent_capacity_audited, update_team_audited

log = logging.getLogger(__name__)

# ISO 8601 date-times as the audit log stores them, such as 2026-01-31T09:00:00+00:00.
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
SECRET_NOT_SHOWN = "changed (not shown)"
# Values nested deeper than this show as an ellipsis, so no stored row can make the page huge.
MAX_DETAIL_DEPTH = 4

blueprint = Blueprint("admin_pages", __name__)

ROLES = [role.value for role in Role]


@blueprint.app_context_processor
def _navigation() -> dict[str, Any]:
    # Which admin links the header shows; the routes check the role themselves.
    def can(role: str) -> bool:
        agent = current_agent()
        return agent is not None and ROLE_RANK.get(agent.role, -1) >= ROLE_RANK[role]

    return {"can": can}


@blueprint.app_template_filter("duration")
def _duration(seconds: int) -> str:
    """Return a number of seconds in the largest whole unit: 7 days, 12 hours, 90 minutes."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


@blueprint.app_template_filter("browser_summary")
def _browser_summary(user_agent: str | None) -> str:
    return summarize_user_agent(user_agent)


def _render(template: str, status: int = 200, **context: Any) -> Any:
    return render_template(template, agent=signed_in_agent(), csrf_token=csrf_token(), **context), status


def _checkbox(name: str) -> bool:
    return request.form.get(name) in ("on", "true", "1")


# ---- One's own account ------------------------------------------------------------------------


@blueprint.get("/account")
def account_page() -> Any:
    return _render_account()


def _render_account(status: int = 200, **context: Any) -> Any:
    agent = signed_in_agent()
    return _render(
        "account.html", status,
        tokens=list_api_tokens(db(), agent),
        sign_ins=list_sign_ins(db(), agent, session_limits()),
        current_hash=current_sign_in_hash(),
        limits=session_limits(),
        min_password_length=MIN_PASSWORD_LENGTH,
        **context,
    )


@blueprint.route("/account/password", methods=["GET", "POST"])
def change_password_page() -> Any:
    agent = signed_in_agent()
    if request.method == "GET":
        return _render("password_change.html", forced=agent.must_change_password, min_password_length=MIN_PASSWORD_LENGTH)

    forced = agent.must_change_password
    throttle = password_throttle()
    key = f"agent:{agent.id}"
    if not throttle.try_attempt(key):
        log.warning("password change throttled for agent %s", agent.id)
        error = "Too many attempts. Wait a few minutes and try again."
        return _render("password_change.html", 429, forced=forced, error=error, min_password_length=MIN_PASSWORD_LENGTH)
    new_password = request.form.get("new_password", "")
    try:
        if new_password != request.form.get("confirm_password", ""):
            raise InvalidInput("The new password and its confirmation differ.", field="confirm_password")
        change_own_password(db(), agent, request.form.get("current_password", ""), new_password, session.get("sign_in"))
    except InboxError as error:
        db().rollback()
        return _render(
            "password_change.html", 400, forced=forced, error=error.message, field=error.field,
            min_password_length=MIN_PASSWORD_LENGTH,
        )
    db().commit()
    throttle.reset(key)
    close_stale_connections(agent.id)
    log.info("agent %s changed their password", agent.id)
    flash("Your password is changed. Your other sign-ins have ended.", "notice")
    return redirect(url_for("pages.inbox") if forced else url_for("admin_pages.account_page"), code=303)


@blueprint.post("/account/tokens")
def create_token_page() -> Any:
    agent = signed_in_agent()
    try:
        token, row = issue_api_token(db(), agent, agent, request.form.get("name", ""))
    except InboxError as error:
        db().rollback()
        return _render_account(400, error=error.message)
    db().commit()
    return _render_account(new_token=token, new_token_name=row.name)


@blueprint.post("/account/tokens/<id:token_id>/revoke")
def revoke_token_page(token_id: int) -> Any:
    agent = signed_in_agent()
    try:
        row = revoke_api_token(db(), agent, token_id)
    except InboxError as error:
        db().rollback()
        return _render_account(404, error=error.message)
    db().commit()
    close_stale_connections(agent.id)
    flash(f"The token \"{row.name}\" is revoked.", "notice")
    return redirect(url_for("admin_pages.account_page", _anchor="tokens"), code=303)


@blueprint.post("/account/sessions/<id:session_id>/end")
def end_sign_in_page(session_id: int) -> Any:
    agent = signed_in_agent()
    try:
        end_own_sign_in(db(), agent, session_id)
    except InboxError as error:
        db().rollback()
        return _render_account(404, error=error.message)
    db().commit()
    close_stale_connections(agent.id)
    flash("The sign-in has ended.", "notice")
    return redirect(url_for("admin_pages.account_page", _anchor="sign-ins"), code=303)


@blueprint.post("/account/sessions/end-others")
def end_other_sign_ins_page() -> Any:
    agent = signed_in_agent()
    current = current_sign_in_hash()
    for row in list_sign_ins(db(), agent, session_limits()):
        if row.token_hash != current:
            end_own_sign_in(db(), agent, row.id)
    db().commit()
    close_stale_connections(agent.id)
    flash("Your other sign-ins have ended.", "notice")
    return redirect(url_for("admin_pages.account_page", _anchor="sign-ins"), code=303)


# ---- The reset link (no sign-in) --------------------------------------------------------------


@blueprint.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> Any:
    reset = valid_reset(db(), token)
    if reset is None:
        return render_template("password_reset.html", invalid=True, csrf_token=csrf_token()), 404
    if request.method == "GET":
        return render_template(
            "password_reset.html", email=reset.agent.email, csrf_token=csrf_token(),
            min_password_length=MIN_PASSWORD_LENGTH,
        )

    # A public form, so the guard does not check its CSRF token; this view does.
    sent = request.form.get("csrf_token", "")
    error = None
    if not csrf_token_matches(sent):
        error = "The form expired. Please try again."
    elif request.form.get("new_password", "") != request.form.get("confirm_password", ""):
        error = "The new password and its confirmation differ."
    if error is None:
        try:
            agent = use_reset_link(db(), token, request.form.get("new_password", ""))
        except InboxError as failure:
            db().rollback()
            error = failure.message
    if error is not None:
        return render_template(
            "password_reset.html", email=reset.agent.email, csrf_token=csrf_token(), error=error,
            min_password_length=MIN_PASSWORD_LENGTH,
        ), 400
    db().commit()
    close_stale_connections(agent.id)
    log.info("agent %s set a new password with a reset link", agent.id)
    session.clear()
    return render_template("password_reset.html", done=True, email=agent.email, csrf_token=csrf_token())


# ---- Agents (admin) ---------------------------------------------------------------------------


@blueprint.get("/admin/agents")
@page_role(Role.ADMIN)
def agents_page() -> Any:
    return _render_agents()


def _render_agents(status: int = 200, **context: Any) -> Any:
    return _render("admin_agents.html", status, agents=list_agents(db()), roles=ROLES,
                   min_password_length=MIN_PASSWORD_LENGTH, **context)


@blueprint.post("/admin/agents")
@page_role(Role.ADMIN)
def create_agent_page() -> Any:
    form = {key: request.form.get(key, "") for key in ("email", "name", "role", "password")}
    try:
        created, link = create_account(signed_in_agent(), form)
    except InboxError as error:
        db().rollback()
        form.pop("password")
        return _render_agents(error_status(error), error=error.message, field=error.field, form=form)
    db().commit()
    log.info("agent %s created agent %s", signed_in_agent().id, created.id)
    if link is None:
        flash(
            f"{created.email} is created. They sign in with the temporary password and must change it then.",
            "notice",
        )
        return redirect(url_for("admin_pages.agents_page"), code=303)
    return _render_agents(reset_link=link, reset_for=created)


@blueprint.post("/admin/agents/<id:agent_id>/role")
@page_role(Role.ADMIN)
def change_role_page(agent_id: int) -> Any:
    try:
        changed = change_role(db(), signed_in_agent(), agent_id, request.form.get("role"))
    except InboxError as error:
        db().rollback()
        return _render_agents(error_status(error), error=error.message)
    db().commit()
    flash(f"{changed.email} is now {changed.role}.", "notice")
    return redirect(url_for("admin_pages.agents_page"), code=303)


@blueprint.post("/admin/agents/<id:agent_id>/active")
@page_role(Role.ADMIN)
def set_active_page(agent_id: int) -> Any:
    active = request.form.get("active") == "true"
    try:
        changed = set_agent_active(db(), signed_in_agent(), agent_id, active)
    except InboxError as error:
        db().rollback()
        return _render_agents(error_status(error), error=error.message)
    db().commit()
    if not active:
        close_stale_connections(agent_id)
    flash(f"{changed.email} is {'enabled' if active else 'disabled'}.", "notice")
    return redirect(url_for("admin_pages.agents_page"), code=303)


@blueprint.post("/admin/agents/<id:agent_id>/password-reset")
@page_role(Role.ADMIN)
def password_reset_page(agent_id: int) -> Any:
    actor = signed_in_agent()
    try:
        if request.form.get("method") == "temporary":
            changed = set_temporary_password(db(), actor, agent_id, request.form.get("temporary_password", ""))
            db().commit()
            close_stale_connections(agent_id)
            flash(f"{changed.email} has a temporary password and must change it at their next sign-in.", "notice")
            return redirect(url_for("admin_pages.agents_page"), code=303)
        token, reset = create_reset_link(db(), actor, agent_id, reset_lifetime())
    except InboxError as error:
        db().rollback()
        return _render_agents(error_status(error), error=error.message)
    db().commit()
    return _render_agents(reset_link=reset_link_to_dict(token, reset), reset_for=get_agent_or_404(db(), agent_id))


# ---- Teams (manager) --------------------------------------------------------------------------


@blueprint.get("/admin/teams")
@page_role(Role.MANAGER)
def teams_page() -> Any:
    return _render_teams()


def _render_teams(status: int = 200, **context: Any) -> Any:
    agents = [agent for agent in list_agents(db()) if agent.is_active]
    return _render(
        "admin_teams.html", status, teams=list_teams(db()), agents=agents,
        online=online_agent_ids(db()), open_counts=open_assigned_counts(db(), [agent.id for agent in agents]),
        **context,
    )


def _member_ids() -> list[int]:
    try:
        return [int(value) for value in request.form.getlist("agent_ids")]
    except ValueError:
        raise InvalidInput("agent_ids must be agent ids.", field="agent_ids") from None


@blueprint.post("/admin/teams")
@page_role(Role.MANAGER)
def create_team_page() -> Any:
    try:
        team = create_team_audited(db(), signed_in_agent(), request.form.get("name", ""), _member_ids(), _checkbox("round_robin"))
    except InboxError as error:
        db().rollback()
        return _render_teams(error_status(error), error=error.message, form=dict(request.form))
    db().commit()
    flash(f"The team {team.name} is created.", "notice")
    return redirect(url_for("admin_pages.teams_page", _anchor=f"team-{team.id}"), code=303)


@blueprint.post("/admin/teams/<id:team_id>")
@page_role(Role.MANAGER)
def update_team_page(team_id: int) -> Any:
    try:
        team = update_team_audited(
            db(), signed_in_agent(), team_id, request.form.get("name", ""), _member_ids(), _checkbox("round_robin")
        )
    except InboxError as error:
        db().rollback()
        return _render_teams(error_status(error), error=error.message)
    db().commit()
    flash(f"The team {team.name} is saved.", "notice")
    return redirect(url_for("admin_pages.teams_page", _anchor=f"team-{team.id}"), code=303)


@blueprint.post("/admin/agents/<id:agent_id>/capacity")
@page_role(Role.MANAGER)
def capacity_page(agent_id: int) -> Any:
    text = request.form.get("max_open_conversations", "").strip()
    try:
        capacity = int(text) if text else None
    except ValueError:
        capacity = -1  # rejected below with the usual message
    try:
        agent = set_agent_capacity_audited(db(), signed_in_agent(), agent_id, capacity)
    except InboxError as error:
        db().rollback()
        return _render_teams(error_status(error), error=error.message)
    db().commit()
    limit = "no limit" if agent.max_open_conversations is None else f"at most {agent.max_open_conversations}"
    flash(f"{agent.name} now gets {limit} open conversations by automatic assignment.", "notice")
    return redirect(url_for("admin_pages.teams_page", _anchor="capacity"), code=303)


# ---- The audit log (admin) --------------------------------------------------------------------


@blueprint.app_template_filter("audit_details")
def audit_details(details: Mapping[str, Any] | None) -> list[tuple[str, list[str]]]:
    """Turn an audit row's details into (label, lines) pairs of plain text for people.

    Strings are shown as they are, lists comma-separated, booleans as Yes or No, a missing
    value as "none", ISO 8601 times to the minute in UTC, an old and new value as
    "old → new", and other objects as "key: value" lines. The value of a key that names a
    secret (password, token, secret) is never shown, even if a row contains one. The
    template escapes the text.
    """
    return [(_detail_label(key), _detail_lines(key, value)) for key, value in (details or {}).items()]


def _detail_label(key: str) -> str:
    return str(key).replace("_", " ")


def _is_secret(key: str) -> bool:
    return any(hint in str(key).lower() for hint in SECRET_SETTING_HINTS)


def _detail_lines(key: str, value: Any) -> list[str]:
    if isinstance(value, Mapping) and value and not _is_secret(key) and not _is_change(value):
        return [f"{_detail_label(inner_key)}: {_detail_text(inner_key, inner, 1)}" for inner_key, inner in value.items()]
    return [_detail_text(key, value, 0)]


def _is_change(value: Mapping[str, Any]) -> bool:
    return set(value) == {"from", "to"} or value == {"changed": True}


def _detail_text(key: str, value: Any, depth: int) -> str:
    """Return ``value``, stored under ``key``, as one line of text."""
    if _is_secret(key):
        return SECRET_NOT_SHOWN
    if depth > MAX_DETAIL_DEPTH:
        return "…"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, datetime):
        return _readable_time(value)
    if isinstance(value, str):
        return _readable_time_text(value) or value
    if isinstance(value, (list, tuple)):
        return ", ".join(_detail_text(key, item, depth + 1) for item in value) if value else "none"
    if isinstance(value, Mapping):
        if not value:
            return "none"
        if value == {"changed": True}:
            return "changed"
        if set(value) == {"from", "to"}:
            return f"{_detail_text(key, value['from'], depth + 1)} → {_detail_text(key, value['to'], depth + 1)}"
        return "; ".join(
            f"{_detail_label(inner_key)}: {_detail_text(inner_key, inner, depth + 1)}" for inner_key, inner in value.items()
        )
    return str(value)


def _readable_time_text(text: str) -> str | None:
    if not ISO_DATETIME.fullmatch(text):
        return None
    try:
        return _readable_time(datetime.fromisoformat(text))
    except ValueError:
        return None


def _readable_time(value: datetime) -> str:
    # Times without an offset are UTC, like every time the database stores.
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _as_utc(text: str) -> str:
    """Add the UTC offset to a date or time typed without one, because the page's fields are in
    UTC. Text that is not an ISO 8601 time is returned unchanged, so the filter reports it."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    return parsed.isoformat() if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc).isoformat()


# The audit page's filter fields by query parameter, with the labels the page shows.
AUDIT_FILTER_LABELS = {
    "actor": "Actor", "action": "Action", "target": "Target", "since": "Since (UTC)", "until": "Until (UTC)",
}


def _check_audit_times(query: Mapping[str, str]) -> None:
    """Validate the page's Since and Until fields. Raises ``InvalidInput``, in the words of the
    fields, for a value that is not a time, or for a range that is empty and so matches no event."""
    times = {}
    for key in ("since", "until"):
        try:
            times[key] = datetime.fromisoformat(query[key]) if key in query else None
        except ValueError:
            raise InvalidInput(
                f"{AUDIT_FILTER_LABELS[key]} must be a date such as 2026-01-31 or a time such as "
                f"2026-01-31T09:00, not {query[key]!r}. Leave it empty to drop the limit.",
                field=key,
            ) from None
    since, until = times["since"], times["until"]
    if since is None or until is None or since < until:
        return
    if since == until:
        raise InvalidInput(
            f"Since (UTC) and Until (UTC) are both {_readable_time(since)}, and Until is not included, "
            "so no event can match. Choose a later Until, such as the next day.",
            field="until",
        )
    raise InvalidInput(
        f"Since (UTC) ({_readable_time(since)}) is later than Until (UTC) ({_readable_time(until)}). "
        "Choose a Since before the Until, or leave one of them empty.",
        field="since",
    )


@blueprint.get("/admin/audit")
@page_role(Role.ADMIN)
def audit_page() -> Any:
    filters = {key: request.args.get(key, "").strip() for key in AUDIT_FILTER_LABELS}
    query = {key: value for key, value in filters.items() if value}
    for key in ("since", "until"):
        if key in query:
            query[key] = _as_utc(query[key])
    try:
        _check_audit_times(query)
        where = parse_audit_filter(query)
        page = list_audit_events(db(), where, audit_page_limit(request.args.get("limit", "50")), request.args.get("cursor"))
    except InboxError as error:
        return _render("admin_audit.html", 400, events=[], next_cursor=None, filters=filters,
                       filter_error=error.message, filter_error_field=error.field,
                       actions=Action.names(), target_types=TARGET_TYPES, agents=list_agents(db()))
    return _render("admin_audit.html", events=page.items, next_cursor=page.next_cursor, filters=filters,
                   actions=Action.names(), target_types=TARGET_TYPES, agents=list_agents(db()))
