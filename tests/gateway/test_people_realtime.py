"""Live Socket.IO connections end with their credentials: a disabled agent, an ended sign-in, a revoked token."""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests
import socketio
from sqlalchemy import select

from gateway import create_app, get_state
from inbox.agents import create_agent, create_api_token
from inbox.models import Agent, ApiToken
from inbox.presence import shared_online_agent_ids
from tests.conftest import AGENT_PASSWORD
from tests.gateway.test_realtime import _session_cookie
from tests.support.live import LiveServer

WAIT_SECONDS = 10


@pytest.fixture
def admin_token(state) -> str:
    with state.session_factory() as session:
        admin = create_agent(session, "root@example.com", "Root", AGENT_PASSWORD, "admin")
        token = create_api_token(session, admin, "tests")
        session.commit()
        return token


def _connected_client(url: str, **connect_options) -> tuple[socketio.Client, threading.Event]:
    disconnected = threading.Event()
    client = socketio.Client(reconnection=False)
    client.on("disconnect", lambda *args: disconnected.set())
    client.connect(url, transports=["websocket"], **connect_options)
    return client, disconnected


def _api(url: str, method: str, path: str, token: str, **options) -> requests.Response:
    return requests.request(method, url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **options)


def test_disabling_closes_live_connections_and_refuses_new_ones(live_server, agent, api_token, admin_token):
    cookie = _session_cookie(live_server.url, agent.email)
    by_cookie, cookie_closed = _connected_client(live_server.url, headers={"Cookie": cookie})
    by_token, token_closed = _connected_client(live_server.url, auth={"token": api_token})
    try:
        response = _api(live_server.url, "POST", f"/api/v1/agents/{agent.id}/disable", admin_token)

        assert response.status_code == 200
        assert cookie_closed.wait(WAIT_SECONDS)
        assert token_closed.wait(WAIT_SECONDS)
        for options in ({"headers": {"Cookie": cookie}}, {"auth": {"token": api_token}}):
            retry = socketio.Client(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                retry.connect(live_server.url, transports=["websocket"], **options)
    finally:
        by_cookie.disconnect()
        by_token.disconnect()


def test_revoking_a_token_closes_its_connection_only(live_server, state, agent, api_token):
    with state.session_factory() as session:
        second_token = create_api_token(session, session.get(Agent, agent.id), "second")
        second_id = session.scalar(select(ApiToken.id).where(ApiToken.name == "second"))
        session.commit()
    kept, kept_closed = _connected_client(live_server.url, auth={"token": api_token})
    revoked, revoked_closed = _connected_client(live_server.url, auth={"token": second_token})
    try:
        response = _api(live_server.url, "DELETE", f"/api/v1/me/tokens/{second_id}", api_token)

        assert response.status_code == 204
        assert revoked_closed.wait(WAIT_SECONDS)
        assert not kept_closed.wait(1)
        assert kept.connected
    finally:
        kept.disconnect()
        revoked.disconnect()


def test_password_change_closes_other_sign_ins_connections(live_server, agent, api_token):
    other_cookie = _session_cookie(live_server.url, agent.email)
    other, other_closed = _connected_client(live_server.url, headers={"Cookie": other_cookie})
    try:
        response = _api(
            live_server.url, "POST", "/api/v1/me/password", api_token,
            json={"current_password": AGENT_PASSWORD, "new_password": "a fresh password 42"},
        )

        assert response.status_code == 204
        assert other_closed.wait(WAIT_SECONDS)
    finally:
        other.disconnect()


def test_temporary_password_sign_in_cannot_connect(live_server, agent, admin_token):
    reset = _api(
        live_server.url, "POST", f"/api/v1/agents/{agent.id}/password-reset", admin_token,
        json={"temporary_password": "temporary pass 5"},
    )
    http = requests.Session()
    page = http.get(f"{live_server.url}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    http.post(f"{live_server.url}/login", data={"email": agent.email, "password": "temporary pass 5", "csrf_token": csrf},
              allow_redirects=False, timeout=10)
    cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())

    client = socketio.Client(reconnection=False)
    assert reset.status_code == 200
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(live_server.url, headers={"Cookie": cookie}, transports=["websocket"])


def _shared_online(state) -> frozenset[int]:
    with state.session_factory() as session:
        return shared_online_agent_ids(session)


def _wait_until(condition) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_connection_is_shared_with_other_processes(live_server, state, agent, api_token):
    client, _ = _connected_client(live_server.url, auth={"token": api_token})
    try:
        assert _wait_until(lambda: agent.id in _shared_online(state))
    finally:
        client.disconnect()

    assert _wait_until(lambda: agent.id not in _shared_online(state))


def test_snapshot_lists_agents_of_other_processes(live_server, config, state, agent, api_token, admin_token):
    other_app = create_app(config)
    with LiveServer(other_app) as other_server:
        first, _ = _connected_client(live_server.url, auth={"token": api_token})
        try:
            assert _wait_until(lambda: agent.id in _shared_online(state))
            snapshots: list[dict] = []
            second = socketio.Client(reconnection=False)
            second.on("presence.snapshot", snapshots.append)
            second.connect(other_server.url, transports=["websocket"], auth={"token": admin_token})
            try:
                assert _wait_until(lambda: bool(snapshots))
            finally:
                second.disconnect()
        finally:
            first.disconnect()
    get_state(other_app).engine.dispose()

    assert agent.id in {entry["id"] for entry in snapshots[0]["agents"]}
