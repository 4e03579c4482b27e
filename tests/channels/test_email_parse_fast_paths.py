"""The parser's shortcuts give exactly what the stdlib paths they replace give.

``channels.email.parse`` parses the MIME structure with a private copy of the stdlib feed
parser, whose boundary test is a prefix check in place of a regular expression per part.
Those tests parse the same bytes both ways and compare the whole message tree. Its header
registry also defers the parse of plain Content-Type and Content-Disposition values, and
those tests compare each such header with the stdlib registry's, attribute by attribute.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
from email.headerregistry import HeaderRegistry
from email.message import Message
from pathlib import Path

import pytest

from channels.email.parse import (
    _PLAIN_MIME_VALUES,
    _POLICY,
    _BoundaryMatcher,
    _CachedHeaderRegistry,
    _DeferredParse,
    _FeedParserRe,
    _message_from_bytes,
)

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


# Deferred parse of Content-Type and Content-Disposition.

MIME_HEADERS = ("Content-Type", "Content-Disposition")
TRICKY_VALUES = [
    "text/plain (a comment); charset=utf-8",
    'application/pdf; name="=?utf-8?q?Rechnung_M=C3=A4rz.pdf?="',
    "attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf",
    "attachment; filename*0=\"long\"; filename*1=\"name.pdf\"",
    'attachment; filename="quoted \\"pair\\".pdf"',
    'text/plain; charset = "utf-8"',
    "text/plain; charset=utf-8;",
    "text/plain;",
    "text/",
    "/plain",
    "",
    "text/plain; charset",
    'text/plain; charset="unterminated',
    "text/plain; charset=ütf-8",
    "text/plain; name=\udcc3\udca4.txt",
    "multipart/mixed; boundary=\"a;b=c\"",
    'multipart/mixed; boundary="(not a comment)"',
    "attachment; filename=report.pdf; size=1234",
    "inline",
    "text/plain; format=flowed; delsp=yes",
    "TEXT/HTML; CHARSET=ISO-8859-1",
    "text/plain;\tcharset=us-ascii",
    'attachment; filename=""',
    "text/plain; charset=utf-8 extra",
    "text/plain charset=utf-8",
]


def header_attributes(header) -> dict:
    """Return everything a caller can read of a parsed MIME header, folded output included."""
    attributes = {
        "text": str(header),
        "name": header.name,
        "params": dict(header.params),
        "defects": [(type(defect).__name__, str(defect)) for defect in header.defects],
        "folded": header.fold(policy=email.policy.default),
    }
    for name in ("maintype", "subtype", "content_type", "content_disposition"):
        if hasattr(type(header), name):
            attributes[name] = getattr(header, name)
    return attributes


def assert_same_header(name: str, value: str) -> None:
    try:
        expected = header_attributes(HeaderRegistry()(name, value))
    # The stdlib parser fails on some malformed values, and so must the deferred path.
    except Exception as error:  # noqa: BLE001 - compared, not swallowed
        with pytest.raises(type(error)):
            header_attributes(_CachedHeaderRegistry()(name, value))
        return
    header = _CachedHeaderRegistry()(name, value)
    assert header_attributes(header) == expected, (name, value)


def random_mime_value(generator: random.Random) -> str:
    """Return a value near the plain grammar, often with one character that leaves it."""
    pieces = [generator.choice(["text", "multipart", "attachment", "inline", "x-a.b"])]
    if generator.random() < 0.7:
        pieces.append("/" + generator.choice(["plain", "mixed", "alternative", "pdf", "vnd.ms-excel"]))
    for _ in range(generator.randrange(4)):
        space = generator.choice(["", " ", "\t", "  "])
        value = generator.choice([
            "utf-8", "=_Part_1.2", '"quoted value"', '"a;b=c"', '"==_123_=="', '""', "x{|}~",
            '"with (parens)"', '"=?utf-8?q?x?="', "%41", '"back\\slash"',
        ])
        pieces.append(f";{space}{generator.choice(['charset', 'boundary', 'filename', 'name*', 'x-y'])}={value}")
    text = "".join(pieces)
    if generator.random() < 0.3:
        position = generator.randrange(len(text) + 1)
        text = text[:position] + generator.choice(' "\\()<>@,;:/[]?=*%\'\udcc3é\t') + text[position:]
    return text


def is_deferred(name: str, value: str) -> bool:
    return isinstance(_CachedHeaderRegistry()(name, value), _DeferredParse)


def test_plain_mime_values_take_deferred_path():
    assert is_deferred("Content-Type", "text/plain; charset=utf-8")
    assert is_deferred("Content-Type", 'multipart/mixed; boundary="===============1234=="')
    assert is_deferred("Content-Disposition", 'attachment; filename="invoice-10.pdf"')
    assert is_deferred("content-disposition", "inline")
    assert not is_deferred("Content-Type", "attachment; filename=report.pdf")
    assert not is_deferred("Content-Disposition", "text/plain")
    assert not is_deferred("Subject", "text/plain")


def test_tricky_mime_values_take_stdlib_path():
    deferred = {value for value in TRICKY_VALUES if is_deferred("Content-Type", value)}

    assert deferred == {
        "multipart/mixed; boundary=\"a;b=c\"",
        'multipart/mixed; boundary="(not a comment)"',
        "text/plain; format=flowed; delsp=yes",
        "TEXT/HTML; CHARSET=ISO-8859-1",
        "text/plain;\tcharset=us-ascii",
    }


@pytest.mark.parametrize("value", TRICKY_VALUES)
@pytest.mark.parametrize("name", MIME_HEADERS)
def test_tricky_mime_values_match_stdlib(name: str, value: str):
    assert_same_header(name, value)


def test_random_mime_values_match_stdlib():
    generator = random.Random(20261205)
    deferred = 0

    for _ in range(3000):
        value = random_mime_value(generator)
        for name in MIME_HEADERS:
            assert_same_header(name, value)
        deferred += is_deferred("Content-Type", value) + is_deferred("Content-Disposition", value)

    # Both paths must have been taken many times for the comparison to mean anything.
    assert deferred > 500
    assert deferred < 5000


def corpus_mime_values() -> set[tuple[str, str]]:
    """Return the Content-Type and Content-Disposition values of every part, unfolded as the policy does."""
    values = set()
    for path in corpus_and_fixture_files():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
        for part in message.walk():
            for name, value in part.raw_items():
                if name.lower() in ("content-type", "content-disposition") and isinstance(value, str):
                    values.add((name, "".join(re.split(r"\r\n|\r|\n", value))))
    return values


def test_corpus_mime_values_match_stdlib():
    values = corpus_mime_values()
    assert values

    for name, value in sorted(values):
        assert_same_header(name, value)
