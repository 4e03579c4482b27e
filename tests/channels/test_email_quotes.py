"""Folding of quoted history and signatures in plain-text email replies.

The corpus checks read third-party test data kept next to the repository, not in it:
``shared/corpus/email`` beside the project folder. Where it is absent, as in a user's clone, they
skip, in CI too, because the data is not part of the project.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.email.html import html_to_text
from channels.email.parse import parse_email
from channels.email.quotes import reply_span, split_reply

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "email"
TRIMMER = CORPUS / "email_reply_trimmer"
TALON = CORPUS / "talon"
CORPUS_MISSING = (
    "the real-world email corpus (shared/corpus/email next to the project folder) is absent; "
    "it is third-party test data outside the repository, so this test skips even with CI=true"
)

# Measured: 15 of 18 trimmer replies. The three differ by design: a forward with no text above it
# and a text that is all quote stay whole here, where the trimmer expects the forwarded message and
# nothing; and a reply below its quote shows only the answer, where the trimmer keeps the quote.
TRIMMER_MIN_MATCH_RATE = 0.8
# Measured: 9 of 9 talon replies.
TALON_MIN_MATCH_RATE = 1.0

REPLY = "Thanks, that fixed it.\nBest, Anna"

CASES = {
    "english": "On Tue, 3 Mar 2026 at 10:15, Support <help@example.com> wrote:\n> Try again.",
    "english_wrapped": "On Tue, Mar 3, 2026 at 10:15 AM, Switchboard Support <\nhelp@example.com> wrote:\n\n> Try again.",
    "zoho": "---- On Tue, 03 Mar 2026 10:15:00 +0100 Support <help@example.com> wrote ----\n\nTry again.",
    "german": "Am 03.03.2026 um 10:15 schrieb Support <help@example.com>:\n> Versuchen Sie es erneut.",
    "german_gmail_wrapped": "Support <help@example.com> schrieb am Di., 3.\nMärz 2026 um 10:15 Uhr:\n\n> Bitte erneut versuchen.",
    "french_wrapped": 'Le 3 mars 2026 10:15, "Support"\n<help@example.com>\na écrit :\n\n> Réessayez.',
    "spanish": "El mar, 3 mar 2026 a las 10:15, Support (<help@example.com>) escribió:\n> Inténtelo de nuevo.",
    "dutch_wrapped": 'Op 3 mrt. 2026 10:15 schreef "Support" <help@example.com> het\nvolgende:\n\n> Probeer het opnieuw.',
    "italian": "Il giorno mar 3 mar 2026 alle ore 10:15 Support <help@example.com> ha scritto:\n> Riprova.",
    "portuguese": "Em ter., 3 de mar. de 2026 às 10:15, Support <help@example.com> escreveu:\n> Tente novamente.",
    "polish": "W dniu 3.03.2026 o 10:15, Support <help@example.com> napisał(a):\n> Spróbuj ponownie.",
    "russian_writes": "03.03.2026, 10:15, \"Поддержка\" <help@example.com> пишет:\n> Попробуйте снова.",
    "russian_wrote": "3 марта 2026 г., в 10:15, Поддержка <help@example.com> написал(а):\n> Попробуйте снова.",
    "outlook_separator": "-----Original Message-----\nFrom: Support\nSent: Tuesday\n\nTry again.",
    "outlook_separator_german": "-----Ursprüngliche Nachricht-----\nVon: Support\n\nVersuchen Sie es erneut.",
    "outlook_separator_french": "-----Message d'origine-----\nDe : Support\n\nRéessayez.",
    "outlook_separator_russian": "-----Исходное сообщение-----\nОт: Поддержка\n\nПопробуйте снова.",
    "thunderbird_separator": "*-------- Original Message --------*\nTry again.",
    "forward": "---------- Forwarded message ---------\nFrom: Support <help@example.com>\n\nTry again.",
    "outlook_headers": (
        "________________________________\nFrom: Support <help@example.com>\nSent: Tuesday, March 3, 2026 10:15\n"
        "To: Anna <anna@example.com>\nSubject: RE: Login\n\nTry again."
    ),
    "outlook_headers_german": (
        "Von: Support <help@example.com>\nGesendet: Dienstag, 3. März 2026 10:15\nAn: Anna\nBetreff: AW: Login\n\nBitte."
    ),
    "outlook_headers_french": "De : Support\nEnvoyé : mardi 3 mars 2026 10:15\nÀ : Anna\nObjet : RE: Login\n\nRéessayez.",
    "outlook_headers_spanish": "De: Support\nEnviado: martes, 3 de marzo de 2026 10:15\nPara: Anna\nAsunto: RE: Login\n\nOtra vez.",
    "outlook_headers_dutch": "Van: Support\nVerzonden: dinsdag 3 maart 2026 10:15\nAan: Anna\nOnderwerp: RE: Login\n\nNog eens.",
    "outlook_headers_italian": "Da: Support\nInviato: martedì 3 marzo 2026 10:15\nA: Anna\nOggetto: R: Login\n\nRiprova.",
    "outlook_headers_polish": "Od: Support\nWysłano: wtorek, 3 marca 2026 10:15\nDo: Anna\nTemat: RE: Login\n\nJeszcze raz.",
    "outlook_headers_russian": "От: Поддержка\nОтправлено: 3 марта 2026 г. 10:15\nКому: Анна\nТема: RE: Вход\n\nСнова.",
    "outlook_headers_portuguese": "De: Support\nEnviada em: terça-feira, 3 de março de 2026 10:15\nPara: Anna\nAssunto: RE: Login\n\nDe novo.",
    "outlook_headers_wrapped_value": (
        "From: Support <help@example.com>\nSent: Tuesday, March 3, 2026 10:15\nTo: Anna <anna@example.com>;\n"
        " Ben <ben@example.com>\nSubject: RE: Login\n\nTry again."
    ),
    "quote_block": "\n> Try again.\n>\n> Support",
    "signature_delimiter": "-- \nAnna Example\nExample GmbH\n+49 30 1234567",
    "iphone": "Sent from my iPhone",
    "iphone_german": "Von meinem iPhone gesendet",
    "iphone_french": "Envoyé de mon iPhone",
    "iphone_spanish": "Enviado desde mi iPhone",
    "outlook_mobile": "Get Outlook for Android",
    "mobile_signature_above_quote": "Sent from my iPad\n\nOn 3 Mar 2026, at 10:15, Support <help@example.com> wrote:\n\n> Try again.",
}


def non_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("tail", CASES.values(), ids=CASES.keys())
def test_reply_tail_folds(tail: str):
    text = f"{REPLY}\n\n{tail}\n"

    visible, folded = split_reply(text)

    assert visible == REPLY
    assert folded == tail.strip()


def test_reply_without_tail_stays_whole():
    text = "Hello,\n\nthe invoice is attached.\n-- which one do you mean?\n\nAnna\n"

    assert split_reply(text) == (text.strip(), "")


def test_wrapped_attribution_keeps_reply_line_above():
    text = 'Sounds good.\nSee you then.\nOp 3 mrt. 2026 10:15 schreef "Support" <help@example.com> het\nvolgende:\n> Hoi'

    visible, folded = split_reply(text)

    assert visible == "Sounds good.\nSee you then."
    assert folded.startswith("Op 3 mrt.")


def test_answer_below_attributed_quote_is_visible():
    text = "On 3 Mar 2026, at 10:15, Support <help@example.com> wrote:\n> Which browser?\n\nFirefox 140.\n"

    visible, folded = split_reply(text)

    assert visible == "Firefox 140."
    assert folded == "On 3 Mar 2026, at 10:15, Support <help@example.com> wrote:\n> Which browser?"


def test_answer_below_quote_loses_signature():
    text = "> Which browser?\n\nFirefox 140.\n\n-- \nAnna"

    assert split_reply(text) == ("Firefox 140.", "> Which browser?\n\n-- \nAnna")


def test_answer_below_wrapped_attribution_and_nested_quote():
    quote = (
        "On Tue, Mar 3, 2026 at 10:15 AM, Switchboard Support <\nhelp@example.com> wrote:\n\n"
        "> Which browser?\n>\n>> On 2 Mar 2026, Anna <anna@example.com> wrote:\n>> The page is blank."
    )
    text = f"{quote}\n\nFirefox 140 on Linux.\nAnna\n"

    assert split_reply(text) == ("Firefox 140 on Linux.\nAnna", quote)


def test_answer_between_quotes_folds_the_rest():
    text = "> Which browser?\n\nFirefox 140.\n\n> Thanks,\n> Support\n"

    assert split_reply(text) == ("Firefox 140.", "> Which browser?\n\n> Thanks,\n> Support")


def test_inline_answers_stay_whole():
    text = "> Which browser?\n\nFirefox 140.\n\n> Which version of the app?\n\n2.3.1\n"

    assert split_reply(text) == (text.strip(), "")


def test_greeting_above_quote_is_not_bottom_posting():
    text = "Hi,\n\n> Which browser?\n\nFirefox 140.\n"

    assert split_reply(text) == (text.strip(), "")


def test_undated_attribution_stays_visible():
    text = "As my colleague wrote:\n> restart the router\nand it worked."

    assert split_reply(text) == (text, "")


def test_sent_from_inside_reply_stays_visible():
    text = "Sent from our warehouse on Monday.\nIt should arrive on Wednesday."

    assert split_reply(text) == (text, "")


def test_long_text_after_dashes_stays_visible():
    text = "Steps:\n--\n" + "\n".join(f"Step {number}." for number in range(1, 21))

    assert split_reply(text) == (text, "")


@pytest.mark.parametrize(
    "text",
    [
        "> On 3 Mar 2026, Support <help@example.com> wrote:\n> Try again.",
        "On 3 Mar 2026, Support <help@example.com> wrote:\n\n> Try again.\n",
        "---------- Forwarded message ---------\nFrom: Support <help@example.com>\n\nTry again.",
        "-- \nAnna Example\nExample GmbH",
        "Sent from my iPhone",
    ],
    ids=["quote", "attributed_quote", "forward", "signature", "mobile_signature"],
)
def test_text_with_nothing_else_is_not_folded(text):
    assert split_reply(text) == (text.strip(), "")


def test_split_keeps_crlf_text_and_loses_nothing():
    text = "Thanks!\r\n\r\nOn 3 Mar 2026, Support <help@example.com> wrote:\r\n> Try again.\r\n"

    visible, folded = split_reply(text)

    assert visible == "Thanks!"
    assert non_whitespace(visible + folded) == non_whitespace(text)
    assert text.find(folded) > text.find(visible)


LINE_KINDS = [
    "", "Thanks, that fixed it.", "> Try again.", ">> Older text.", "-- ", "--", "Sent from my iPhone",
    "On 3 Mar 2026, Support <help@example.com> wrote:", "-----Original Message-----", "From: Support",
    "Sent: Tuesday", "To: Anna", "Subject: Login", "________________________________", "Anna", "\r",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LINE_KINDS), max_size=20), st.sampled_from(["\n", "\r\n"]))
def test_split_keeps_all_text_and_something_visible(kinds, newline):
    text = newline.join(kinds)

    visible, folded = split_reply(text)

    assert_contract(text, visible, folded)
    if text.strip():
        assert visible


def test_empty_text_splits_into_empty_parts():
    assert split_reply("") == ("", "")
    assert split_reply("  \n\n") == ("", "")


def assert_contract(text: str, visible: str, folded: str) -> None:
    """Check that visible is the text between the two cuts and folded the text around them."""
    start, end = reply_span(text)
    outside = [part for part in (text[:start].strip(), text[end:].strip()) if part]
    if folded:
        assert visible == text[start:end].strip()
        assert folded == "\n\n".join(outside)
    else:
        assert visible == text.strip()
    assert sorted(non_whitespace(visible + folded)) == sorted(non_whitespace(text))


def normalized(text: str) -> list[str]:
    """Return the non-blank lines, stripped, because HTML conversion varies the blank lines."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_trimmer_corpus_match_rate():
    if not (TRIMMER / "emails").is_dir():
        pytest.skip(CORPUS_MISSING)

    paths = sorted((TRIMMER / "emails").glob("*.txt"))
    matches = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        expected = (TRIMMER / "trimmed" / path.name).read_text(encoding="utf-8").strip()
        visible, folded = split_reply(text)
        assert_contract(text, visible, folded)
        if visible == expected:
            matches.append(path.name)

    rate = len(matches) / len(paths)
    print(f"reply trimmer corpus: {len(matches)} of {len(paths)} replies match ({rate:.0%})")
    assert rate >= TRIMMER_MIN_MATCH_RATE


def test_talon_corpus_match_rate():
    expected_path = TALON / "expected.json"
    if not expected_path.is_file():
        pytest.skip(CORPUS_MISSING)
    expected = json.loads(expected_path.read_text(encoding="utf-8"))

    cases = []
    for name, entry in expected["standard_replies"].items():
        text = parse_email((TALON / "standard_replies" / name).read_bytes()).text
        cases.append((name, text, entry["expected_reply_text"]))
    for name, entry in expected["html_replies"].items():
        html = (TALON / "html_replies" / name).read_text(encoding="utf-8", errors="replace")
        cases.append((name, html_to_text(html), entry["expected_visible_text"]))

    matches = []
    for name, text, reply in cases:
        visible, folded = split_reply(text)
        assert_contract(text, visible, folded)
        if normalized(visible) == normalized(reply):
            matches.append(name)

    rate = len(matches) / len(cases)
    print(f"talon corpus: {len(matches)} of {len(cases)} replies match ({rate:.0%})")
    assert rate >= TALON_MIN_MATCH_RATE
