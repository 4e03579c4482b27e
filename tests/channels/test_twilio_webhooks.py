"""Twilio webhooks: signature checks, incoming messages, status callbacks, phone numbers.

The payloads under data/ are form bodies in the shape Twilio posts for WhatsApp, and
signatures are made with twilio's own RequestValidator.
"""

import random
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from channels.errors import ParseError, SignatureError
from channels.types import (
    Address,
    AddressKind,
    ChannelKind,
    DeliveryState,
    MediaReference,
)
from channels.whatsapp import (
    is_status_callback,
    normalize_phone,
    parse_inbound,
    parse_status,
    validate_signature,
)

DATA = Path(__file__).parent / "data"
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
WEBHOOK_URL = "https://support.example.com/webhooks/twilio/1/messages"
OUR_NUMBER = Address(AddressKind.PHONE, "+14155238886")


def load_payload(name: str) -> tuple[dict[str, str], bytes]:
    """Return a recorded webhook body as the decoded form and the raw bytes."""
    raw = (DATA / name).read_bytes()
    form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    return form, raw


def sign(url: str, params, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


# Signatures


def test_signature_valid_passes():
    form, _ = load_payload("twilio_inbound_text.txt")

    validate_signature(AUTH_TOKEN, WEBHOOK_URL, form, sign(WEBHOOK_URL, form))


@pytest.mark.parametrize("signature", [None, ""])
def test_signature_missing_raises(signature):
    form, _ = load_payload("twilio_inbound_text.txt")

    with pytest.raises(SignatureError, match="missing"):
        validate_signature(AUTH_TOKEN, WEBHOOK_URL, form, signature)


def test_signature_from_other_token_raises():
    form, _ = load_payload("twilio_inbound_text.txt")
    signature = sign(WEBHOOK_URL, form, token="another-accounts-auth-token")

    with pytest.raises(SignatureError, match="invalid"):
        validate_signature(AUTH_TOKEN, WEBHOOK_URL, form, signature)


def test_signature_over_changed_body_raises():
    form, _ = load_payload("twilio_inbound_text.txt")
    signature = sign(WEBHOOK_URL, form)
    tampered = dict(form, Body="Please refund me twice")

    with pytest.raises(SignatureError):
        validate_signature(AUTH_TOKEN, WEBHOOK_URL, tampered, signature)


def test_signature_covers_query_string():
    form, _ = load_payload("twilio_status_delivered.txt")
    url_with_query = WEBHOOK_URL.replace("/messages", "/status") + "?attempt=2&outbox=17"
    signature = sign(url_with_query, form)

    validate_signature(AUTH_TOKEN, url_with_query, form, signature)
    with pytest.raises(SignatureError):
        validate_signature(AUTH_TOKEN, url_with_query.split("?")[0], form, signature)


def test_signature_behind_tls_proxy_needs_public_url():
    # Twilio signs the https URL it called, but the app behind the proxy gets plain http.
    form, _ = load_payload("twilio_inbound_text.txt")
    signature = sign(WEBHOOK_URL, form)
    url_seen_by_app = WEBHOOK_URL.replace("https://", "http://")

    with pytest.raises(SignatureError):
        validate_signature(AUTH_TOKEN, url_seen_by_app, form, signature)
    validate_signature(AUTH_TOKEN, WEBHOOK_URL, form, signature)


def test_signature_accepts_multidict_with_repeated_fields():
    form = MultiDict(
        [
            ("MessageSid", "SM1"),
            ("MediaUrl", "https://media.example.com/1"),
            ("MediaUrl", "https://media.example.com/2"),
        ]
    )
    signature = sign(WEBHOOK_URL, form)

    validate_signature(AUTH_TOKEN, WEBHOOK_URL, form, signature)
    with pytest.raises(SignatureError):
        validate_signature(AUTH_TOKEN, WEBHOOK_URL, form.to_dict(flat=True), signature)


SIGNED_URLS = [
    WEBHOOK_URL,
    "https://support.example.com:443/webhooks/twilio/1/messages",
    "https://support.example.com:8443/webhooks/twilio/1/status?attempt=2",
    "http://127.0.0.1:5000/webhooks/twilio/1/messages",
    "http://127.0.0.1/webhooks/twilio/1/messages?",
    "HTTPS://Support.Example.com/webhooks/twilio/1/messages#part",
]


def _random_form(rng: random.Random) -> dict[str, str] | MultiDict:
    alphabet = "aZ09 +&=%/:?é📦\n"
    pairs = [
        (rng.choice(["MessageSid", "Body", "From", "MediaUrl0", "Lat", ""]) + str(rng.randrange(3)),
         "".join(rng.choice(alphabet) for _ in range(rng.randrange(12))))
        for _ in range(rng.randrange(8))
    ]
    return MultiDict(pairs) if rng.random() < 0.3 else dict(pairs)


def test_signature_check_matches_twilio_validator():
    rng = random.Random(20)
    for case in range(400):
        form = _random_form(rng)
        signed_url = rng.choice(SIGNED_URLS)
        checked_url = rng.choice([signed_url, *SIGNED_URLS])
        signature = sign(signed_url, form, token=rng.choice([AUTH_TOKEN, "another-token"]))
        if rng.random() < 0.1:
            signature = signature[:-2] + "x="
        expected = RequestValidator(AUTH_TOKEN).validate(checked_url, form, signature)

        try:
            validate_signature(AUTH_TOKEN, checked_url, form, signature)
            accepted = True
        except SignatureError:
            accepted = False

        assert accepted == expected, (case, signed_url, checked_url, form)


@pytest.mark.parametrize(("signed", "checked"), [
    ("https://support.example.com/webhooks/twilio/1/messages", "https://support.example.com:443/webhooks/twilio/1/messages"),
    ("https://support.example.com:443/webhooks/twilio/1/messages", "https://support.example.com/webhooks/twilio/1/messages"),
    ("http://127.0.0.1:80/webhooks/twilio/1/messages", "http://127.0.0.1/webhooks/twilio/1/messages"),
])
def test_signature_with_or_without_default_port(signed, checked):
    form, _ = load_payload("twilio_inbound_text.txt")

    validate_signature(AUTH_TOKEN, checked, form, sign(signed, form))


# Incoming messages


def test_parse_inbound_text_message():
    form, raw = load_payload("twilio_inbound_text.txt")

    message = parse_inbound(form, raw)

    assert message.channel_kind is ChannelKind.WHATSAPP
    assert message.provider_message_id == "SM3b1e0f2a9c4d4e8f8a7b6c5d4e3f2a1b"
    assert message.sender == Address(AddressKind.PHONE, "+31612345678", "Anna de Vries")
    assert message.recipients == [OUR_NUMBER]
    assert message.text == "Hello, my order #1042 has not arrived yet. Can you check?"
    assert message.media == []
    assert message.sent_at is None
    assert message.raw == raw
    assert message.raw_format == "twilio-form"


def test_parse_inbound_with_media():
    form, raw = load_payload("twilio_inbound_media.txt")
    media_base = (
        "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef"
        "/Messages/MM5f0a1b2c3d4e5f60718293a4b5c6d7e8/Media/"
    )

    message = parse_inbound(form, raw)

    assert message.provider_message_id == "MM5f0a1b2c3d4e5f60718293a4b5c6d7e8"
    assert message.text == "Photo of the damaged box and the invoice"
    assert message.media == [
        MediaReference(media_base + "ME11111111111111111111111111111111", "image/jpeg"),
        MediaReference(media_base + "ME22222222222222222222222222222222", "application/pdf"),
    ]


def test_parse_inbound_keeps_emoji_and_accents():
    form, raw = load_payload("twilio_inbound_emoji.txt")

    message = parse_inbound(form, raw)

    assert message.text == "Thanks!! 🙏🎉 Got it 👍🏽 — the 👨‍👩‍👧 are happy"
    assert message.sender.display_name == "Zoë 🌻 Müller"
    assert message.sender.value == "+4915123456789"


def test_parse_inbound_location_gets_text():
    form, raw = load_payload("twilio_inbound_location.txt")

    message = parse_inbound(form, raw)

    assert message.text == (
        "Shared location: 52.3731, 4.8922 (Shop, Dam 1, Amsterdam)\n"
        "https://www.openstreetmap.org/?mlat=52.3731&mlon=4.8922#map=17/52.3731/4.8922"
    )


def test_parse_inbound_plain_sms_raises():
    form, raw = load_payload("twilio_inbound_sms.txt")

    with pytest.raises(ParseError, match="SMS"):
        parse_inbound(form, raw)


@pytest.mark.parametrize("field", ["MessageSid", "From"])
def test_parse_inbound_missing_field_raises(field):
    form, raw = load_payload("twilio_inbound_text.txt")
    del form[field]

    with pytest.raises(ParseError, match=field):
        parse_inbound(form, raw)


def test_parse_inbound_missing_media_url_raises():
    form, raw = load_payload("twilio_inbound_media.txt")
    del form["MediaUrl1"]

    with pytest.raises(ParseError, match="MediaUrl1"):
        parse_inbound(form, raw)


def test_parse_inbound_invalid_num_media_raises():
    form, raw = load_payload("twilio_inbound_text.txt")
    form["NumMedia"] = "two"

    with pytest.raises(ParseError, match="NumMedia"):
        parse_inbound(form, raw)


def test_parse_inbound_without_profile_name():
    form, raw = load_payload("twilio_inbound_text.txt")
    del form["ProfileName"]

    message = parse_inbound(form, raw)

    assert message.sender.display_name is None


# Status callbacks


@pytest.mark.parametrize(
    ("twilio_status", "expected"),
    [
        ("queued", DeliveryState.QUEUED),
        ("accepted", DeliveryState.QUEUED),
        ("scheduled", DeliveryState.QUEUED),
        ("sending", DeliveryState.QUEUED),
        ("sent", DeliveryState.SENT),
        ("delivered", DeliveryState.DELIVERED),
        ("read", DeliveryState.READ),
        ("undelivered", DeliveryState.UNDELIVERED),
        ("failed", DeliveryState.FAILED),
        ("canceled", DeliveryState.FAILED),
    ],
)
def test_parse_status_maps_each_status(twilio_status, expected):
    form, _ = load_payload("twilio_status_sent.txt")
    form["MessageStatus"] = twilio_status

    status = parse_status(form)

    assert status.provider_message_id == "SM7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29"
    assert status.state is expected
    assert status.error_code is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("twilio_status_sent.txt", DeliveryState.SENT),
        ("twilio_status_delivered.txt", DeliveryState.DELIVERED),
        ("twilio_status_read.txt", DeliveryState.READ),
        ("twilio_status_failed.txt", DeliveryState.FAILED),
    ],
)
def test_parse_status_recorded_payloads(name, expected):
    form, _ = load_payload(name)

    assert parse_status(form).state is expected


