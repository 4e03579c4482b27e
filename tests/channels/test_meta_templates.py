"""Listing and sending Meta message templates, against the Cloud API-compatible test server."""

from __future__ import annotations

import pytest

from channels.errors import PermanentSendError
from channels.types import OutboundMessage
from channels.whatsapp.meta import MessageTemplatesError, list_message_templates, send_message
from tests.channels.test_meta_send import CUSTOMER, server, settings  # noqa: F401 (fixtures)
from tests.support.meta_server import DEFAULT_ACCOUNT_ID


def _template_message(name: str, language: str, variables: dict[str, str]) -> OutboundMessage:
    return OutboundMessage(
        to=CUSTOMER, text="rendered text", template_name=name, template_language=language,
        content_variables=variables,
    )


def test_listing_reads_every_page(server, settings):
    for index in range(5):
        server.add_template(f"update_{index}", "en_US", index)
    server.template_page_size = 2

    templates = list_message_templates(settings, DEFAULT_ACCOUNT_ID)

    assert [t.name for t in templates] == [f"update_{index}" for index in range(5)]
    assert len(server.template_listings) == 3
    assert "after=" not in server.template_listings[0]
    assert "after=2" in server.template_listings[1]
    assert "fields=id,name,language,status,category,parameter_format,components" in server.template_listings[0]


def test_listing_reads_body_placeholders_and_samples(server, settings):
    positional = server.add_template(
        "order_shipped", "en_US", body="Hi {{1}}, order {{2}} shipped.", examples=["Grace", "A-17"], category="UTILITY",
    )
    server.add_template(
        "pickup_ready", "de", body="Hallo {{name}}, abholbereit ab {{day}}.", examples=["Ada", "Montag"],
        status="PENDING",
    )

    shipped, pickup = list_message_templates(settings, DEFAULT_ACCOUNT_ID)

    assert shipped.id == positional.id
    assert shipped.language == "en_US"
    assert shipped.status == "APPROVED"
    assert shipped.category == "UTILITY"
    assert shipped.body == "Hi {{1}}, order {{2}} shipped."
    assert shipped.placeholders == ("1", "2")
    assert shipped.examples == {"1": "Grace", "2": "A-17"}
    assert pickup.status == "PENDING"
    assert pickup.placeholders == ("name", "day")
    assert pickup.examples == {"name": "Ada", "day": "Montag"}


def test_listing_outage_raises_with_meta_code(server, settings):
    server.fail_template_listings = 1

    with pytest.raises(MessageTemplatesError, match=r"HTTP 503 \(error 2\)"):
        list_message_templates(settings, DEFAULT_ACCOUNT_ID)


def test_listing_unknown_account_raises(server, settings):
    with pytest.raises(MessageTemplatesError, match="does not exist"):
        list_message_templates(settings, "999999999")


def test_listing_invalid_account_id_sends_nothing(server, settings):
    with pytest.raises(MessageTemplatesError, match="invalid WhatsApp Business Account id"):
        list_message_templates(settings, "../me")

    assert server.template_listings == []


def test_template_send_orders_positional_parameters(server, settings):
    server.add_template("order_update", "en_US", body="{{1}} {{2}} {{3}} {{4}} {{5}} {{6}} {{7}} {{8}} {{9}} {{10}}")
    variables = {str(index): f"v{index}" for index in range(10, 0, -1)}

    send_message(settings, _template_message("order_update", "en_US", variables))

    (sent,) = server.messages
    assert sent["type"] == "template"
    assert "text" not in sent
    parameters = sent["template"]["components"][0]["parameters"]
    assert [p["text"] for p in parameters] == [f"v{index}" for index in range(1, 11)]
    assert all("parameter_name" not in p for p in parameters)


def test_template_send_names_named_parameters(server, settings):
    server.add_template("pickup_ready", "de", body="Hallo {{name}}, abholbereit ab {{day}}.")

    send_message(settings, _template_message("pickup_ready", "de", {"name": "Ada", "day": "Montag"}))

    (sent,) = server.messages
    assert sent["template"]["language"] == {"code": "de"}
    assert sent["template"]["components"][0]["parameters"] == [
        {"type": "text", "parameter_name": "name", "text": "Ada"},
        {"type": "text", "parameter_name": "day", "text": "Montag"},
    ]


def test_template_send_rejected_when_not_approved(server, settings):
    server.add_template("paused_one", "en_US", 0, status="PAUSED")

    with pytest.raises(PermanentSendError) as raised:
        send_message(settings, _template_message("paused_one", "en_US", {}))

    assert raised.value.code == "132001"
    assert server.messages == []


def test_message_without_template_goes_as_text(server, settings):
    send_message(settings, OutboundMessage(to=CUSTOMER, text="Plain words"))

    assert server.messages[0]["type"] == "text"
    assert server.messages[0]["text"]["body"] == "Plain words"
