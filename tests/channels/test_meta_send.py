"""Sending through the WhatsApp Cloud API, against the Cloud API-compatible test server."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest

from channels.errors import PermanentSendError, TransientSendError
from channels.types import Address, AddressKind, Attachment, DeliveryState, OutboundMessage
from channels.whatsapp import media as media_module
from channels.whatsapp.media import MediaError
from channels.whatsapp.meta import MetaSettings, MetaTemplate, fetch_media, send_template, send_text
from tests.support.meta_server import MetaTestServer

CUSTOMER = Address(AddressKind.PHONE, "+15551230000", "Grace")


@pytest.fixture
def server():
    with MetaTestServer() as running:
        yield running


@pytest.fixture
def settings(server):
    return MetaSettings(server.phone_number_id, server.access_token, api_base_url=server.base_url)


def _text(text: str = "Your parcel ships today.", to: Address = CUSTOMER) -> OutboundMessage:
    return OutboundMessage(to=to, text=text)


def test_text_message_is_posted_with_bearer_token(server, settings):
    result = send_text(settings, _text())

    (sent,) = server.messages
    assert result.provider_message_id == sent["id"]
    assert result.provider_message_id.startswith("wamid.")
    assert result.status is DeliveryState.QUEUED
    assert sent["phone_number_id"] == server.phone_number_id
    assert sent["messaging_product"] == "whatsapp"
    assert sent["to"] == "+15551230000"
    assert sent["type"] == "text"
    assert sent["text"] == {"preview_url": False, "body": "Your parcel ships today."}


def test_template_message_carries_name_language_and_body_parameters(server, settings):
    server.add_template("order_update", "en_US", 2)

    result = send_template(settings, CUSTOMER, MetaTemplate("order_update", "en_US", ["4711", "Friday"]))

    (sent,) = server.messages
    assert result.provider_message_id == sent["id"]
    assert sent["type"] == "template"
    assert sent["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "4711"}, {"type": "text", "text": "Friday"}]}
        ],
    }


def test_template_without_parameters_has_no_components(server, settings):
    server.add_template("hello_world", "en_US", 0)

    send_template(settings, CUSTOMER, MetaTemplate("hello_world", "en_US"))

    assert "components" not in server.messages[0]["template"]


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        (MetaTemplate("order_update", "en_US", ["4711", "Fri\u2028day"]), "{{2}} contains a line break (U+2028)"),
        (MetaTemplate("order_update", "en_US", ["47     11", "Friday"]), "{{1}} contains 5 consecutive spaces"),
        (MetaTemplate("order_named", "en_US", named_parameters={"order_id": "47\t11"}), "{{order_id}} contains a tab"),
    ],
)
def test_rejected_template_parameter_not_sent(server, settings, template, reason):
    server.add_template("order_update", "en_US", 2)

    with pytest.raises(PermanentSendError) as raised:
        send_template(settings, CUSTOMER, template)

    assert str(raised.value).startswith(f"template variable {reason}")
    assert server.requests == []


def test_unknown_template_fails_permanently_with_code(server, settings):
    with pytest.raises(PermanentSendError) as raised:
        send_template(settings, CUSTOMER, MetaTemplate("missing", "en_US", ["x"]))

    assert raised.value.code == "132001"
    assert "does not exist" in str(raised.value)
    assert server.messages == []


def test_wrong_parameter_count_fails_permanently(server, settings):
    server.add_template("order_update", "en_US", 2)

    with pytest.raises(PermanentSendError) as raised:
        send_template(settings, CUSTOMER, MetaTemplate("order_update", "en_US", ["4711"]))

    assert raised.value.code == "132000"


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, 131047, "Re-engagement message"),
        (400, 131026, "Message undeliverable"),
        (400, 100, "Invalid parameter"),
        (403, 10, "Permission denied"),
    ],
)
def test_client_errors_are_permanent_with_code_and_message(server, settings, status, code, message):
    server.fail_next(status, code, message, details="more about it")

    with pytest.raises(PermanentSendError) as raised:
        send_text(settings, _text())

    assert raised.value.code == str(code)
    assert f"HTTP {status} (error {code})" in str(raised.value)
    assert message in str(raised.value)
    assert "more about it" in str(raised.value)


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, 131000), (503, 2), (429, 4), (400, 130429), (400, 131056), (400, 80007)],
)
def test_outages_and_rate_limits_are_transient(server, settings, status, code):
    server.fail_next(status, code, "Try again later")

    with pytest.raises(TransientSendError) as raised:
        send_text(settings, _text())

    assert raised.value.code == str(code)


def test_wrong_access_token_fails_permanently(server, settings):
    with pytest.raises(PermanentSendError) as raised:
        send_text(replace(settings, access_token="expired"), _text())

    assert raised.value.code == "190"
    assert "access token" in str(raised.value)
    assert "expired" not in str(raised.value)


def test_unknown_phone_number_id_fails_permanently(server, settings):
    with pytest.raises(PermanentSendError, match="does not exist"):
        send_text(replace(settings, phone_number_id="999"), _text())


def test_refused_connection_is_transient(settings):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    with pytest.raises(TransientSendError, match="could not be reached: the connection was refused"):
        send_text(replace(settings, api_base_url=f"http://127.0.0.1:{port}"), _text())


def test_read_timeout_is_transient(server, settings):
    server.response_delay = 1.0

    with pytest.raises(TransientSendError, match="could not be reached: the response timed out"):
        send_text(replace(settings, timeout_seconds=0.2), _text())


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"access_token": ""}, "missing Meta access token"),
        ({"phone_number_id": "12/../34"}, "invalid phone number id"),
        ({"api_version": "latest"}, "invalid Graph API version"),
        ({"timeout_seconds": 0}, "invalid Cloud API timeout"),
        ({"api_base_url": "ftp://127.0.0.1"}, "invalid Cloud API URL"),
    ],
)
def test_invalid_settings_fail_permanently_without_a_request(server, settings, changes, reason):
    with pytest.raises(PermanentSendError, match=reason):
        send_text(replace(settings, **changes), _text())

    assert server.requests == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_text(to=Address(AddressKind.EMAIL, "grace@example.com")), "phone number is required"),
        (_text(to=Address(AddressKind.PHONE, "555")), "invalid WhatsApp recipient"),
        (_text(""), "empty"),
        (_text("x" * 4097), "at most 4096"),
        (replace(_text(), attachments=[Attachment("a.txt", "text/plain", b"a")]), "attachments"),
    ],
)
def test_unsendable_message_fails_permanently(server, settings, message, reason):
    with pytest.raises(PermanentSendError, match=reason):
        send_text(settings, message)

    assert server.requests == []


def test_settings_repr_hides_access_token(settings):
    assert settings.access_token not in repr(settings)


# Media


def test_media_is_downloaded_by_id(server, settings):
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    media_id = server.add_media(data, "image/png")

    media = fetch_media(settings, media_id)

    assert media.data == data
    assert media.content_type == "image/png"
    assert media.filename == f"whatsapp-{media_id}.png"


def test_voice_note_type_drops_codec_parameter(server, settings):
    media_id = server.add_media(b"OggS voice", "audio/ogg; codecs=opus")

    media = fetch_media(settings, media_id, filename_stem="audio-1")

    assert media.content_type == "audio/ogg"
    assert media.filename.startswith("audio-1.")


def test_media_over_the_size_limit_is_refused(server, settings):
    media_id = server.add_media(b"x" * 2000, "application/pdf")

    with pytest.raises(MediaError, match="larger than this channel's limit of 1 kB") as raised:
        fetch_media(settings, media_id, max_bytes=1000)

    assert raised.value.transient is False


def test_media_of_unaccepted_type_is_refused(server, settings):
    media_id = server.add_media(b"MZ" + bytes(100), "application/x-msdownload")

    with pytest.raises(MediaError, match="not accepted") as raised:
        fetch_media(settings, media_id)

    assert raised.value.transient is False


def test_unknown_media_id_fails_permanently(server, settings):
    with pytest.raises(MediaError, match="looking up media 123") as raised:
        fetch_media(settings, "123")

    assert raised.value.transient is False


def test_media_lookup_outage_is_transient(server, settings):
    media_id = server.add_media(b"%PDF-1.7", "application/pdf")
    server.fail_media_lookups = 1

    with pytest.raises(MediaError) as raised:
        fetch_media(settings, media_id)

    assert raised.value.transient is True
    assert fetch_media(settings, media_id).data == b"%PDF-1.7"


def test_media_id_with_path_characters_is_refused(server, settings):
    with pytest.raises(MediaError, match="invalid media id"):
        fetch_media(settings, "../messages")


def test_stalling_media_download_stops_at_deadline(server, settings, monkeypatch):
    # One byte a tenth of a second never lets a read wait out its timeout, so only the
    # deadline of the whole download can end it.
    monkeypatch.setattr(media_module, "DOWNLOAD_DEADLINE_SECONDS", 1.0)
    media_id = server.add_media(b"%PDF-1.7 " + bytes(500), "application/pdf", byte_interval=0.1)
    started = time.monotonic()

    with pytest.raises(MediaError, match="did not finish in time") as raised:
        fetch_media(settings, media_id)

    assert raised.value.transient
    # The whole file would take about 50 seconds.
    assert time.monotonic() - started < 10
