"""Parsing a customer's reply to the satisfaction question."""

from __future__ import annotations

import pytest

from inbox.proactive.satisfaction import is_low_answer, parse_answer


@pytest.mark.parametrize(
    ("text", "kind", "score"),
    [
        ("5", "rating", 5),
        ("5!", "rating", 5),
        (" 4 / 5 ", "rating", 4),
        ("\n\n3\n", "rating", 3),
        ("Yes", "yes_no", 1),
        ("y.", "yes_no", 1),
        ("NO", "yes_no", 0),
        # A comment on the answer's own line, after a separator or the scale.
        ("no, it is still broken", "yes_no", 0),
        ("No it is still broken", "yes_no", 0),
        ("Yes, thanks!", "yes_no", 1),
        ("5 - great service", "rating", 5),
        ("5/5 great", "rating", 5),
        ("4 of 5", "rating", 4),
        ("5 out of 5, great job", "rating", 5),
    ],
)
def test_answer_line_parsed(text, kind, score):
    parsed = parse_answer(text)
    assert parsed is not None
    assert parsed.kind == kind
    assert parsed.score == score


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "6", "0", "It still has not arrived", "2 parcels are missing", "nope", "5 stars and more",
        # A number or "yes" followed by a word alone may start an ordinary message.
        "3 the courier was late", "yes I have one more question", "Yesterday it came", "Noted, thanks", "N/A",
    ],
)
def test_other_text_is_no_answer(text):
    assert parse_answer(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "1", "3", "5", "4/5", "yes", "5\nThanks!", "Yes\nall good now", "4\n" + "x" * 40,
        "Yes, thanks!", "5 - great service", "4 of 5",
    ],
)
def test_bare_answer_is_only_answer(text):
    parsed = parse_answer(text)
    assert parsed is not None
    assert parsed.only_answer is True


@pytest.mark.parametrize(
    "text",
    [
        "No",
        "n",
        "no\nthanks",
        "1\nThe parcel still has not arrived, please call me back!",
        "3\nok",
        "5\n" + "x" * 41,
        "5\nThanks\nOne more thing: the invoice is wrong.",
        "yes\nbut can you send the invoice?",
        "no, it is still broken",
        "2 - the courier was late",
        "5 - great, but where is the invoice?",
        "Yes, thanks!\nOne more thing: the invoice is wrong.",
    ],
)
def test_answer_needing_agent_is_not_only_answer(text):
    parsed = parse_answer(text)
    assert parsed is not None
    assert parsed.only_answer is False


def test_stored_answer_is_first_line():
    parsed = parse_answer("1\nThe parcel still has not arrived")
    assert parsed is not None
    assert parsed.answer == "1"


@pytest.mark.parametrize(("text", "answer"), [("no, it is still broken", "no"), ("5/5 great", "5/5"), ("4 - ok", "4")])
def test_stored_answer_leaves_out_comment(text, answer):
    parsed = parse_answer(text)
    assert parsed is not None
    assert parsed.answer == answer


@pytest.mark.parametrize(
    ("kind", "score", "low"),
    [("rating", 1, True), ("rating", 3, True), ("rating", 4, False), ("rating", 5, False),
     ("yes_no", 0, True), ("yes_no", 1, False)],
)
def test_low_answer_is_under_four_or_no(kind, score, low):
    assert is_low_answer(kind, score) is low
