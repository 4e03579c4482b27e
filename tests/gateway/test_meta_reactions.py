"""A Cloud API reaction to an agent's reply joins that reply's conversation and names it."""

from __future__ import annotations

from sqlalchemy import select

from gateway import get_state
from inbox.models import Message
from tests.support.meta_live import (  # noqa: F401 - pytest fixtures
    CUSTOMER,
    agent_client,
    customer_says,
    customer_writes,
    dispatch,
    meta_app,
    meta_channel_id,
    meta_server,
    service,
)
from tests.support.meta_server import message


def test_reaction_folds_onto_reply(meta_app, meta_server, service, meta_channel_id, agent_client):
    customer_says(meta_server, service, meta_channel_id, "Where is my order?")
    (conversation,) = agent_client.get("/conversations")["items"]
    reply = agent_client.request("POST", f"/conversations/{conversation['id']}/messages", json={"text": "On its way."})
    assert reply.status_code == 201, reply.text
    dispatch(meta_app)
    (sent,) = meta_server.wait_for_messages(1)

    reaction = message(CUSTOMER, "reaction", {"message_id": sent["id"], "emoji": "🙏"})
    customer_writes(meta_server, service, meta_channel_id, reaction)

    with get_state(meta_app).session_factory() as session:
        stored = session.scalar(select(Message).where(Message.provider_message_id == reaction["id"]))
        assert stored is not None
        assert stored.conversation_id == conversation["id"]
        assert stored.reply_to_message_id == reply.json()["id"]
        assert stored.content == {"type": "reaction", "emoji": "🙏"}
        assert stored.thread_reason == "reaction"
