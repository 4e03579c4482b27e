"""Parsing of WhatsApp content beyond text: locations, contact cards, buttons, lists,
reactions and quoted replies, plus the WaId field."""

from __future__ import annotations

import secrets

import pytest

from channels.errors import ParseError
from channels.whatsapp import parse_inbound
from channels.whatsapp.phone import normalize_wa_id

OUR_NUMBER = "whatsapp:+14155238886"


def _form(**fields: str) -> dict[str, str]:
    sid = "SM" + secrets.token_hex(16)
    return {
        "MessageSid": sid,
        "From": "whatsapp:+4915123456789",
        "To": OUR_NUMBER,
        "WaId": "4915123456789",
        "ProfileName": "Zoë",
        "Body": "",
        "NumMedia": "0",
        **fields,
    }


def _parse(**fields: str):
    form = _form(**fields)
    return parse_inbound(form, repr(form).encode())


def test_location_keeps_coordinates_and_map_link():
    message = _parse(MessageType="location", Latitude="-33.8688197", Longitude="151.2092955",
                     Label="Opera House", Address="Bennelong Point, Sydney")

    assert message.content == {
        "type": "location",
        "latitude": -33.8688197,
        "longitude": 151.2092955,
        "label": "Opera House",
        "address": "Bennelong Point, Sydney",
        "url": "https://www.openstreetmap.org/?mlat=-33.86882&mlon=151.209295#map=17/-33.86882/151.209295",
    }
    assert message.text.splitlines() == [
        "Shared location: -33.86882, 151.209295 (Opera House, Bennelong Point, Sydney)",
        message.content["url"],
    ]


def test_location_without_label_shows_coordinates():
    message = _parse(MessageType="location", Latitude="0", Longitude="-0.5")

    assert message.text.splitlines()[0] == "Shared location: 0, -0.5"
    assert message.content["label"] is None


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [("91", "0"), ("0", "-180.5"), ("north", "1"), ("nan", "1"), ("1", ""), ("inf", "2")],
)
def test_location_with_invalid_coordinates_is_rejected(latitude, longitude):
    with pytest.raises(ParseError, match="invalid (Latitude|Longitude)"):
        _parse(MessageType="location", Latitude=latitude, Longitude=longitude)


def test_vcard_is_described_as_contact_card():
    message = _parse(NumMedia="1", MessageType="contacts", MediaContentType0="text/vcard",
                     MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1")

    assert message.content == {"type": "contacts", "count": 1}
    assert message.text == "Shared a contact card"
    assert [item.content_type for item in message.media] == ["text/vcard"]


def test_two_vcards_with_text_keep_the_text():
    message = _parse(NumMedia="2", Body="My colleagues",
                     MediaContentType0="text/x-vcard", MediaUrl0="https://media.example/1",
                     MediaContentType1="text/vcard; charset=utf-8", MediaUrl1="https://media.example/2")

    assert message.text == "Shared 2 contact cards\nMy colleagues"


def test_button_reply_keeps_text_and_payload():
    message = _parse(MessageType="button", Body="Yes, reschedule", ButtonText="Yes, reschedule",
                     ButtonPayload="reschedule:4711")

    assert message.content == {"type": "button", "text": "Yes, reschedule", "payload": "reschedule:4711"}
    assert message.text == "Yes, reschedule"


def test_list_reply_keeps_id_and_title():
    message = _parse(MessageType="interactive", Body="Express delivery", ListId="shipping-express",
                     ListTitle="Express delivery")

    assert message.content == {"type": "list", "id": "shipping-express", "title": "Express delivery"}
    assert message.text == "Express delivery"


def test_reaction_names_its_target():
    target = "SM" + "a" * 32

    message = _parse(MessageType="reaction", Body="👍🏽", OriginalRepliedMessageSid=target)

    assert message.content == {"type": "reaction", "emoji": "👍🏽"}
    assert message.in_reply_to == target
    assert message.text == "Reacted 👍🏽"


def test_removed_reaction_has_no_emoji():
    message = _parse(MessageType="reaction", OriginalRepliedMessageSid="SM" + "b" * 32)

    assert message.content == {"type": "reaction", "emoji": None}
    assert message.text == "Removed a reaction"


def test_quoted_reply_names_original_sid():
    target = "MM" + "c" * 32

    message = _parse(Body="Is this still valid?", OriginalRepliedMessageSid=target)

    assert message.in_reply_to == target
    assert message.content is None
    assert message.text == "Is this still valid?"


def test_malformed_replied_sid_is_dropped():
    message = _parse(Body="hi", OriginalRepliedMessageSid="not-a-sid")

    assert message.in_reply_to is None


def test_four_byte_characters_stay_intact():
    text = "Danke 🙏🏽 𝄞 𠜎 👨‍👩‍👧 🇩🇪"

    message = _parse(Body=text, ProfileName="Zoë 🌻")

    assert message.text == text
    assert message.sender.display_name == "Zoë 🌻"


@pytest.mark.parametrize(
    "sender",
    ["whatsapp:+4915123456789", "whatsapp:+49 1512 3456789", "whatsapp:+49 (0)1512 3456789", "whatsapp:004915123456789"],
)
def test_sender_spellings_normalize_to_one_number(sender):
    message = _parse(From=sender, Body="hello")

    assert message.sender.value == "+4915123456789"


def test_mismatched_wa_id_keeps_from(caplog):
    message = _parse(Body="hello", WaId="4915199999999")

    assert message.sender.value == "+4915123456789"
    assert "does not match" in caplog.text


@pytest.mark.parametrize("value", ["4915123456789", " 4915123456789 "])
def test_wa_id_normalizes_to_e164(value):
    assert normalize_wa_id(value) == "+4915123456789"


@pytest.mark.parametrize("value", ["+4915123456789", "49 151", "", "49151234567a9", "١٢٣٤٥٦٧٨٩٠"])
def test_invalid_wa_id_is_rejected(value):
    with pytest.raises(ParseError):
        normalize_wa_id(value)
