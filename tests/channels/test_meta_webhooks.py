"""Meta Cloud API webhooks: signatures, the verification handshake and parsing into the neutral model."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from channels.errors import ParseError, SignatureError
from channels.types import AddressKind, ChannelKind, DeliveryState
from channels.whatsapp.meta import (
    RAW_FORMAT,
    media_id,
    parse_stored_message,
    parse_webhook,
    verification_challenge,
    verify_signature,
)
from tests.support.meta_server import (
    change,
    contact,
    encode,
    entry,
    message,
    signature,
    status,
    text_message,
    webhook_body,
)

DATA = Path(__file__).parent / "data"
SECRET = "app-secret-for-parsing-tests"
PHONE_NUMBER_ID = "106540352242922"


def _data(name: str) -> bytes:
    return (DATA / name).read_bytes()


# Signatures


def test_valid_signature_is_accepted():
    body = _data("meta_text.json")
    verify_signature(SECRET, body, signature(SECRET, body))


def test_signature_accepts_upper_case_hex():
    body = _data("meta_text.json")
    header = signature(SECRET, body)
    verify_signature(SECRET, body, "sha256=" + header.removeprefix("sha256=").upper())


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=abc", "0123abcd", "sha256=" + "0" * 64, "sha256=" + "\u00e9" * 64],
)
def test_missing_or_wrong_signature_is_rejected(header):
    with pytest.raises(SignatureError):
        verify_signature(SECRET, _data("meta_text.json"), header)


def test_signature_of_another_secret_is_rejected():
    body = _data("meta_text.json")
    with pytest.raises(SignatureError, match="app secret"):
        verify_signature(SECRET, body, signature("another-secret", body))


def test_signature_of_changed_body_is_rejected():
    body = _data("meta_text.json")
    header = signature(SECRET, body)
    with pytest.raises(SignatureError):
        verify_signature(SECRET, body.replace(b"parcel", b"parcels"), header)


def test_empty_app_secret_never_validates():
    body = b"{}"
    with pytest.raises(SignatureError, match="no Meta app secret"):
        verify_signature("", body, signature("", body))


# Verification handshake


def test_handshake_returns_challenge_for_matching_token():
    params = {"hub.mode": "subscribe", "hub.verify_token": "my-token", "hub.challenge": "1158201444"}
    assert verification_challenge("my-token", params) == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "other", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "my-token", "hub.challenge": "1"},
        {"hub.verify_token": "my-token", "hub.challenge": "1"},
    ],
)
def test_handshake_rejects_wrong_token_or_mode(params):
    with pytest.raises(SignatureError):
        verification_challenge("my-token", params)


def test_handshake_with_empty_configured_token_is_rejected():
    with pytest.raises(SignatureError):
        verification_challenge("", {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"})


def test_handshake_without_challenge_is_invalid():
    with pytest.raises(ParseError):
        verification_challenge("my-token", {"hub.mode": "subscribe", "hub.verify_token": "my-token"})


# Messages


def test_text_message_maps_to_neutral_model():
    events = parse_webhook(_data("meta_text.json"))

    assert events.statuses == []
    assert events.rejected == []
    assert events.ignored == []
    (parsed,) = events.messages
    assert parsed.phone_number_id == PHONE_NUMBER_ID
    inbound = parsed.message
    assert inbound.channel_kind is ChannelKind.WHATSAPP
    assert inbound.provider_message_id == "wamid.HBgLMTU1NTEyMzAwMDAVAgASGBQzRUIwQ0E2RDFGQjdDNjk4RTQ5NgA="
    assert inbound.sender.kind is AddressKind.PHONE
    assert inbound.sender.value == "+15551230000"
    assert inbound.sender.display_name == "Grace Hopper"
    assert [r.value for r in inbound.recipients] == ["+15550783881"]
    assert inbound.text == "Has my parcel left the warehouse? 📦"
    assert inbound.sent_at == datetime.fromtimestamp(1749416383, tz=timezone.utc)
    assert inbound.raw_format == RAW_FORMAT
    assert inbound.media == []


def test_raw_payload_narrowed_to_one_message():
    events = parse_webhook(_data("meta_media.json"))

    raws = [json.loads(parsed.message.raw) for parsed in events.messages]
    assert len(raws) == 3
    for raw, parsed in zip(raws, events.messages):
        value = raw["entry"][0]["changes"][0]["value"]
        assert raw["object"] == "whatsapp_business_account"
        assert raw["entry"][0]["id"] == "102290129340398"
        assert [m["id"] for m in value["messages"]] == [parsed.message.provider_message_id]
        assert [c["wa_id"] for c in value["contacts"]] == [value["messages"][0]["from"]]
        assert value["metadata"]["phone_number_id"] == PHONE_NUMBER_ID


def test_narrowed_payload_parses_back_to_the_same_message():
    (first, *_) = parse_webhook(_data("meta_media.json")).messages

    again = parse_stored_message(first.message.raw)

    assert again == first.message


def test_stored_payload_with_several_messages_is_rejected():
    with pytest.raises(ParseError, match="contains 3 messages"):
        parse_stored_message(_data("meta_media.json"))


def test_media_messages_keep_ids_and_captions():
    image, document, voice = (parsed.message for parsed in parse_webhook(_data("meta_media.json")).messages)

    assert image.text == "The box arrived like this"
    assert [media_id(m.url) for m in image.media] == ["1003383421387256"]
    assert image.media[0].content_type == "image/jpeg"
    assert document.text == ""
    assert [media_id(m.url) for m in document.media] == ["2154871638265114"]
    assert document.media[0].content_type == "application/pdf"
    assert document.sender.display_name == "Alan Turing"
    assert document.sender.value == "+447700900123"
    assert document.in_reply_to == "wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI0QjQ2RTNCQ0UyRkI0OTk2MTQA"
    assert voice.media[0].content_type == "audio/ogg; codecs=opus"
    assert media_id(voice.media[0].url) == "1260347885212466"


def test_other_message_types_get_a_readable_text():
    texts = {parsed.message.provider_message_id: parsed.message.text
             for parsed in parse_webhook(_data("meta_other_types.json")).messages}

    assert texts["wamid.location.1"] == (
        "Shared location: 52.520008, 13.404954 (Pickup point, Alexanderplatz 1, Berlin)"
    )
    assert texts["wamid.interactive.1"] == "Reschedule delivery"
    assert texts["wamid.button.1"] == "Stop updates"
    assert texts["wamid.reaction.1"] == "Reacted 👍 to a message"
    assert texts["wamid.contacts.1"] == "Shared contact: Ada Lovelace (+44 20 7946 0000)"
    assert "unsupported" in texts["wamid.unsupported.1"]


def test_text_of_odd_location_fields_is_storable():
    location = {"latitude": "52.5\x00", "longitude": {"degrees": 13}, "name": "Dock \ud83d"}
    body = webhook_body(entry(change(PHONE_NUMBER_ID, messages=[message("15551230000", "location", location)])))

    (parsed,) = parse_webhook(encode(body)).messages

    # A field that is not a number or text reads as missing, and text loses what UTF-8 cannot carry.
    assert parsed.message.text == "Shared a location"
    location["longitude"] = "13.4"
    (parsed,) = parse_webhook(encode(body)).messages
    assert parsed.message.text == "Shared location: 52.5, 13.4 (Dock \ufffd)"


def test_media_message_without_id_is_rejected_alone():
    body = webhook_body(entry(change(
        PHONE_NUMBER_ID,
        messages=[message("15551230000", "image", {"mime_type": "image/png"}), text_message("15551230000", "ok")],
    )))

    events = parse_webhook(encode(body))

    assert [parsed.message.text for parsed in events.messages] == ["ok"]
    (rejected,) = events.rejected
    assert rejected.phone_number_id == PHONE_NUMBER_ID
    assert "no media id" in rejected.error
    assert json.loads(rejected.raw)["entry"][0]["changes"][0]["value"]["messages"][0]["type"] == "image"


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ({"from": None}, "no from number"),
        ({"from": "12"}, "invalid phone number"),
        ({"id": ""}, "message id"),
        ({"id": "w" * 1000}, "message id"),
    ],
)
def test_message_with_bad_sender_or_id_is_rejected(mutation, reason):
    bad = {**text_message("15551230000", "hello"), **mutation}
    events = parse_webhook(encode(webhook_body(entry(change(PHONE_NUMBER_ID, messages=[bad])))))

    assert events.messages == []
    assert reason in events.rejected[0].error


def test_nul_characters_are_removed_from_text():
    body = webhook_body(entry(change(
        PHONE_NUMBER_ID,
        messages=[text_message("15551230000", "a\x00b")],
        contacts=[contact("15551230000", "Gr\x00ace")],
    )))

    (parsed,) = parse_webhook(encode(body)).messages

    assert parsed.message.text == "ab"
    assert parsed.message.sender.display_name == "Grace"


# Statuses and batches


def test_statuses_across_entries_and_changes_keep_their_order():
    events = parse_webhook(_data("meta_statuses.json"))

    assert [(s.status.provider_message_id, s.status.state) for s in events.statuses] == [
        ("wamid.sent.1", DeliveryState.SENT),
        ("wamid.sent.1", DeliveryState.DELIVERED),
        ("wamid.failed.1", DeliveryState.FAILED),
        ("wamid.sent.1", DeliveryState.READ),
    ]
    assert {s.phone_number_id for s in events.statuses} == {PHONE_NUMBER_ID}


def test_failed_status_carries_error_code_and_reason():
    failed = parse_webhook(_data("meta_statuses.json")).statuses[2].status

    assert failed.error_code == "131026"
    assert failed.error_message == (
        "Message undeliverable: The recipient's phone number is not a WhatsApp number."
    )


def test_untracked_events_ignored_with_reason():
    ignored = parse_webhook(_data("meta_statuses.json")).ignored

    assert ignored == [
        "status 'played' that is not tracked",
        "webhook field 'message_template_status_update'",
    ]


def test_several_numbers_in_one_body():
    body = webhook_body(
        entry(change("111", messages=[text_message("15551230000", "to the first")])),
        entry(
            change("222", messages=[text_message("15551230001", "to the second")]),
            change("111", statuses=[status("wamid.x", "delivered", "15551230000")]),
            account_id="999",
        ),
    )

    events = parse_webhook(encode(body))

    assert [(p.phone_number_id, p.message.text) for p in events.messages] == [
        ("111", "to the first"),
        ("222", "to the second"),
    ]
    assert [(s.phone_number_id, s.status.state) for s in events.statuses] == [("111", DeliveryState.DELIVERED)]


def test_other_object_is_ignored():
    events = parse_webhook(b'{"object": "page", "entry": [{"id": "1", "changes": []}]}')

    assert events.ignored == ["webhook object 'page'"]
    assert events.messages == []


def test_change_without_phone_number_id_is_ignored():
    body = {"object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messages": []}}]}]}

    events = parse_webhook(encode(body))

    assert events.ignored == ["a messages change without metadata.phone_number_id"]


def test_status_without_id_is_ignored():
    body = webhook_body(entry(change(PHONE_NUMBER_ID, statuses=[{"status": "sent"}])))

    events = parse_webhook(encode(body))

    assert events.statuses == []
    assert "without a message id" in events.ignored[0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        # Python's int() takes at most 4,300 digits, and the parser recurses per nesting level.
        (b'{"entry": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"object": "whatsapp_business_account"}', "no entry list"),
    ],
)
def test_foreign_body_is_invalid(body, reason):
    with pytest.raises(ParseError, match=reason):
        parse_webhook(body)
