"""Browser pages: the inbox."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from gateway.auth import csrf_token, current_agent, db
from inbox.events import latest_event_id

blueprint = Blueprint("pages", __name__)


@blueprint.route("/")
def inbox() -> Any:
    return render_template(
        "inbox.html", agent=current_agent(), csrf_token=csrf_token(), last_event_id=latest_event_id(db())
    )
