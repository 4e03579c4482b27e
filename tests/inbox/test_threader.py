"""Unit tests of the threading helpers: Thread-Index roots, reopen windows, reply addresses."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from inbox.models import Channel, Conversation
from inbox.replies import reply_subject, reply_to_address
from inbox.threader import DEFAULT_REOPEN_WINDOW, reopen_window, thread_index_root

ROOT = bytes(range(22))


def _index(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_thread_index_root_keeps_first_22_bytes():
    assert thread_index_root(_index(ROOT + b"\x10\x20\x30\x40\x50")) == _index(ROOT)


def test_thread_index_root_of_root_is_itself():
    assert thread_index_root(_index(ROOT)) == _index(ROOT)


def test_thread_index_root_ignores_folding_whitespace():
    value = _index(ROOT + b"\x01\x02\x03\x04\x05")
    assert thread_index_root(value[:10] + "\r\n " + value[10:]) == _index(ROOT)


@pytest.mark.parametrize("value", [None, "", "not base64!", _index(b"short"), "@@@@"])
def test_thread_index_root_rejects_invalid_values(value):
    assert thread_index_root(value) is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, DEFAULT_REOPEN_WINDOW),
        ({"reopen_window_days": 30}, timedelta(days=30)),
        ({"reopen_window_days": 0}, timedelta(0)),
        ({"reopen_window_days": 1.5}, timedelta(days=1.5)),
        ({"reopen_window_days": "30"}, DEFAULT_REOPEN_WINDOW),
        ({"reopen_window_days": -1}, DEFAULT_REOPEN_WINDOW),
        ({"reopen_window_days": True}, DEFAULT_REOPEN_WINDOW),
    ],
)
def test_reopen_window_reads_channel_setting(settings, expected):
    channel = Channel(id=1, kind="email", name="Support", address="support@shop.example", settings=settings)
    assert reopen_window(channel) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Broken kettle", "Re: Broken kettle [#7]"),
        ("RE: Broken kettle", "RE: Broken kettle [#7]"),
        ("Re: Broken kettle [#7]", "Re: Broken kettle [#7]"),
        ("Broken kettle [#3]", "Re: Broken kettle [#3] [#7]"),
        ("", "Re: your request [#7]"),
        (None, "Re: your request [#7]"),
    ],
)
def test_reply_subject_adds_reference_once(subject, expected):
    assert reply_subject(subject, 7) == expected


def test_reply_subject_without_conversation_has_no_reference():
    assert reply_subject("Broken kettle") == "Re: Broken kettle"


def test_reply_to_address_carries_id_and_token():
    channel = Channel(kind="email", name="Support", address="support@shop.example", settings={})
    conversation = Conversation(id=12, channel=channel, reply_token="3f9a0c1b2d4e")
    assert reply_to_address(conversation) == "support+c12.3f9a0c1b2d4e@shop.example"


def test_reply_to_address_needs_a_token():
    channel = Channel(kind="email", name="Support", address="support@shop.example", settings={})
    assert reply_to_address(Conversation(id=12, channel=channel)) is None


def test_reply_to_address_is_none_for_whatsapp():
    channel = Channel(kind="whatsapp", name="WhatsApp", address="+14155238886", settings={})
    assert reply_to_address(Conversation(id=12, channel=channel, reply_token="3f9a0c1b2d4e")) is None
