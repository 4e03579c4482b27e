"""Browser pages: the inbox, the /admin entry point, and the error page every page shares."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, abort, g, redirect, render_template, request, url_for
from werkzeug.exceptions import Forbidden, HTTPException, NotFound

from gateway.auth import ROLE_RANK, csrf_token, current_agent, db, error_response
from inbox.events import latest_event_id
from inbox.models import Role

blueprint = Blueprint("pages", __name__)

# Paths that serve programs, not people, so they keep JSON or the framework's plain responses.
NON_PAGE_PREFIXES = ("/api/", "/webhooks/", "/static/", "/socket.io/", "/healthz", "/metrics")

ERROR_TITLES = {403: "Not allowed", 404: "Page not found"}
DEFAULT_MESSAGES = {
    403: "You cannot open this page. Ask an admin if you need it.",
    404: "There is no page at this address. Check the link, or start again from the inbox.",
}


def has_role(role: Role) -> bool:
    agent = current_agent()
    return agent is not None and ROLE_RANK.get(agent.role, -1) >= ROLE_RANK[role.value]


def page_role(role: Role) -> Callable:
    """Decorate a page so that agents below ``role`` get the 403 error page."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not has_role(role):
                abort(403, description=f"This page needs the {role.value} role. Ask an admin if you need it.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


@blueprint.route("/")
def inbox() -> Any:
    return render_template(
        "inbox.html", agent=current_agent(), csrf_token=csrf_token(), last_event_id=latest_event_id(db())
    )


@blueprint.get("/admin")
@blueprint.get("/admin/")
@page_role(Role.MANAGER)
def admin_home() -> Any:
    """Redirect to the first administration page in the header that the agent may open."""
    return redirect(url_for("admin_pages.teams_page"))


def init_error_pages(app: Flask) -> None:
    """Render the shared error page for 403 and 404 responses on pages.

    Register after ``api.init_app``, whose 404 handler this one replaces: API paths still get
    the API's JSON errors, and webhooks and static files the framework's plain responses.
    """
    app.register_error_handler(Forbidden, _error_page)
    app.register_error_handler(NotFound, _error_page)


def _error_page(error: HTTPException) -> Any:
    status = error.code or 500
    if request.path.startswith("/api/") or _wants_json():
        if status == 404:
            message = "No such API route." if request.path.startswith("/api/") else "No such page."
            return error_response(404, "not_found", message)
        return error_response(403, "forbidden", error.description if _own_description(error) else "This is not allowed.")
    if request.path.startswith(NON_PAGE_PREFIXES):
        return error
    message = error.description if _own_description(error) else DEFAULT_MESSAGES[status]
    return render_template("error.html", agent=current_agent(), title=ERROR_TITLES[status], message=message), status


def _wants_json() -> bool:
    """True for scripts: an API token, or an Accept header that prefers JSON to HTML."""
    preferred = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return bool(g.get("token_auth")) or preferred == "application/json"


def _own_description(error: HTTPException) -> bool:
    """True when the code that raised ``error`` wrote its message, not the framework."""
    return error.description != type(error).description
