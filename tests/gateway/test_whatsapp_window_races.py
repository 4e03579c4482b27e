"""The 24-hour window when a customer's message and an agent's reply commit at the same time.

On PostgreSQL the webhook worker and a web process run their transactions concurrently. A
reply must never be held for a window that the customer's concurrent message opened, because
nothing would release it until the customer writes once more. Each test pauses one side just
before its commit, starts the other side, waits until PostgreSQL reports it waiting for a
lock, and then lets both finish. SQLite runs one write transaction at a time, so these
interleavings cannot happen there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select, text

from gateway import api as api_module
from inbox import replies as replies_module
from gateway.simulate import build_message_form
from inbox import ingest_bulk_whatsapp, webhook_queue
from inbox.models import Conversation, Message
from tests.support.whatsapp import (  # noqa: F401 (client, config and twilio are fixtures)
    client,
    close_window,
    config,
    dispatch,
    ingest_webhooks,
    post_inbound,
    post_status,
    queue_inbound,
    twilio,
)

ON_POSTGRES = (os.environ.get("SWITCHBOARD_TEST_DATABASE_URL") or "").startswith("postgresql")
pytestmark = pytest.mark.skipif(
    not ON_POSTGRES, reason="concurrent transactions need PostgreSQL (SWITCHBOARD_TEST_DATABASE_URL)"
)

WAIT_LIMIT = 30.0


def lock_waiters(state) -> int:
    with state.engine.connect() as connection:
        return connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def wait_for(condition: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {description}"
        time.sleep(0.02)


class Pause:
    """Stops a thread at one point until the test lets it go on."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.proceed = threading.Event()

    def wait_here(self) -> None:
        self.reached.set()
        assert self.proceed.wait(WAIT_LIMIT), "the test never let the paused transaction go on"


