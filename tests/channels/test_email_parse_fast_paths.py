"""The parser's shortcuts give exactly what the stdlib paths they replace give.

``channels.email.parse`` parses the MIME structure with a private copy of the stdlib feed
parser, whose boundary test is a prefix check in place of a regular expression per part.
Each test parses the same bytes both ways and compares the whole message tree.
"""

from __future__ import annotations

import email
import re
from email.message import Message
from pathlib import Path

import pytest

from channels.email.parse import _POLICY, _BoundaryMatcher, _FeedParserRe, _message_from_bytes

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "email"
DATA = Path(__file__).parent / "data"


def describe(message: Message) -> list[tuple]:
    """Return every part of ``message`` with its raw headers, payload, preamble, epilogue and defects."""
    parts = []
    for part in message.walk():
        payload = None if part.is_multipart() else part.get_payload()
        defects = [(type(defect).__name__, str(defect)) for defect in part.defects]
        parts.append((list(part.raw_items()), payload, part.preamble, part.epilogue, defects))
    return parts


def assert_same_structure(raw: bytes) -> None:
    expected = email.message_from_bytes(raw, policy=_POLICY)
    parsed = _message_from_bytes(raw, _POLICY)
    assert describe(parsed) == describe(expected)


def multipart(boundary: str, body: str, newline: str = "\r\n") -> bytes:
    lines = [
        "From: customer@example.com",
        "Subject: boundary case",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        body,
    ]
    return newline.join(lines).replace("\r\n", newline).encode("utf-8", "surrogateescape")


def simple_body(boundary: str, closing: str = "--") -> str:
    return (
        "preamble text\r\n"
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n"
        f"--{boundary}{closing}\r\nepilogue text\r\n"
    )


BOUNDARY_CASES = {
    "plain": multipart("simple", simple_body("simple")),
    "python generator style": multipart("===============1234567890==", simple_body("===============1234567890==")),
    "regular expression characters": multipart("a.b*c+?(x)[y]{z}|^$", simple_body("a.b*c+?(x)[y]{z}|^$")),
    "backslash": multipart("back\\\\slash", simple_body("back\\slash")),
    "space inside": multipart("with space", simple_body("with space")),
    "empty boundary": multipart("", simple_body("")),
    "whitespace after boundary lines": multipart("ws", simple_body("ws").replace("--ws\r\n", "--ws \t \r\n")),
    "text after a boundary is no boundary": multipart(
        "b", simple_body("b").replace("--b\r\nContent-Type: text/plain\r\n\r\nsecond", "--bX\r\n\r\nsecond")
    ),
    "no closing boundary": multipart("open", simple_body("open", closing="")),
    "closing boundary without newline": multipart(
        "end", "--end\r\nContent-Type: text/plain\r\n\r\nonly part\r\n--end--"
    ),
    "line feeds only": multipart("lf", simple_body("lf"), newline="\n"),
    "carriage returns only": multipart("cr", simple_body("cr"), newline="\r"),
    "doubled boundary lines": multipart("twice", simple_body("twice").replace("--twice\r\n", "--twice\r\n--twice\r\n", 1)),
    "boundary never used": multipart("missing", "just text\r\nwithout any part\r\n"),
    "non-ASCII boundary": multipart("gr\udcc3\udcbc\udcc3\udc9fe", simple_body("gr\udcc3\udcbc\udcc3\udc9fe")),
    "nested boundary that extends the outer one": multipart(
        "outer",
        "--outer\r\nContent-Type: multipart/alternative; boundary=\"outer-inner\"\r\n\r\n"
        "--outer-inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
        "--outer-inner\r\nContent-Type: text/html\r\n\r\n<p>inner</p>\r\n"
        "--outer-inner--\r\n"
        "--outer\r\nContent-Type: text/plain\r\n\r\nlast\r\n--outer--\r\n",
    ),
    "inner part closes the outer boundary": multipart(
        "outer",
        "--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
        "--inner\r\nContent-Type: text/plain\r\n\r\nunclosed inner\r\n"
        "--outer--\r\n",
    ),
}


@pytest.mark.parametrize("raw", BOUNDARY_CASES.values(), ids=BOUNDARY_CASES.keys())
def test_boundary_cases_match_stdlib(raw: bytes):
    assert_same_structure(raw)


def corpus_and_fixture_files() -> list[Path]:
    files = sorted(path for path in DATA.rglob("*") if path.is_file())
    if CORPUS.is_dir():
        files += sorted(path for path in CORPUS.rglob("*") if path.is_file() and path.suffix not in (".json", ".md"))
    return files


def test_corpus_structure_matches_stdlib():
    files = corpus_and_fixture_files()
    assert files

    for path in files:
        raw = path.read_bytes()
        try:
            expected = describe(email.message_from_bytes(raw, policy=_POLICY))
        # Both paths must fail alike where the stdlib fails, e.g. on a malformed header.
        except Exception as error:  # noqa: BLE001 - compared, not swallowed
            with pytest.raises(type(error)):
                _message_from_bytes(raw, _POLICY)
            continue
        assert describe(_message_from_bytes(raw, _POLICY)) == expected, path.name


def test_boundary_pattern_becomes_matcher():
    separator = "--a.b(c)"
    pattern = "(?P<sep>" + re.escape(separator) + r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"

    compiled = _FeedParserRe.compile(pattern)

    assert isinstance(compiled, _BoundaryMatcher)
    for line in ["--a.b(c)\r\n", "--a.b(c)--\n", "--a.b(c) \t", "--a.b(c)x\n", "--aXb(c)\n", "--a.b(c)\n\n", ""]:
        expected = re.compile(pattern).match(line)
        found = compiled.match(line)
        assert (found is None) == (expected is None), line
        if expected is not None:
            assert found.group("end") == expected.group("end"), line
            assert found.group("linesep") == expected.group("linesep"), line


def test_other_patterns_compile_as_usual():
    compiled = _FeedParserRe.compile(r"\r\n|\r|\n")

    assert not isinstance(compiled, _BoundaryMatcher)
    assert compiled.match("\r\n").group(0) == "\r\n"
