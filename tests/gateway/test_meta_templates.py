"""Meta message templates from the inbox: the approved list, and a template reply outside the window.

Switchboard runs on a loopback port. The Cloud API-compatible test server lists the business
account's templates, receives the sends and plays Meta's side of the webhooks.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from gateway import get_state
from inbox.channel_config import update_channel_settings
from inbox.errors import InvalidInput
from inbox.models import Conversation, utcnow
from tests.support.meta_live import (  # noqa: F401 - pytest fixtures
    agent_client,
    customer_says,
    dispatch,
    meta_app,
    meta_channel_id,
    meta_server,
    service,
)


def _close_window(meta_app) -> None:
    with get_state(meta_app).session_factory() as session:
        session.execute(update(Conversation).values(last_inbound_at=utcnow() - timedelta(hours=25)))
        session.commit()


def _conversation_after_window(meta_app, meta_server, service, channel_id, agent_client) -> int:
    customer_says(meta_server, service, channel_id, "Where is my order?")
    _close_window(meta_app)
    (conversation,) = agent_client.get("/conversations")["items"]
    return conversation["id"]


def _send_template(agent_client, conversation_id: int, template: dict):
    return agent_client.request("POST", f"/conversations/{conversation_id}/messages", json={"template": template})


def test_template_list_approved_and_cached(meta_server, meta_channel_id, agent_client):
    approved = meta_server.add_template("order_shipped", "en_US", body="Hi {{1}}, order {{2}} shipped.",
                                        examples=["Grace", "A-1"])
    meta_server.add_template("order_shipped", "de", body="Hallo {{1}}", status="PENDING")
    meta_server.add_template("old_offer", "en_US", 1, status="REJECTED")
    meta_server.template_page_size = 2  # the list spans two pages

    first = agent_client.get(f"/channels/{meta_channel_id}/templates")
    reads_after_first = len(meta_server.template_listings)
    second = agent_client.get(f"/channels/{meta_channel_id}/templates")
    refreshed = agent_client.get(f"/channels/{meta_channel_id}/templates?refresh=1")

    assert first["provider"] == "meta"
    assert first["error"] is None
    assert first["items"] == [{
        "template_id": approved.id,
        "name": "order_shipped",
        "language": "en_US",
        "category": "UTILITY",
        "body": "Hi {{1}}, order {{2}} shipped.",
        "placeholders": ["1", "2"],
        "parameter_count": 2,
        "variables": {"1": "Grace", "2": "A-1"},
    }]
    assert reads_after_first == 2
    assert second == first
    assert len(meta_server.template_listings) == 4
    assert refreshed["items"] == first["items"]


def test_template_list_outage_serves_last_list(meta_server, meta_channel_id, agent_client):
    meta_server.add_template("order_shipped", "en_US", 1)
    agent_client.get(f"/channels/{meta_channel_id}/templates")
    meta_server.fail_template_listings = 1

    stale = agent_client.get(f"/channels/{meta_channel_id}/templates?refresh=1")

    assert [item["name"] for item in stale["items"]] == ["order_shipped"]
    assert "HTTP 503" in stale["error"]


def test_template_list_outage_without_cache_is_502(meta_server, meta_channel_id, agent_client):
    meta_server.fail_template_listings = 1

    response = agent_client.request("GET", f"/channels/{meta_channel_id}/templates")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "templates_unavailable"
    assert "from Meta" in response.json()["error"]["message"]


def test_template_reply_outside_window_is_sent(meta_app, meta_server, service, meta_channel_id, agent_client):
    meta_server.add_template("order_shipped", "en_US", body="Hi {{1}}, your order {{2}} shipped.")
    conversation_id = _conversation_after_window(meta_app, meta_server, service, meta_channel_id, agent_client)

    response = _send_template(agent_client, conversation_id, {
        "name": "order_shipped", "language": "en_US", "variables": {"2": "A-17", "1": "Grace"},
    })
    dispatch(meta_app)

    assert response.status_code == 201, response.text
    reply = response.json()
    assert reply["held"] is None
    assert reply["text"] == "Hi Grace, your order A-17 shipped."
    assert reply["template"] == {"name": "order_shipped", "language": "en_US", "variables": {"1": "Grace", "2": "A-17"}}
    (sent,) = meta_server.wait_for_messages(1)
    assert sent["type"] == "template"
    assert sent["to"] == "+15551230000"
    assert sent["template"] == {
        "name": "order_shipped",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [
            {"type": "text", "text": "Grace"}, {"type": "text", "text": "A-17"},
        ]}],
    }
    assert agent_client.message(conversation_id, reply["id"])["delivery_status"] == "queued"


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({"name": "order_shipped", "language": "en_US", "variables": {"1": "Grace"}}, "template.variables.2"),
        ({"name": "order_shipped", "language": "en_US", "variables": {"1": "a", "2": "b", "3": "c"}},
         "template.variables.3"),
        ({"name": "order_shipped", "language": "en_US", "variables": {"1": "two\nlines", "2": "b"}},
         "template.variables.1"),
        ({"name": "order_shipped", "language": "de", "variables": {}}, "template.name"),
        ({"name": "Order Shipped", "language": "en_US"}, "template.name"),
        ({"name": "order_shipped", "language": "english"}, "template.language"),
        ({"name": "order_shipped", "language": "en_US", "variables": ["Grace"]}, "template.variables"),
        ({"content_sid": "HX" + "0" * 32}, "template.name"),
    ],
)
def test_invalid_template_reply_is_400(meta_app, meta_server, service, meta_channel_id, agent_client, template, field):
    meta_server.add_template("order_shipped", "en_US", body="Hi {{1}}, your order {{2}} shipped.")
    conversation_id = _conversation_after_window(meta_app, meta_server, service, meta_channel_id, agent_client)

    response = _send_template(agent_client, conversation_id, template)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert dispatch(meta_app) == 0
    assert meta_server.requests == []


@pytest.mark.parametrize(
    ("variables", "field", "message"),
    [
        ({"1": "Grace", "2": "A-17\u2028B"}, "template.variables.2", "Variable {{2}} contains a line break (U+2028)."),
        ({"1": "Grace", "2": "A-17\fB"}, "template.variables.2", "Variable {{2}} contains a line break (U+000C)."),
        ({"1": "Grace", "2": "A-17\x1bB"}, "template.variables.2", "Variable {{2}} contains the control character U+001B."),
        ({"1": "Grace  Hopper     Lee", "2": "b"}, "template.variables.1", "Variable {{1}} contains 5 consecutive spaces"),
    ],
)
def test_rejected_template_variable_is_400(meta_app, meta_server, service, meta_channel_id, agent_client,
                                                   variables, field, message):
    meta_server.add_template("order_shipped", "en_US", body="Hi {{1}}, your order {{2}} shipped.")
    conversation_id = _conversation_after_window(meta_app, meta_server, service, meta_channel_id, agent_client)
    template = {"name": "order_shipped", "language": "en_US", "variables": variables}

    response = _send_template(agent_client, conversation_id, template)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert response.json()["error"]["message"].startswith(message)
    assert dispatch(meta_app) == 0
    assert meta_server.requests == []


def test_template_rejected_at_send_shows_meta_code(meta_app, meta_server, service, meta_channel_id, agent_client):
    meta_server.add_template("order_shipped", "en_US", 1)
    conversation_id = _conversation_after_window(meta_app, meta_server, service, meta_channel_id, agent_client)
    response = _send_template(agent_client, conversation_id,
                              {"name": "order_shipped", "language": "en_US", "variables": {"1": "A-17"}})
    meta_server.fail_next(400, 132015, "Template is paused", "The template was paused for low quality.")

    dispatch(meta_app)

    failed = agent_client.message(conversation_id, response.json()["id"])
    assert failed["delivery_status"] == "failed"
    assert "132015" in failed["error"]
    assert "Template is paused" in failed["error"]


def test_business_account_id_is_a_meta_setting(meta_app, meta_channel_id):
    with get_state(meta_app).session_factory() as session:
        changed = update_channel_settings(session, meta_channel_id, {"waba_id": "123456789"})
        assert changed.settings["waba_id"] == "123456789"
        with pytest.raises(InvalidInput, match="Business Account ID") as raised:
            update_channel_settings(session, meta_channel_id, {"waba_id": "waba-12"})
        assert raised.value.field == "waba_id"
        session.rollback()


def test_business_account_id_unknown_on_twilio(state, whatsapp_channel):
    with state.session_factory() as session:
        with pytest.raises(InvalidInput, match="Unknown setting 'waba_id'"):
            update_channel_settings(session, whatsapp_channel.id, {"waba_id": "123456789"})
