"""send_whatsapp through the real twilio SDK against the Twilio-compatible test server."""

import socket

import pytest
import requests

from channels.errors import PermanentSendError, TransientSendError
from channels.types import (
    Address,
    AddressKind,
    Attachment,
    DeliveryState,
    OutboundMessage,
    SendResult,
)
from channels.whatsapp import TwilioSettings, send_whatsapp
from tests.support.twilio_server import TwilioTestServer

OUR_NUMBER = "+14155238886"
CUSTOMER = Address(AddressKind.PHONE, "+31612345678")
CALLBACK_URL = "https://support.example.com/webhooks/twilio/1/status"


@pytest.fixture
def twilio_server():
    with TwilioTestServer() as server:
        yield server


@pytest.fixture
def settings(twilio_server):
    return TwilioSettings(
        account_sid=twilio_server.account_sid,
        auth_token=twilio_server.auth_token,
        from_number=OUR_NUMBER,
        api_base_url=twilio_server.base_url,
    )


def reply(text="Your parcel left our warehouse today.", **fields) -> OutboundMessage:
    return OutboundMessage(to=CUSTOMER, text=text, **fields)


# Successful sends


def test_send_posts_from_to_body_and_callback(twilio_server, settings):
    result = send_whatsapp(settings, reply(status_callback_url=CALLBACK_URL))

    [request] = twilio_server.wait_for(1)
    assert request["From"] == "whatsapp:+14155238886"
    assert request["To"] == "whatsapp:+31612345678"
    assert request["Body"] == "Your parcel left our warehouse today."
    assert request["StatusCallback"] == CALLBACK_URL
    [created] = twilio_server.messages
    assert result == SendResult(created["sid"], DeliveryState.QUEUED)


def test_send_without_callback_omits_status_callback(twilio_server, settings):
    send_whatsapp(settings, reply())

    [request] = twilio_server.wait_for(1)
    assert "StatusCallback" not in request


def test_send_keeps_emoji_in_body(twilio_server, settings):
    send_whatsapp(settings, reply("Done ✅ see you soon 👋🏽"))

    [request] = twilio_server.wait_for(1)
    assert request["Body"] == "Done ✅ see you soon 👋🏽"


def test_send_normalizes_recipient_number(twilio_server, settings):
    message = OutboundMessage(to=Address(AddressKind.PHONE, "0031 6 1234-5678"), text="Hi")

    send_whatsapp(settings, message)

    [request] = twilio_server.wait_for(1)
    assert request["To"] == "whatsapp:+31612345678"


def test_send_result_sid_has_twilio_shape(settings):
    result = send_whatsapp(settings, reply())

    assert result.provider_message_id.startswith("SM")
    assert len(result.provider_message_id) == 34


@pytest.mark.parametrize(
    ("twilio_status", "expected"),
    [
        ("accepted", DeliveryState.QUEUED),
        ("sent", DeliveryState.SENT),
        ("unheard-of", DeliveryState.QUEUED),
    ],
)
def test_send_maps_initial_status(twilio_status, expected):
    with TwilioTestServer(initial_status=twilio_status) as server:
        settings = TwilioSettings(
            server.account_sid, server.auth_token, OUR_NUMBER, api_base_url=server.base_url
        )

        result = send_whatsapp(settings, reply())

    assert result.status is expected