def test_parse_status_keeps_error_code_and_message():
    form, _ = load_payload("twilio_status_failed.txt")
    form["ErrorMessage"] = "Outside the allowed window for free-form messages"

    status = parse_status(form)

    assert status.error_code == "63016"
    assert status.error_message.startswith("More than 24 hours passed since the customer's last message")
    assert status.error_message.endswith("Twilio: Outside the allowed window for free-form messages")


@pytest.mark.parametrize("twilio_status", ["bounced", "partially_delivered", "received"])
def test_parse_status_unknown_status_raises(twilio_status):
    form, _ = load_payload("twilio_status_sent.txt")
    form["MessageStatus"] = twilio_status

    with pytest.raises(ParseError, match=twilio_status):
        parse_status(form)


@pytest.mark.parametrize("field", ["MessageSid", "MessageStatus"])
def test_parse_status_missing_field_raises(field):
    form, _ = load_payload("twilio_status_sent.txt")
    del form[field]

    with pytest.raises(ParseError, match=field):
        parse_status(form)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("twilio_status_sent.txt", True),
        ("twilio_status_failed.txt", True),
        ("twilio_inbound_text.txt", False),
        ("twilio_inbound_media.txt", False),
    ],
)
def test_is_status_callback_tells_kinds_apart(name, expected):
    form, _ = load_payload(name)

    assert is_status_callback(form) is expected


# Phone numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("whatsapp:+31612345678", "+31612345678"),
        ("WhatsApp:+14155238886", "+14155238886"),
        ("+31 6 1234 5678", "+31612345678"),
        ("+1 (415) 523-8886", "+14155238886"),
        ("0031612345678", "+31612345678"),
        ("+44.20.7946.0958", "+442079460958"),
        ("  +4915123456789\n", "+4915123456789"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_normalize_phone_returns_e164(value, expected):
    assert normalize_phone(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "whatsapp:",
        "0612345678",
        "31612345678",
        "+0123456789",
        "+1234567",
        "+1234567890123456",
        "+31 6 1234 567a",
        "sms:+31612345678",
        "++31612345678",
        "00+31612345678",
        "+\u0663\u0661\u0666\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",
    ],
)
def test_normalize_phone_rejects_implausible(value):
    with pytest.raises(ParseError, match="invalid phone number"):
        normalize_phone(value)
