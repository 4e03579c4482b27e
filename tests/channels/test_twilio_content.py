"""WhatsApp templates through the real twilio SDK: Content API listing and template sends."""

from __future__ import annotations

import json

import pytest

from channels.errors import PermanentSendError
from channels.types import OutboundMessage
from channels.whatsapp.twilio import (
    ContentApiError,
    TwilioSettings,
    list_content_templates,
    render_template,
    send_whatsapp,
    template_placeholders,
)

from tests.channels.test_twilio_send import (  # noqa: F401 (settings and twilio_server are fixtures)
    CUSTOMER,
    OUR_NUMBER,
    settings,
    twilio_server,
)


def test_listing_reads_every_page_with_approval(twilio_server, settings):
    twilio_server.content_page_size = 2
    shipped = twilio_server.add_template("Hi {{1}}, order {{2}} shipped.", name="shipped", variables={"1": "Ann"})
    pending = twilio_server.add_template("Soon", name="soon", status="pending")
    draft = twilio_server.add_template("Draft", name="draft", status=None)

    templates = list_content_templates(settings)

    assert [(t.sid, t.name, t.whatsapp_status) for t in templates] == [
        (shipped, "shipped", "approved"), (pending, "soon", "pending"), (draft, "draft", None),
    ]
    assert templates[0].body == "Hi {{1}}, order {{2}} shipped."
    assert templates[0].variables == {"1": "Ann"}
    assert templates[0].category == "UTILITY"
    assert twilio_server.content_reads == 2


def test_listing_with_wrong_token_raises(twilio_server, settings):
    wrong = TwilioSettings(settings.account_sid, "wrong-token", OUR_NUMBER, api_base_url=twilio_server.base_url)

    with pytest.raises(ContentApiError):
        list_content_templates(wrong)


def test_listing_without_server_raises(twilio_server, settings):
    twilio_server.stop()

    with pytest.raises(ContentApiError, match=r"^Twilio at 127\.0\.0\.1 could not be reached"):
        list_content_templates(settings)


def test_listing_ignores_edge_and_region_settings(twilio_server, settings, monkeypatch):
    # The SDK would rewrite content.twilio.com into content.<edge>.<region>.twilio.com.
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    twilio_server.add_template("Hello")

    assert len(list_content_templates(settings)) == 1


def test_template_send_posts_content_sid_and_variables(twilio_server, settings):
    sid = twilio_server.add_template("Hi {{1}}")

    send_whatsapp(settings, OutboundMessage(
        to=CUSTOMER, text="Hi Ann", content_sid=sid, content_variables={"1": "Ann"},
    ))

    [request] = twilio_server.wait_for(1)
    assert request["ContentSid"] == sid
    assert json.loads(request["ContentVariables"]) == {"1": "Ann"}
    assert "Body" not in request


def test_rejected_template_variable_not_sent(twilio_server, settings):
    sid = twilio_server.add_template("Hi {{1}}")

    with pytest.raises(PermanentSendError) as raised:
        send_whatsapp(settings, OutboundMessage(
            to=CUSTOMER, text="Hi Ann", content_sid=sid, content_variables={"1": "Ann\x0cLee"},
        ))

    assert str(raised.value).startswith("template variable {{1}} contains a line break (U+000C)")
    assert twilio_server.requests == []


def test_template_send_of_unknown_sid_fails_permanently(twilio_server, settings):
    with pytest.raises(PermanentSendError) as raised:
        send_whatsapp(settings, OutboundMessage(to=CUSTOMER, text="Hi", content_sid="HX" + "0" * 32))

    assert raised.value.code == "21655"


def test_placeholders_and_rendering():
    body = "Hi {{1}}, order {{ 2 }} for {{1}} ({{name}})"

    assert template_placeholders(body) == ["1", "2", "name"]
    assert render_template(body, {"1": "Ann", "2": "A-7"}) == "Hi Ann, order A-7 for Ann ({{name}})"


def test_server_serves_content_and_approval_to_sdk(twilio_server):
    from twilio.rest import Client

    sid = twilio_server.add_template("Hi {{1}}", name="greeting")
    client = Client(twilio_server.account_sid, twilio_server.auth_token)
    client.content.base_url = twilio_server.base_url

    [content] = client.content.v1.contents.list()
    approval = client.content.v1.contents(sid).approval_fetch().fetch()

    assert content.sid == sid
    assert content.types == {"twilio/text": {"body": "Hi {{1}}"}}
    assert approval.whatsapp["status"] == "approved"
    assert approval.whatsapp["name"] == "greeting"
