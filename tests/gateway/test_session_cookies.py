"""The session cookie interface: one signing serializer per secret key, and no session for webhooks
and static files."""

from __future__ import annotations

from flask import session
from flask.sessions import NullSession

from tests.conftest import login


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


def test_static_files_leave_the_cookie_alone(app, agent):
    client = app.test_client()
    login(client, agent.email)

    page = client.get("/")
    stylesheet = client.get("/static/inbox.css")

    # Pages send a permanent session's cookie again. A stylesheet sent with an older cookie
    # must not, or it would undo a notice that a form's redirect stored in the newer one.
    assert "Set-Cookie" in page.headers
    assert stylesheet.status_code == 200
    assert "Set-Cookie" not in stylesheet.headers
