"""The WhatsApp 24-hour window end to end: held replies, templates, Twilio error 63016.

Inbound messages arrive as webhooks signed with twilio's RequestValidator; replies leave
through the outbox and the twilio SDK to the Twilio-compatible test server.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from inbox.models import Conversation, Message, OutboxItem, RawPayload, utcnow
from inbox.replies import TemplateContent, create_reply
from inbox.serialize import isoformat
from tests.support.whatsapp import (  # noqa: F401 (client, config and twilio are fixtures)
    app_with,
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


def conversation_id(state) -> int:
    with state.session_factory() as session:
        return session.scalar(select(Conversation.id))


def reply(client, state, **body):
    return client.post(f"/api/v1/conversations/{conversation_id(state)}/messages", json=body)


def test_reply_inside_window_is_sent_as_text(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")

    detail = client.get(f"/api/v1/conversations/{conversation_id(state)}").json
    sent = reply(client, state, text="It ships today.")
    dispatch(state)

    closes_at = detail["whatsapp"]["window_closes_at"]
    assert closes_at > (utcnow() + timedelta(hours=23, minutes=59)).isoformat()[:19]
    assert detail["whatsapp"]["outside_window"] == "hold"
    assert sent.status_code == 201
    assert sent.json["held"] is None
    (request,) = twilio.wait_for(1)
    assert request["Body"] == "It ships today."


def test_reply_outside_window_is_held_not_sent(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)

    sent = reply(client, state, text="Sorry for the wait.")
    attempted = dispatch(state)

    assert sent.status_code == 201
    assert sent.json["held"]["reason"] == "outside_window"
    assert sent.json["delivery_status"] is None
    assert attempted == 0
    assert twilio.requests == []
    thread = client.get(f"/api/v1/conversations/{conversation_id(state)}").json
    assert thread["messages"][-1]["held"]["reason"] == "outside_window"


def test_held_reply_sent_once_after_inbound(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    held_id = reply(client, state, text="It arrives tomorrow.").json["id"]

    form = post_inbound(client, whatsapp_channel, "Any news?")
    post_inbound(client, whatsapp_channel, "Any news?", form=form)  # Twilio's retry of the webhook
    # Two dispatchers, as two worker processes would run, race for the released reply.
    dispatchers = [threading.Thread(target=dispatch, args=(state,)) for _ in range(2)]
    for thread in dispatchers:
        thread.start()
    for thread in dispatchers:
        thread.join()
    dispatch(state)

    assert [m["body"] for m in twilio.messages] == ["It arrives tomorrow."]
    with state.session_factory() as session:
        message = session.get(Message, held_id)
        assert message.outbox_item.status == "sent"
        assert message.provider_message_id == twilio.messages[0]["sid"]
        assert message.delivery_status == "queued"


def test_cancelled_held_reply_is_never_sent(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    held_id = reply(client, state, text="Wrong answer").json["id"]

    cancelled = client.post(f"/api/v1/messages/{held_id}/cancel")
    again = client.post(f"/api/v1/messages/{held_id}/cancel")
    post_inbound(client, whatsapp_channel, "Hello?")
    dispatch(state)

    assert cancelled.status_code == 200
    assert cancelled.json["cancelled"] is True
    assert cancelled.json["held"] is None
    assert again.status_code == 409
    assert again.json["error"]["code"] == "not_held"
    assert twilio.requests == []


def test_sent_reply_cannot_be_cancelled(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Hi")
    sent_id = reply(client, state, text="Hello!").json["id"]
    dispatch(state)

    response = client.post(f"/api/v1/messages/{sent_id}/cancel")

    assert response.status_code == 409
    assert "sent" in response.json["error"]["message"]


def test_reject_setting_answers_409(config, whatsapp_channel, twilio):
    with app_with(config, whatsapp_outside_window="reject") as (state, client, _):
        post_inbound(client, whatsapp_channel, "Where is my parcel?")
        close_window(state)

        response = reply(client, state, text="Sorry for the wait.")

        assert response.status_code == 409
        assert response.json["error"]["code"] == "outside_window"
        assert "template" in response.json["error"]["message"]
        detail = client.get(f"/api/v1/conversations/{conversation_id(state)}").json
        assert detail["whatsapp"]["outside_window"] == "reject"
        assert [m["direction"] for m in detail["messages"]] == ["inbound"]


def test_window_error_on_send_holds_the_reply(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    message_id = reply(client, state, text="It ships today.").json["id"]
    twilio.fail_next(400, 63016, "Failed to send freeform message because you are outside the allowed window.")

    dispatch(state)
    held = client.get(f"/api/v1/conversations/{conversation_id(state)}").json["messages"][-1]
    post_inbound(client, whatsapp_channel, "Hello?")
    dispatch(state)

    assert held["id"] == message_id
    assert held["held"]["reason"] == "window_error"
    assert "63016" in held["error"]
    assert held["delivery_status"] is None
    assert [m["body"] for m in twilio.messages] == ["It ships today."]
    assert len(twilio.requests) == 2


def test_window_error_in_status_callback_holds_the_reply(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    message_id = reply(client, state, text="It ships today.").json["id"]
    dispatch(state)
    first_sid = twilio.messages[0]["sid"]

    post_status(client, whatsapp_channel, first_sid, "failed", "63016")
    post_status(client, whatsapp_channel, first_sid, "undelivered", "63016")  # a late duplicate
    held = client.get(f"/api/v1/conversations/{conversation_id(state)}").json["messages"][-1]
    dispatch(state)
    sent_while_held = len(twilio.messages)
    post_inbound(client, whatsapp_channel, "Hello?")
    dispatch(state)

    assert held["id"] == message_id
    assert held["held"]["reason"] == "window_error"
    assert sent_while_held == 1
    assert len(twilio.messages) == 2
    with state.session_factory() as session:
        message = session.get(Message, message_id)
        assert message.provider_message_id == twilio.messages[1]["sid"]
        assert message.delivery_status == "queued"
        assert message.outbox_item.status == "sent"


def test_window_error_with_reject_fails(config, whatsapp_channel, twilio):
    with app_with(config, whatsapp_outside_window="reject") as (state, client, _):
        post_inbound(client, whatsapp_channel, "Where is my parcel?")
        message_id = reply(client, state, text="It ships today.").json["id"]
        twilio.fail_next(400, 63016, "Failed to send freeform message because you are outside the allowed window.")

        dispatch(state)

        with state.session_factory() as session:
            message = session.get(Message, message_id)
            assert message.delivery_status == "failed"
            assert "template" in message.delivery_error
            assert message.outbox_item.status == "failed"


def test_template_list_approved_and_cached(client, whatsapp_channel, twilio):
    approved = twilio.add_template("Hi {{1}}, your order {{2}} shipped.", name="order_shipped",
                                   variables={"1": "Customer", "2": "A-1"})
    twilio.add_template("Still waiting", name="pending_one", status="pending")
    twilio.add_template("Never submitted", name="draft", status=None)
    twilio.content_page_size = 2  # the list spans two pages

    first = client.get(f"/api/v1/channels/{whatsapp_channel.id}/templates")
    reads_after_first = twilio.content_reads
    second = client.get(f"/api/v1/channels/{whatsapp_channel.id}/templates")
    refreshed = client.get(f"/api/v1/channels/{whatsapp_channel.id}/templates?refresh=1")

    assert first.status_code == 200
    (template,) = first.json["items"]
    assert template["content_sid"] == approved
    assert template["name"] == "order_shipped"
    assert template["placeholders"] == ["1", "2"]
    assert template["variables"] == {"1": "Customer", "2": "A-1"}
    assert reads_after_first == 2
    assert second.json == first.json
    assert twilio.content_reads == 4
    assert refreshed.json["items"][0]["content_sid"] == approved


def test_template_reply_outside_window_is_sent(client, state, whatsapp_channel, twilio):
    sid = twilio.add_template("Hi {{1}}, your order {{2}} shipped.", name="order_shipped")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)

    response = reply(client, state, template={"content_sid": sid, "variables": {"1": "Grace", "2": "A-17"}})
    dispatch(state)

    assert response.status_code == 201
    assert response.json["held"] is None
    assert response.json["text"] == "Hi Grace, your order A-17 shipped."
    assert response.json["template"] == {"content_sid": sid, "variables": {"1": "Grace", "2": "A-17"}}
    (request,) = twilio.wait_for(1)
    assert request["ContentSid"] == sid
    assert json.loads(request["ContentVariables"]) == {"1": "Grace", "2": "A-17"}
    assert "Body" not in request
    assert twilio.messages[0]["content_sid"] == sid


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"1": "Grace"}, "template.variables.2"),
        ({"1": "Grace", "2": "  "}, "template.variables.2"),
        ({"1": "Grace", "2": "A-17", "3": "extra"}, "template.variables.3"),
        ({"1": "Grace", "2": "two\nlines"}, "template.variables.2"),
        ({"1": 5, "2": "A-17"}, "template.variables"),
    ],
)
def test_template_reply_with_bad_variables_is_rejected(client, state, whatsapp_channel, twilio, variables, field):
    sid = twilio.add_template("Hi {{1}}, your order {{2}} shipped.")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")

    response = reply(client, state, template={"content_sid": sid, "variables": variables})

    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert twilio.requests == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("A-17\r\nB-18", "contains a line break (U+000D)"),
        ("A-17\u2028B-18", "contains a line break (U+2028)"),
        ("A-17\u2029B-18", "contains a line break (U+2029)"),
        ("A-17\tB-18", "contains a tab"),
        ("A-17\x0cB-18", "contains a line break (U+000C)"),
        ("A-17\x07B-18", "contains the control character U+0007"),
        ("A-17\x7fB-18", "contains the control character U+007F"),
        ("A-17     B-18", "contains 5 consecutive spaces"),
        ("x" * 1025, "is longer than 1024 characters"),
    ],
)
def test_rejected_template_variable_is_400(client, state, whatsapp_channel, twilio, value, reason):
    sid = twilio.add_template("Hi {{1}}, your order {{2}} shipped.")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")

    response = reply(client, state, template={"content_sid": sid, "variables": {"1": "Grace", "2": value}})

    assert response.status_code == 400
    assert response.json["error"]["field"] == "template.variables.2"
    assert response.json["error"]["message"].startswith(f"Variable {{{{2}}}} {reason}")
    assert twilio.requests == []
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboxItem)) == 0


def test_queued_template_with_rejected_variable_fails(client, state, agent, whatsapp_channel, twilio):
    # A template queued before its variables were checked fails without a request to Twilio.
    sid = twilio.add_template("Hi {{1}}, your order {{2}} shipped.")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    with state.session_factory() as session:
        message = create_reply(session, conversation_id(state), agent.id, "Hi Grace, your order A-17 shipped.",
                               template=TemplateContent(sid, {"1": "Grace", "2": "A-17\u2029"}))
        session.commit()
        message_id = message.id

    dispatch(state)

    with state.session_factory() as session:
        failed = session.get(Message, message_id)
        assert failed.delivery_status == "failed"
        assert failed.delivery_error.startswith("template variable {{2}} contains a line break (U+2029)")
    assert twilio.requests == []


def test_template_variable_four_spaces_sent(client, state, whatsapp_channel, twilio):
    sid = twilio.add_template("Hi {{1}}, your order {{2}} shipped.")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")

    response = reply(client, state, template={"content_sid": sid, "variables": {"1": "Grace", "2": "A-17    B"}})
    dispatch(state)

    assert response.status_code == 201
    (request,) = twilio.wait_for(1)
    assert json.loads(request["ContentVariables"]) == {"1": "Grace", "2": "A-17    B"}


def test_unapproved_template_is_rejected(client, state, whatsapp_channel, twilio):
    sid = twilio.add_template("Rejected text", status="rejected")
    post_inbound(client, whatsapp_channel, "Where is my parcel?")

    unapproved = reply(client, state, template={"content_sid": sid})
    malformed = reply(client, state, template={"content_sid": "HX123"})

    assert unapproved.status_code == 400
    assert unapproved.json["error"]["field"] == "template.content_sid"
    assert "approved" in unapproved.json["error"]["message"]
    assert malformed.status_code == 400


def test_template_list_error_without_cache_is_502(client, whatsapp_channel, twilio):
    twilio.stop()

    response = client.get(f"/api/v1/channels/{whatsapp_channel.id}/templates")

    assert response.status_code == 502
    assert response.json["error"]["code"] == "templates_unavailable"


def test_held_replies_sent_in_order(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    for text in ("First held", "Second held"):
        reply(client, state, text=text)

    post_inbound(client, whatsapp_channel, "Hello?")
    dispatch(state)
    dispatch(state)

    assert [m["body"] for m in twilio.messages] == ["First held", "Second held"]
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "sent")) == 2


def test_early_window_error_report_holds(client, state, whatsapp_channel, agent):
    from channels.types import DeliveryState, DeliveryStatus, SendResult
    from inbox.delivery import record_delivery_status
    from inbox.outbox import claim_next, mark_sent
    from inbox.replies import create_reply

    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    with state.session_factory() as session:
        message_id = create_reply(session, conversation_id(state), agent.id, "It ships today.").id
        session.commit()
    sid = "SM" + "6" * 32
    with state.session_factory() as session:
        claim = claim_next(session)
    # Twilio's callback overtakes the dispatcher's record of the send.
    with state.session_factory() as session:
        record_delivery_status(
            session, whatsapp_channel.id, DeliveryStatus(sid, DeliveryState.FAILED, "63016", "Outside the window")
        )
    with state.session_factory() as session:
        mark_sent(session, claim.item_id, SendResult(sid, DeliveryState.QUEUED), claim_token=claim.claim_token)

    with state.session_factory() as session:
        message = session.get(Message, message_id)
        assert message.outbox_item.status == "held"
        assert message.outbox_item.hold_reason == "window_error"
        assert message.provider_message_id is None
        assert "63016" in message.delivery_error


def test_window_runs_from_webhook_arrival(client, state, whatsapp_channel, twilio):
    queue_inbound(client, whatsapp_channel, "Where is my parcel?")
    # The webhook worker was down for 23 hours after Twilio delivered the message.
    arrived = utcnow() - timedelta(hours=23)
    with state.session_factory() as session:
        session.execute(update(RawPayload).values(received_at=arrived))
        session.commit()
    ingest_webhooks(state)

    detail = client.get(f"/api/v1/conversations/{conversation_id(state)}").json

    assert detail["whatsapp"]["window_closes_at"] == isoformat(arrived + timedelta(hours=24))
    with state.session_factory() as session:
        assert session.scalar(select(Conversation.last_inbound_at)) == arrived
