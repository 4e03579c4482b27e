"""Sender addresses of From headers whose encoded display name carries address syntax."""

from __future__ import annotations

import base64

import pytest

from channels.email.parse import parse_email


def encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.mark.parametrize(
    "display_name",
    [
        "Eve\r\nBcc: victim@example.com",
        "Eve\nvictim@example.com",
        "Eve\r\nvictim@example.com, other@example.com",
        'Eve\r\n"x" <victim@example.com>',
    ],
)
def test_encoded_name_with_line_break_keeps_real_sender(display_name):
    raw = (
        f"From: {encoded_word(display_name)} <eve@evil.example>\r\n"
        "To: support@example.com\r\nSubject: hello\r\nMessage-ID: <m1@evil.example>\r\n\r\nhi\r\n"
    ).encode()

    message = parse_email(raw)

    assert message.sender.value == "eve@evil.example"


def test_encoded_name_stays_display_name():
    name = encoded_word("Eve\r\nBcc: victim@example.com")
    raw = f"From: {name} <eve@evil.example>\r\n\r\nhi\r\n".encode()

    message = parse_email(raw)

    assert message.sender.display_name == "Eve Bcc: victim@example.com"
