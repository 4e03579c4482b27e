"""Live Socket.IO connections close when their sign-in expires by time or their token is deleted.

No request or admin action happens in these tests: only the periodic check can notice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import socketio
from sqlalchemy import delete, select

from inbox.models import AgentSession, ApiToken
from tests.gateway.test_people_realtime import _connected_client
from tests.gateway.test_proactive_scheduler import wait_until
from tests.gateway.test_realtime import _session_cookie

WAIT_SECONDS = 10


@pytest.fixture
def config(config):
    return replace(config, session_lifetime=3600, session_absolute_lifetime=7200, socket_check_interval=0.2)


def _age_sign_ins(state, **ages: timedelta) -> None:
    """Move the sign-ins' timestamps back, as if that much time had passed."""
    with state.session_factory() as session:
        for row in session.scalars(select(AgentSession)):
            for column, age in ages.items():
                setattr(row, column, getattr(row, column) - age)
        session.commit()


@pytest.mark.parametrize("ages", [
    pytest.param({"last_seen_at": timedelta(seconds=3601)}, id="idle-timeout"),
    pytest.param({"created_at": timedelta(seconds=7201)}, id="absolute-lifetime"),
])
def test_expired_sign_in_closes_connection(live_server, state, agent, ages):
    cookie = _session_cookie(live_server.url, agent.email)
    client, closed = _connected_client(live_server.url, headers={"Cookie": cookie})
    try:
        assert not closed.wait(1)  # the sign-in is valid, so the checks leave it open

        _age_sign_ins(state, **ages)

        assert closed.wait(WAIT_SECONDS)
        retry = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            retry.connect(live_server.url, transports=["websocket"], headers={"Cookie": cookie})
    finally:
        client.disconnect()


def test_token_deleted_elsewhere_closes_connection(live_server, state, agent, api_token):
    cookie = _session_cookie(live_server.url, agent.email)
    by_cookie, cookie_closed = _connected_client(live_server.url, headers={"Cookie": cookie})
    by_token, token_closed = _connected_client(live_server.url, auth={"token": api_token})
    try:
        # As another web process would: straight in the database, without this process knowing.
        with state.session_factory() as session:
            session.execute(delete(ApiToken))
            session.commit()

        assert token_closed.wait(WAIT_SECONDS)
        assert not cookie_closed.is_set()
        assert by_cookie.connected
    finally:
        by_cookie.disconnect()
        by_token.disconnect()


def test_checker_runs_only_with_connections(live_server, agent, api_token):
    checker = live_server.app.extensions["switchboard.connection_checker"]
    assert not checker.running

    client, _ = _connected_client(live_server.url, auth={"token": api_token})
    started = checker.running
    client.disconnect()

    assert started
    assert wait_until(lambda: not checker.running)