def start(target: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - reported by the test's assertion
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def conversation_id(state) -> int:
    with state.session_factory() as session:
        return session.scalar(select(Conversation.id))


def pause_ingestion_before_commit(monkeypatch, pause: Pause) -> None:
    finish = webhook_queue._finish

    def finish_then_pause(*args, **kwargs):
        finish(*args, **kwargs)
        pause.wait_here()

    monkeypatch.setattr(webhook_queue, "_finish", finish_then_pause)


def held_state(state, message_id: int) -> tuple[str, str | None]:
    with state.session_factory() as session:
        item = session.get(Message, message_id).outbox_item
        return item.status, item.hold_reason


def test_reply_while_customer_writes_is_not_held(client, state, whatsapp_channel, twilio, monkeypatch):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    queue_inbound(client, whatsapp_channel, "Hello again")
    pause = Pause()
    pause_ingestion_before_commit(monkeypatch, pause)
    errors: list[BaseException] = []
    replies: list = []

    worker = start(lambda: ingest_webhooks(state), errors)
    assert pause.reached.wait(WAIT_LIMIT)
    agent = start(
        lambda: replies.append(client.post(f"/api/v1/conversations/{conversation_id(state)}/messages",
                                           json={"text": "It arrives tomorrow."})),
        errors,
    )
    wait_for(lambda: lock_waiters(state) >= 1, "the reply to wait for the customer's message")
    pause.proceed.set()
    worker.join(WAIT_LIMIT)
    agent.join(WAIT_LIMIT)
    dispatch(state)

    assert errors == []
    (response,) = replies
    assert response.status_code == 201, response.json
    assert held_state(state, response.json["id"]) == ("sent", None)
    assert [message["body"] for message in twilio.messages] == ["It arrives tomorrow."]


def test_customer_writing_during_held_reply_releases_it(client, state, whatsapp_channel, twilio, monkeypatch):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    queue_inbound(client, whatsapp_channel, "Hello again")
    pause = Pause()
    create_reply = api_module.create_reply

    def create_then_pause(*args, **kwargs):
        message = create_reply(*args, **kwargs)
        pause.wait_here()
        return message

    monkeypatch.setattr(api_module, "create_reply", create_then_pause)
    errors: list[BaseException] = []
    replies: list = []

    agent = start(
        lambda: replies.append(client.post(f"/api/v1/conversations/{conversation_id(state)}/messages",
                                           json={"text": "It arrives tomorrow."})),
        errors,
    )
    assert pause.reached.wait(WAIT_LIMIT)
    worker = start(lambda: ingest_webhooks(state), errors)
    wait_for(lambda: lock_waiters(state) >= 1, "the customer's message to wait for the reply")
    pause.proceed.set()
    agent.join(WAIT_LIMIT)
    worker.join(WAIT_LIMIT)
    dispatch(state)

    assert errors == []
    (response,) = replies
    assert response.status_code == 201, response.json
    # Held when it was written, and released by the customer's message that came right after.
    assert response.json["held"]["reason"] == "outside_window"
    assert held_state(state, response.json["id"]) == ("sent", None)
    assert [message["body"] for message in twilio.messages] == ["It arrives tomorrow."]


def test_window_error_while_customer_writes_is_retried(client, state, whatsapp_channel, twilio, monkeypatch):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    message_id = client.post(f"/api/v1/conversations/{conversation_id(state)}/messages",
                             json={"text": "It ships today."}).json["id"]
    dispatch(state)
    [sent] = twilio.messages
    # The reply sat in Twilio's queue while the window closed, and the customer writes as
    # Twilio's callback about error 63016 comes in.
    close_window(state)
    queue_inbound(client, whatsapp_channel, "Hello again")
    pause = Pause()
    pause_ingestion_before_commit(monkeypatch, pause)
    errors: list[BaseException] = []

    worker = start(lambda: ingest_webhooks(state), errors)
    assert pause.reached.wait(WAIT_LIMIT)
    monkeypatch.undo()
    callback = start(lambda: post_status(client, whatsapp_channel, sent["sid"], "failed", "63016"), errors)
    wait_for(lambda: lock_waiters(state) >= 1, "the window error to wait for the customer's message")
    pause.proceed.set()
    worker.join(WAIT_LIMIT)
    callback.join(WAIT_LIMIT)
    dispatch(state)

    assert errors == []
    status, _ = held_state(state, message_id)
    assert status == "sent"
    assert [message["body"] for message in twilio.messages] == ["It ships today.", "It ships today."]


def test_reply_during_batch_never_deadlocks(client, state, whatsapp_channel, twilio, monkeypatch):
    other = "+15551230001"
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    post_inbound(client, whatsapp_channel, "And mine?", form=build_message_form(whatsapp_channel, other, "And mine?", "Ada"))
    with state.session_factory() as session:
        other_conversation = session.scalar(select(Message.conversation_id).where(Message.sender_address == other))
    queue_inbound(client, whatsapp_channel, "Hello again")
    queue_inbound(client, whatsapp_channel, "Me too", form=build_message_form(whatsapp_channel, other, "Me too", "Ada"))

    # The batch is stored message by message, as after its bulk insert failed because a
    # concurrent batch added the same new customer first. The first message records its
    # events, and the second one then locks the customer the agent is replying to.
    def fail_bulk(*args, **kwargs):
        raise RuntimeError("bulk insert failed")

    monkeypatch.setattr(ingest_bulk_whatsapp, "ingest_whatsapp_batch", fail_bulk)
    pause = Pause()
    record_event = replies_module.record_event

    def pause_then_record(*args, **kwargs):
        if not pause.reached.is_set():
            pause.wait_here()
        return record_event(*args, **kwargs)

    monkeypatch.setattr(replies_module, "record_event", pause_then_record)
    errors: list[BaseException] = []
    replies: list = []

    agent = start(
        lambda: replies.append(client.post(f"/api/v1/conversations/{other_conversation}/messages",
                                           json={"text": "Yours ships today."})),
        errors,
    )
    assert pause.reached.wait(WAIT_LIMIT)
    worker = start(lambda: ingest_webhooks(state), errors)
    wait_for(lambda: lock_waiters(state) >= 1, "the batch to wait for the reply's customer")
    pause.proceed.set()
    agent.join(WAIT_LIMIT)
    worker.join(WAIT_LIMIT)

    assert errors == []
    (response,) = replies
    assert response.status_code == 201, response.json
    with state.session_factory() as session:
        texts = session.scalars(select(Message.text).where(Message.direction == "inbound").order_by(Message.id)).all()
    assert texts == ["Where is my parcel?", "And mine?", "Hello again", "Me too"]
