"""Splitting WhatsApp replies into Twilio-sized parts, and the explained error codes."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.whatsapp.errors import TWILIO_ERRORS, explain_error, is_transient_error, parse_retry_after
from channels.whatsapp.parts import (
    MAX_BODY_UNITS,
    MAX_PARTS,
    PlannedPart,
    check_reply,
    plan_parts,
    split_text,
    utf16_length,
)

GRAPHEMES = ["a", "é", "e\u0301", "😀", "👍🏽", "👨‍👩‍👧", "🇩🇪", "𝄞", "中", " ", "\n", "\n\n"]


def _graphemes(text: str) -> list[str]:
    return regex.findall(r"\X", text)


def test_short_text_is_one_part():
    assert split_text("  Hello there  ") == ["Hello there"]


def test_blank_text_has_no_parts():
    assert split_text(" \n ") == []


def test_split_falls_on_word_boundaries():
    text = " ".join(["parcel"] * 700)

    parts = split_text(text)

    assert [len(part) for part in parts] == [1595, 1595, 1595, 111]
    assert all(set(part.split(" ")) == {"parcel"} for part in parts)
    assert " ".join(parts) == text


def test_emoji_count_twice():
    text = "😀" * 1000

    parts = split_text(text)

    assert [len(part) for part in parts] == [800, 200]
    assert "".join(parts) == text


def test_joined_emoji_are_never_cut():
    family = "👨‍👩‍👧"
    text = family * 400

    parts = split_text(text)

    assert all(_graphemes(part) == [family] * len(_graphemes(part)) for part in parts)
    assert "".join(parts) == text


def test_paragraph_break_is_preferred():
    first = "First paragraph. " * 60
    text = first.strip() + "\n\n" + "Second paragraph goes on. " * 60

    parts = split_text(text)

    assert parts[0] == first.strip()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(GRAPHEMES), min_size=1, max_size=3000), st.integers(min_value=8, max_value=400))
def test_split_keeps_every_grapheme_within_limit(pieces, limit):
    text = "".join(pieces)

    parts = split_text(text, limit)

    assert all(utf16_length(part) <= limit for part in parts)
    assert all(part == part.strip() and part for part in parts)
    visible = [g for g in _graphemes(text) if not g.isspace()]
    assert [g for part in parts for g in _graphemes(part) if not g.isspace()] == visible


def test_text_fits_caption_of_first_attachment():
    assert plan_parts("See attached", ["image/png", "application/pdf"]) == [
        PlannedPart("See attached", 0),
        PlannedPart("", 1),
    ]


def test_audio_gets_no_caption():
    assert plan_parts("Listen", ["audio/ogg"]) == [PlannedPart("Listen"), PlannedPart("", 0)]


def test_long_text_goes_before_attachments():
    text = "word " * 400

    planned = plan_parts(text, ["image/jpeg"])

    assert planned[-1] == PlannedPart("", 0)
    assert all(part.media_index is None for part in planned[:-1])


@pytest.mark.parametrize(
    ("text", "media", "message"),
    [
        ("", [], "empty"),
        ("x" * (MAX_BODY_UNITS * MAX_PARTS + 1), [], "at most 16000"),
        ("hi", [("page.html", "text/html", 10)], "cannot send 'page.html'"),
        ("hi", [("big.mp4", "video/mp4", 17 * 1024 * 1024)], "at most 16 MB"),
        ("hi", [(f"{n}.png", "image/png", 10) for n in range(11)], "at most 10"),
    ],
)
def test_check_reply_rejects(text, media, message):
    with pytest.raises(ValueError, match=message):
        check_reply(text, media)


def test_check_reply_accepts_media_only():
    check_reply("", [("label.png", "image/png", 100)])


@pytest.mark.parametrize(
    "code",
    ["63016", "63003", "63024", "63032", "21211", "21408", "21610", "30003", "30004", "30005",
     "30006", "30007", "30008", "63018", "63049"],
)
def test_common_codes_have_explanations(code):
    info = TWILIO_ERRORS[code]

    assert info.meaning.endswith((".", ")."))
    assert info.action


def test_explanation_adds_twilio_message():
    text = explain_error("30005", "Unknown destination handset")

    assert text == (
        "The customer's number is unknown or no longer in service. Ask the customer for a current "
        "number. Twilio: Unknown destination handset"
    )


def test_unknown_code_keeps_twilio_message():
    assert explain_error("99999", "Something odd") == "Something odd"
    assert explain_error(None, None).startswith("Twilio reported the message as not delivered")


def test_rate_limit_codes_are_transient():
    assert is_transient_error("63018")
    assert is_transient_error("20429")
    assert not is_transient_error("63016")
    assert not is_transient_error(None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30", 30.0), (" 1.5 ", 1.5), ("0", 0.0), ("", None), (None, None), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("-5", None), ("100000", None)],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected
