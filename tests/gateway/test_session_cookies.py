"""The session cookie interface: one signing serializer per secret key, and no session for webhooks."""

from __future__ import annotations

from flask import session
from flask.sessions import NullSession


def test_serializer_built_once_per_secret_key(app):
    cookies = app.session_interface
    first = cookies.get_signing_serializer(app)
    assert cookies.get_signing_serializer(app) is first
    app.config["SECRET_KEY_FALLBACKS"] = ["an older key"]
    rotated = cookies.get_signing_serializer(app)
    assert rotated is not first
    assert rotated.loads(first.dumps({"agent": 1})) == {"agent": 1}


def test_webhooks_get_no_session(app):
    signed_in = app.session_interface.get_signing_serializer(app).dumps({"agent": 1})
    headers = {"Cookie": f"{app.config['SESSION_COOKIE_NAME']}={signed_in}"}
    with app.test_request_context("/webhooks/twilio/1/status", method="POST", headers=headers):
        assert isinstance(session, NullSession)
    with app.test_request_context("/api/v1/conversations", headers=headers):
        assert session.get("agent") == 1
