"""The managers' page for proactive update templates, at /updates."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from gateway.auth import csrf_token, current_agent
from gateway.pages import page_role
from inbox.models import Role

blueprint = Blueprint("proactive_pages", __name__)


@blueprint.get("/updates")
@page_role(Role.MANAGER)
def updates_page() -> Any:
    return render_template("updates.html", agent=current_agent(), csrf_token=csrf_token())
