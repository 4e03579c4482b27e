"""Socket.IO: authenticated agents receive committed events live and after reconnecting."""

from __future__ import annotations

import queue
import re

import pytest
import requests
import socketio
from twilio.request_validator import RequestValidator

from gateway.simulate import build_message_form
from tests.conftest import AGENT_PASSWORD, TWILIO_AUTH_TOKEN

EVENT_WAIT_SECONDS = 10


def _session_cookie(base_url: str, email: str) -> str:
    http = requests.Session()
    page = http.get(f"{base_url}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = http.post(
        f"{base_url}/login",
        data={"email": email, "password": AGENT_PASSWORD, "csrf_token": csrf},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302
    return "; ".join(f"{name}={value}" for name, value in http.cookies.items())


def _post_inbound(base_url: str, channel, sender: str, text: str) -> str:
    form = build_message_form(channel, sender, text, None)
    url = f"{base_url}/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
    response = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 200
    return form["MessageSid"]


class Recorder:
    """A python-socketio client that queues every event it receives."""

    def __init__(self) -> None:
        self.client = socketio.Client(reconnection=False)
        self.events: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.client.on("*", lambda event, data: self.events.put((event, data)))

    def next(self, event_type: str) -> dict:
        while True:
            event, data = self.events.get(timeout=EVENT_WAIT_SECONDS)
            if event == event_type:
                return data


@pytest.fixture
def recorder():
    recorder = Recorder()
    yield recorder
    recorder.client.disconnect()


def test_agent_receives_message_created_for_each_inbound(live_server, agent, whatsapp_channel, recorder):
    cookie = _session_cookie(live_server.url, agent.email)
    recorder.client.connect(live_server.url, headers={"Cookie": cookie}, transports=["websocket"])

    texts = [f"message {index}" for index in range(3)]
    for text in texts:
        _post_inbound(live_server.url, whatsapp_channel, "+15551230000", text)
    received = [recorder.next("message.created") for _ in texts]

    assert [event["message"]["text"] for event in received] == texts
    ids = [event["event_id"] for event in received]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert received[0]["conversation"]["contact"]["address"] == "+15551230000"


def test_anonymous_connection_is_refused(live_server):
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(live_server.url, transports=["websocket"])
    assert not client.connected


def test_forged_cookie_is_refused(live_server, agent):
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            live_server.url, headers={"Cookie": "switchboard_session=forged.value.sig"}, transports=["websocket"]
        )


def test_api_token_connects(live_server, api_token, whatsapp_channel, recorder):
    recorder.client.connect(live_server.url, auth={"token": api_token}, transports=["websocket"])
    _post_inbound(live_server.url, whatsapp_channel, "+15551230000", "with a token")
    assert recorder.next("message.created")["message"]["text"] == "with a token"


def _disconnect_after_first_message(live_server, agent, channel, recorder) -> tuple[str, int]:
    """Connect, receive one message.created, disconnect; return the cookie and that event's id."""
    cookie = _session_cookie(live_server.url, agent.email)
    recorder.client.connect(live_server.url, headers={"Cookie": cookie}, transports=["websocket"])
    _post_inbound(live_server.url, channel, "+15551230000", "before the drop")
    last_seen = recorder.next("message.created")["event_id"]
    recorder.client.disconnect()
    return cookie, last_seen


def _reconnected(live_server, cookie: str, last_seen: int) -> Recorder:
    # The missed messages are all stored before the client comes back.
    live_server.wait_until_ingested()
    again = Recorder()
    again.client.connect(
        live_server.url, headers={"Cookie": cookie}, auth={"last_event_id": last_seen}, transports=["websocket"]
    )
    return again


def test_reconnecting_client_receives_missed_events_in_order(live_server, agent, whatsapp_channel, recorder):
    cookie, last_seen = _disconnect_after_first_message(live_server, agent, whatsapp_channel, recorder)

    missed = [f"missed {index}" for index in range(10)]
    for text in missed:
        _post_inbound(live_server.url, whatsapp_channel, "+15551230000", text)

    again = _reconnected(live_server, cookie, last_seen)
    try:
        replayed = [again.next("message.created") for _ in missed]
    finally:
        again.client.disconnect()

    assert [event["message"]["text"] for event in replayed] == missed
    assert all(event["event_id"] > last_seen for event in replayed)


def test_reconnect_replays_all_50_missed_events(live_server, agent, whatsapp_channel, recorder):
    cookie, last_seen = _disconnect_after_first_message(live_server, agent, whatsapp_channel, recorder)

    # Each inbound message of an existing conversation makes two events:
    # conversation.updated and message.created.
    missed = [f"missed {index}" for index in range(25)]
    for text in missed:
        _post_inbound(live_server.url, whatsapp_channel, "+15551230000", text)

    again = _reconnected(live_server, cookie, last_seen)
    try:
        replayed = []
        while len(replayed) < 50:
            name, data = again.events.get(timeout=EVENT_WAIT_SECONDS)
            if isinstance(data, dict) and "event_id" in data:
                replayed.append((name, data))
    finally:
        again.client.disconnect()

    ids = [data["event_id"] for _, data in replayed]
    assert ids == list(range(last_seen + 1, last_seen + 51))
    assert [name for name, _ in replayed] == ["conversation.updated", "message.created"] * 25
    texts = [data["message"]["text"] for name, data in replayed if name == "message.created"]
    assert texts == missed


def test_logout_disconnects_the_socket(live_server, agent):
    import threading

    http = requests.Session()
    page = http.get(f"{live_server.url}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    http.post(
        f"{live_server.url}/login",
        data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": csrf},
        allow_redirects=False, timeout=10,
    )
    cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
    disconnected = threading.Event()
    client = socketio.Client(reconnection=False)
    client.on("disconnect", lambda *args: disconnected.set())
    client.connect(live_server.url, headers={"Cookie": cookie}, transports=["websocket"])

    inbox_page = http.get(f"{live_server.url}/", timeout=10).text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', inbox_page).group(1)
    http.post(f"{live_server.url}/logout", data={"csrf_token": csrf}, allow_redirects=False, timeout=10)

    assert disconnected.wait(EVENT_WAIT_SECONDS)
    again = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        again.connect(live_server.url, headers={"Cookie": cookie}, transports=["websocket"])
