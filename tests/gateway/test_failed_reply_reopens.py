"""A reply that fails for good opens its resolved, pending or snoozed conversation again.

Replies leave through the outbox to the Twilio-compatible test server; delivery reports are
signed status webhooks, applied as the webhook worker applies them.
"""

from __future__ import annotations

from sqlalchemy import select

from inbox.models import Conversation, Message
from inbox.proactive.sending import AUTOMATIC_PROACTIVE
from inbox.workflow import reopen_for_failed_reply
from tests.gateway.test_whatsapp_optout_fallback import (  # noqa: F401 (smtp is a fixture)
    customer_email_first,
    email_channel,
    smtp,
    whatsapp_conversation_id,
)
from tests.support.whatsapp import (  # noqa: F401 (client, config and twilio are fixtures)
    app_with,
    client,
    config,
    dispatch,
    post_inbound,
    post_status,
    twilio,
)

INVALID_NUMBER = (400, 21211, "The 'To' number is not a valid phone number.")


def _reply_then_set(client, state, whatsapp_channel, status: str) -> tuple[int, int]:
    """Return the ids of a conversation with an agent's queued reply and of that reply, after
    an agent set the conversation to ``status``."""
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    conversation_id = whatsapp_conversation_id(state)
    reply = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "It left today."})
    assert reply.status_code == 201, reply.json
    changed = client.patch(f"/api/v1/conversations/{conversation_id}", json={"status": status})
    assert changed.status_code == 200, changed.json
    return conversation_id, reply.json["id"]


def _status_and_reason(client, conversation_id: int) -> tuple[str, str | None]:
    conversation = client.get(f"/api/v1/conversations/{conversation_id}").json
    last = conversation["activities"][-1]
    return conversation["status"], last["details"].get("reason")


def test_rejected_reply_reopens_resolved(client, state, whatsapp_channel, twilio):
    conversation_id, _ = _reply_then_set(client, state, whatsapp_channel, "resolved")
    twilio.fail_next(*INVALID_NUMBER)

    dispatch(state)

    assert _status_and_reason(client, conversation_id) == ("open", "reply_failed")


def test_undelivered_report_reopens_pending(client, state, whatsapp_channel, twilio):
    conversation_id, _ = _reply_then_set(client, state, whatsapp_channel, "pending")
    dispatch(state)
    assert _status_and_reason(client, conversation_id)[0] == "pending"

    post_status(client, whatsapp_channel, twilio.messages[0]["sid"], "undelivered", "63032")

    assert _status_and_reason(client, conversation_id) == ("open", "reply_failed")


def test_delivered_reply_leaves_resolved(client, state, whatsapp_channel, twilio):
    conversation_id, _ = _reply_then_set(client, state, whatsapp_channel, "resolved")
    dispatch(state)

    post_status(client, whatsapp_channel, twilio.messages[0]["sid"], "delivered")

    assert _status_and_reason(client, conversation_id)[0] == "resolved"


def test_automatic_email_resend_leaves_resolved(config, whatsapp_channel, email_channel, twilio, smtp):
    with app_with(config, whatsapp_email_fallback="automatic") as (state, client, _):
        customer_email_first(state, email_channel)
        conversation_id, _ = _reply_then_set(client, state, whatsapp_channel, "resolved")
        dispatch(state)

        post_status(client, whatsapp_channel, twilio.messages[0]["sid"], "undelivered", "63032")
        dispatch(state)

        assert len(smtp.wait_for(1)) == 1
        assert _status_and_reason(client, conversation_id)[0] == "resolved"


def test_failed_automatic_message_reopens_nothing(client, state, whatsapp_channel):
    conversation_id, reply_id = _reply_then_set(client, state, whatsapp_channel, "resolved")
    with state.session_factory() as session:
        message = session.get(Message, reply_id)
        message.agent_id = None
        message.automatic = AUTOMATIC_PROACTIVE

        reopen_for_failed_reply(session, message)
        session.commit()

        assert session.scalar(select(Conversation.status).where(Conversation.id == conversation_id)) == "resolved"
