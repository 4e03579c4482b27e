"""Rejection of request text that contains NUL characters.

PostgreSQL text columns cannot store U+0000, so such text failed deep in a write with a 500.
Every request but the provider webhooks is checked here first and rejected with 400, naming the
field. Provider webhooks are left alone, because their raw payload is kept as received and the
channel parsers replace NUL characters themselves.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request

from gateway.auth import error_response

NUL = "\x00"
UNCHECKED_BLUEPRINTS = frozenset({"webhooks"})


def init_app(app: Flask) -> None:
    app.before_request(reject_nul_characters)


def reject_nul_characters() -> Any:
    """Return a 400 response when a query, form or JSON value or a file name contains NUL."""
    if request.blueprint in UNCHECKED_BLUEPRINTS or request.endpoint is None:
        return None
    field = _nul_field(request)
    if field is None:
        return None
    message = (
        f"{field} contains a NUL character (U+0000), which cannot be stored. "
        "Remove it and send the request again."
    )
    if request.path.startswith("/api/"):
        return error_response(400, "invalid", message, field=field)
    abort(400, description=message)


def _nul_field(req: Any) -> str | None:
    """Return the name of the first field whose name or value contains NUL, or None."""
    for source in (req.args, req.form):
        for name, value in source.items(multi=True):
            if NUL in name or NUL in value:
                return name.replace(NUL, "")
    for name, upload in req.files.items(multi=True):
        if NUL in name or NUL in (upload.filename or ""):
            return name.replace(NUL, "")
    if req.is_json:
        body = req.get_json(silent=True)
        if isinstance(body, dict):
            for name, value in body.items():
                if NUL in name or _contains_nul(value):
                    return name.replace(NUL, "")
        elif _contains_nul(body):
            return "body"
    return None


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(NUL in key or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False