def test_send_ignores_twilio_region_environment(monkeypatch, twilio_server, settings):
    # The SDK rewrites host names when these are set; the base URL must survive that.
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    # A rewritten host such as 127.dublin.ie1.0.1 fails here instead of reaching DNS.
    resolve = socket.getaddrinfo

    def resolve_loopback_only(host, *args, **kwargs):
        if host != "127.0.0.1":
            raise socket.gaierror(f"test resolves only 127.0.0.1, not {host}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve_loopback_only)

    send_whatsapp(settings, reply())

    assert len(twilio_server.wait_for(1)) == 1


def test_send_retry_after_server_error_succeeds(twilio_server, settings):
    twilio_server.fail_next(500, 20500, "Internal Server Error")

    with pytest.raises(TransientSendError):
        send_whatsapp(settings, reply())
    result = send_whatsapp(settings, reply())

    assert len(twilio_server.wait_for(2)) == 2
    assert [message["sid"] for message in twilio_server.messages] == [result.provider_message_id]


# Failures


def test_send_server_error_is_transient(twilio_server, settings):
    twilio_server.fail_next(500, 20500, "Internal Server Error")

    with pytest.raises(TransientSendError) as caught:
        send_whatsapp(settings, reply())

    assert caught.value.transient is True
    assert caught.value.code == "20500"


def test_send_rate_limited_is_transient(twilio_server, settings):
    twilio_server.fail_next(429, 20429, "Too Many Requests")

    with pytest.raises(TransientSendError) as caught:
        send_whatsapp(settings, reply())

    assert caught.value.code == "20429"


def test_send_invalid_recipient_is_permanent(twilio_server, settings):
    twilio_server.fail_next(400, 21211, "The 'To' number +31612345678 is not a valid phone number.")

    with pytest.raises(PermanentSendError) as caught:
        send_whatsapp(settings, reply())

    assert caught.value.transient is False
    assert caught.value.code == "21211"
    assert "not a valid phone number" in str(caught.value)


def test_send_with_wrong_auth_token_is_permanent(twilio_server, settings):
    wrong = TwilioSettings(
        settings.account_sid, "not-the-token", OUR_NUMBER, api_base_url=settings.api_base_url
    )

    with pytest.raises(PermanentSendError) as caught:
        send_whatsapp(wrong, reply())

    assert caught.value.code == "20003"
    assert twilio_server.requests == []


def test_send_to_stopped_server_is_transient(twilio_server, settings):
    twilio_server.stop()

    with pytest.raises(TransientSendError) as caught:
        send_whatsapp(settings, reply())

    assert str(caught.value) == "Twilio at 127.0.0.1 could not be reached: the connection was refused."


def test_send_read_timeout_is_transient():
    # The kernel completes the connection to a listening socket, but nothing ever responds.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        host, port = silent.getsockname()
        settings = TwilioSettings(
            "AC0123456789abcdef0123456789abcdef",
            "token",
            OUR_NUMBER,
            api_base_url=f"http://{host}:{port}",
            timeout_seconds=0.2,
        )

        with pytest.raises(TransientSendError) as caught:
            send_whatsapp(settings, reply())

    assert isinstance(caught.value.__cause__, requests.Timeout)
    assert str(caught.value) == "Twilio at 127.0.0.1 could not be reached: the response timed out."


def test_send_base_url_without_scheme_is_permanent(settings):
    broken = TwilioSettings(
        settings.account_sid, settings.auth_token, OUR_NUMBER, api_base_url="127.0.0.1:9"
    )

    with pytest.raises(PermanentSendError, match="invalid Twilio API URL"):
        send_whatsapp(broken, reply())


def test_send_to_email_address_is_permanent(twilio_server, settings):
    message = OutboundMessage(to=Address(AddressKind.EMAIL, "anna@example.com"), text="Hi")

    with pytest.raises(PermanentSendError, match="phone number is required"):
        send_whatsapp(settings, message)
    assert twilio_server.requests == []


def test_send_invalid_recipient_number_is_permanent(twilio_server, settings):
    message = OutboundMessage(to=Address(AddressKind.PHONE, "0612345678"), text="Hi")

    with pytest.raises(PermanentSendError, match="invalid WhatsApp recipient"):
        send_whatsapp(settings, message)
    assert twilio_server.requests == []


def test_send_with_attachment_is_permanent(twilio_server, settings):
    message = reply(attachments=[Attachment("invoice.pdf", "application/pdf", b"%PDF-1.7")])

    with pytest.raises(PermanentSendError, match="attachments"):
        send_whatsapp(settings, message)
    assert twilio_server.requests == []


def test_send_empty_text_is_permanent(twilio_server, settings):
    with pytest.raises(PermanentSendError, match="empty"):
        send_whatsapp(settings, reply(""))
    assert twilio_server.requests == []


# The test server itself


def test_server_requires_basic_auth(twilio_server):
    url = f"{twilio_server.base_url}/2010-04-01/Accounts/{twilio_server.account_sid}/Messages.json"

    response = requests.post(url, data={"To": "whatsapp:+31612345678"}, timeout=10)

    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert response.json()["status"] == 401


def test_server_rejects_missing_to_like_twilio(twilio_server):
    url = f"{twilio_server.base_url}/2010-04-01/Accounts/{twilio_server.account_sid}/Messages.json"
    auth = (twilio_server.account_sid, twilio_server.auth_token)

    form = {"From": "whatsapp:+14155238886", "Body": "Hi"}

    response = requests.post(url, data=form, auth=auth, timeout=10)

    assert response.status_code == 400
    assert response.json()["code"] == 21604
    assert twilio_server.messages == []


def test_server_rejects_other_account(twilio_server):
    other_account = "ACffffffffffffffffffffffffffffffff"
    url = f"{twilio_server.base_url}/2010-04-01/Accounts/{other_account}/Messages.json"
    auth = (twilio_server.account_sid, twilio_server.auth_token)

    response = requests.post(url, data={"To": "whatsapp:+31612345678"}, auth=auth, timeout=10)

    assert response.status_code == 404
    assert response.json()["code"] == 20404


def test_server_fail_next_applies_given_times(twilio_server, settings):
    twilio_server.fail_next(503, 20503, "Service Unavailable", times=2)

    for _ in range(2):
        with pytest.raises(TransientSendError):
            send_whatsapp(settings, reply())
    send_whatsapp(settings, reply())

    assert len(twilio_server.requests) == 3
    assert len(twilio_server.messages) == 1


def test_server_wait_for_raises_when_short(twilio_server):
    with pytest.raises(TimeoutError, match="expected 1"):
        twilio_server.wait_for(1, timeout=0)
