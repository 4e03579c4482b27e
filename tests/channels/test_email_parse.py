"""Parsing of raw RFC 5322 mail, against a corpus of ordinary and hostile .eml files."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from channels.email.html import sanitize_html
from channels.email.parse import decode_bytes, parse_email, strip_brackets
from channels.errors import ParseError
from channels.types import Address, AddressKind, ChannelKind

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def email_address(value: str, name: str | None = None) -> Address:
    return Address(AddressKind.EMAIL, value, name)


def test_plain_mail_fields():
    raw = load("plain.eml")

    message = parse_email(raw)

    assert message.channel_kind is ChannelKind.EMAIL
    assert message.raw_format == "rfc822"
    assert message.raw == raw
    assert message.provider_message_id == "CAF12345.order1042@mail.example.org"
    assert message.sender == email_address("maria.lopez@example.org", "María López")
    assert message.recipients == [email_address("support@shop.example", "Support")]
    assert message.cc == [
        email_address("boss@example.org"),
        email_address("jane@example.org", "Doe, Jane"),
    ]
    assert message.subject == "Order 1042 has not arrived"
    assert message.text.startswith("Hello,\n\nmy order 1042 has not arrived yet.")
    assert "Grüße\nMaría" in message.text
    assert message.html is None
    assert message.sent_at == datetime(2023, 8, 2, 12, 5, 9, tzinfo=timezone.utc)
    assert message.in_reply_to is None
    assert message.references == []
    assert message.attachments == []


def test_html_only_mail_is_sanitized():
    message = parse_email(load("html_only_hostile.eml"))
    html = message.html
    assert html is not None

    for forbidden in ("<script", "alert(", "onclick", "onload", "onerror", "javascript:",
                      "<style", "display: none", "<iframe", "<title"):
        assert forbidden not in html, forbidden
    assert "<p>Dear <b>support</b>,</p>" in html
    assert 'href="https://shop.example/orders/7"' in html
    assert 'src="cid:logo@evil.example"' in html
    assert 'src="https://cdn.example/ok.png"' in html
    # Remote images stay, for the inbox to hide until the agent shows them.
    assert 'src="http://tracker.evil.example/pixel.gif"' in html


def test_html_only_mail_gets_text_from_html():
    message = parse_email(load("html_only_hostile.eml"))

    assert message.text == "Dear support,\n\nmy invoice is here and there.\n\nThanks,\nEve"


def test_multipart_alternative_keeps_both_bodies():
    message = parse_email(load("alternative.eml"))

    assert message.text == "I would like a refund for order 77."
    assert message.html == "<p>I would like a <b>refund</b> for order 77.</p>"
    assert message.attachments == []
    assert message.sent_at == datetime(2023, 8, 4, 22, 30, tzinfo=timezone.utc)


def test_attachments_decode_rfc2231_filenames():
    message = parse_email(load("attachments.eml"))

    assert message.text == "Receipts attached."
    names = [attachment.filename for attachment in message.attachments]
    assert names == ["€ receipt März.pdf", "café.txt", "passwd", "attachment-5.png"]
    pdf, text_file, _, png = message.attachments
    assert pdf.content_type == "application/pdf"
    assert pdf.data == b"%PDF-1.4\n"
    assert pdf.inline is False
    assert pdf.content_id is None
    assert text_file.content_type == "text/plain"
    assert text_file.data == b"caf\xe9"
    assert png.data == b"\x89PNG\r\n\x1a\n"


def test_attachment_filename_loses_directories():
    message = parse_email(load("attachments.eml"))
    hostile = message.attachments[2]

    assert hostile.filename == "passwd"
    assert hostile.data == b"root:x:0:0"


def test_inline_image_keeps_content_id():
    message = parse_email(load("related_inline_image.eml"))

    assert message.text == "See the screenshot."
    assert message.html == '<p>See the screenshot: <img src="cid:shot1@example.com"></p>'
    [image] = message.attachments
    assert image.filename == "shot.png"
    assert image.content_type == "image/png"
    assert image.content_id == "shot1@example.com"
    assert image.inline is True


def test_forwarded_message_is_an_eml_attachment():
    message = parse_email(load("forwarded_message.eml"))

    assert message.text == "See below."
    [forwarded] = message.attachments
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename.endswith(".eml")
    assert b"Message-ID: <orig-inner@example.com>" in forwarded.data
    assert b"Inner body." in forwarded.data


def test_missing_message_id_gives_stable_content_hash():
    raw = load("no_message_id.eml")

    first = parse_email(raw)
    second = parse_email(raw)

    assert first.provider_message_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert second.provider_message_id == first.provider_message_id


def test_content_hash_differs_for_different_bytes():
    raw = load("no_message_id.eml")

    changed = parse_email(raw.replace(b"no Message-ID", b"no Message ID"))

    assert changed.provider_message_id != parse_email(raw).provider_message_id


def test_overlong_values_are_bounded():
    long_id = "x" * 1200 + "@example.com"
    long_name = "r" * 400 + ".pdf"
    raw = (
        f"From: {'a' * 300}@example.com, b@example.com\nMessage-ID: <{long_id}>\n"
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nhi\n--b\n"
        f"Content-Type: application/pdf\nContent-Disposition: attachment; filename={long_name}\n"
        "\n%PDF\n--b--\n"
    ).encode()

    message = parse_email(raw)

    assert message.sender.value == "b@example.com"
    assert message.provider_message_id == (
        "sha256:" + hashlib.sha256(long_id.encode()).hexdigest()
    )
    [attachment] = message.attachments
    assert len(attachment.filename) == 255
    assert attachment.filename.endswith("rrr.pdf")


def test_reply_headers_are_bracket_stripped():
    message = parse_email(load("reply_with_references.eml"))

    assert message.provider_message_id == "reply-2@example.com"
    assert message.in_reply_to == "sb.first-answer@shop.example"
    assert message.references == ["orig-1@example.com", "sb.first-answer@shop.example"]
    assert message.recipients == [email_address("support+c42@shop.example")]


def test_encoded_subject_and_sender_name_are_decoded():
    message = parse_email(load("encoded_subject.eml"))

    assert message.subject == "Problème de livraison 🚚"
    assert message.sender == email_address("francois@example.fr", "François")


def test_latin1_body_reads_windows1252_characters():
    message = parse_email(load("latin1.eml"))

    # =80 is the euro sign in windows-1252, which clients often label ISO-8859-1.
    assert message.text == "Grüße aus München, der Preis war 10 €."


def test_windows1252_8bit_body_is_decoded():
    message = parse_email(load("windows1252_8bit.eml"))

    assert message.text == "He said “it’s broken” – twice."


def test_unknown_charset_keeps_all_text():
    message = parse_email(load("unknown_charset.eml"))

    assert message.text == "Café first part.\nSecond part with a stray byte: \ufffd end."


def test_broken_headers_fall_back_without_losing_the_mail():
    message = parse_email(load("broken_headers.eml"))

    assert message.sender == email_address("broken@example.com")
    assert message.provider_message_id == "no-brackets-123@example.com"
    assert message.recipients == []
    assert message.subject == "Raw UTF-8 subject: naïve café"
    assert message.sent_at is None
    assert message.in_reply_to is None
    assert message.text == "Body survives."


def test_unparsable_mime_parameters_fall_back_to_compat32():
    # "x*0*" without a value makes the stdlib's header registry raise IndexError.
    message = parse_email(load("broken_mime_params.eml"))

    assert message.sender == email_address("jorg@example.de", "Jörg")
    assert message.subject == "Rechnung für März"
    assert message.sent_at == datetime(2023, 8, 1, 8, 0, tzinfo=timezone.utc)
    assert message.text == "Die Rechnung hängt an."
    [pdf] = message.attachments
    assert pdf.filename == "Résumé.pdf"
    assert pdf.data == b"%PDF-1.4\n"


def test_nul_and_lone_surrogates_are_replaced():
    raw = (
        b"From: a@example.com\nSubject: =?unicode_escape?q?a\\ud800b?=\n"
        b"Content-Type: text/plain; charset=unicode_escape\n\nx\\x00y\\udc80z\n"
    )

    message = parse_email(raw)

    assert message.subject == "a?b"
    assert message.text == "x\ufffdy\ufffdz"


def test_multipart_without_boundary_shows_its_text():
    message = parse_email(load("multipart_without_boundary.eml"))

    assert message.text == "Text that must still be shown."


def test_missing_from_raises_parse_error():
    with pytest.raises(ParseError, match="From"):
        parse_email(load("no_from.eml"))


@pytest.mark.parametrize("raw", [b"", b"not a mail at all", b"From: undisclosed:;\n\nbody"])
def test_bytes_without_sender_raise_parse_error(raw):
    with pytest.raises(ParseError):
        parse_email(raw)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: Jo <jo@example.com", "jo@example.com"),
        (b"From: ;;;<jo@example.com>,,", "jo@example.com"),
        (b"From: jo@example.com (unterminated comment", "jo@example.com"),
        (b"From: Jo\xc3\xa9 <JOE@Example.com>", "joe@example.com"),
    ],
)
def test_malformed_from_headers_still_give_a_sender(header, expected):
    message = parse_email(header + b"\nSubject: x\n\nbody\n")

    assert message.sender.value == expected


def test_raw_utf8_display_name_is_decoded():
    message = parse_email(b"From: Jo\xc3\xa9 <joe@example.com>\n\nbody\n")

    assert message.sender.display_name == "Joé"


def test_date_without_zone_is_utc():
    message = parse_email(b"From: a@example.com\nDate: Tue, 1 Aug 2023 10:00:00 -0000\n\nx\n")

    assert message.sent_at == datetime(2023, 8, 1, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@host>", "abc@host"),
        ("  <abc@host> (comment)", "abc@host"),
        ("abc@host", "abc@host"),
        ("<>", ""),
        ("", ""),
    ],
)
def test_strip_brackets(value, expected):
    assert strip_brackets(value) == expected


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("café".encode("utf-8"), "utf-8", "café"),
        ("café".encode("utf-8"), None, "café"),
        ("café".encode("utf-8"), "us-ascii", "café"),
        ("привет".encode("koi8-r"), "koi8-r", "привет"),
        (b"caf\xe9", "x-unknown", "caf\ufffd"),
        (b"caf\xe9", "base64", "caf\ufffd"),
        (b"\x80", "iso-8859-1", "€"),
        (b"\x81", "iso-8859-1", "\x81"),
    ],
)
def test_decode_bytes_falls_back_without_dropping_text(data, charset, expected):
    assert decode_bytes(data, charset) == expected


def test_sanitize_html_restricts_image_sources():
    html = sanitize_html(
        '<img src="http://a.example/x.gif"><img src="data:image/png;base64,AAAA">'
        '<img src="cid:part1"><img src="https://a.example/y.png"><a href="/relative">x</a>'
    )

    assert "data:" not in html
    assert "/relative" not in html
    assert 'src="cid:part1"' in html
    assert 'src="https://a.example/y.png"' in html
    # The inbox hides remote images, plain-HTTP ones too, until the agent shows them.
    assert 'src="http://a.example/x.gif"' in html


def test_raw_windows1252_headers_are_decoded():
    raw = (
        b"From: J\xfcrgen <juergen@example.de>\n"
        b"Subject: Fr\xf6sche\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nHallo\n"
        b'--b\nContent-Type: text/plain; name="Gr\xfc\xdfe.txt"\n'
        b'Content-Disposition: attachment; filename="Gr\xfc\xdfe.txt"\n\nText\n--b--\n'
    )

    message = parse_email(raw)

    assert message.subject == "Frösche"
    assert message.sender == email_address("juergen@example.de", "Jürgen")
    [attachment] = message.attachments
    assert attachment.filename == "Grüße.txt"


def test_mislabelled_utf8_body_reads_windows1252():
    assert decode_bytes(b"Fr\xf6sche \x80", "UTF-8") == "Frösche €"


def test_utf8_body_with_stray_byte_stays_utf8():
    assert decode_bytes("Frösche".encode() + b" \xf6", "utf-8") == "Frösche \ufffd"


@pytest.mark.parametrize(
    ("header", "address", "name"),
    [
        (b"From: alice@example.com <bob@example.com>", "bob@example.com", "alice@example.com"),
        (b"From: Alice <alice@example.com>", "alice@example.com", "Alice"),
        (b'From: "alice@example.com" <bob@example.com>', "bob@example.com", "alice@example.com"),
    ],
)
def test_bracketed_address_beats_address_as_name(header, address, name):
    message = parse_email(header + b"\nCc: eve@example.com <frank@example.com>, g@example.com\n\nbody\n")

    assert message.sender == email_address(address, name)
    assert [item.value for item in message.cc] == ["frank@example.com", "g@example.com"]


def test_base64_encoded_forwarded_message_is_decoded():
    inner = b"From: Inner <inner@example.com>\r\nSubject: Inner mail\r\n\r\nInner body.\r\n"
    raw = (
        b"From: outer@example.com\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nSee attached.\n"
        b"--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="forwarded.eml"\n\n'
        + base64.encodebytes(inner)
        + b"--b--\n"
    )

    message = parse_email(raw)

    [forwarded] = message.attachments
    assert forwarded.filename == "forwarded.eml"
    assert forwarded.data == inner
    assert parse_email(forwarded.data).subject == "Inner mail"


def test_uuencoded_attachment_is_decoded():
    data = bytes(range(256))
    encoded = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    raw = (
        b"From: old@example.com\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nFile attached.\n"
        b'--b\nContent-Type: application/octet-stream; name="bytes.bin"\n'
        b"Content-Transfer-Encoding: x-uuencode\n\n"
        b"begin 644 bytes.bin\n" + encoded + b"`\nend\n--b--\n"
    )

    message = parse_email(raw)

    [attachment] = message.attachments
    assert attachment.filename == "bytes.bin"
    assert attachment.data == data


def uuencode(data: bytes) -> bytes:
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    return b"".join(lines) + b"`\n"


def test_uuencoded_block_in_text_becomes_attachment():
    data = bytes(range(256)) * 2
    raw = (
        b"From: old@example.com\nSubject: Log\nContent-Type: text/plain; charset=us-ascii\n\n"
        b"Hello,\n\nthe log is below.\n\nbegin 644 server log.zip\n" + uuencode(data) + b"end\n\nThanks,\nBo\n"
    )

    message = parse_email(raw)

    assert message.text == "Hello,\n\nthe log is below.\n\nThanks,\nBo"
    [attachment] = message.attachments
    assert attachment.filename == "server log.zip"
    assert attachment.content_type == "application/zip"
    assert attachment.data == data


def test_uuencoded_blocks_in_mail_without_mime():
    raw = (
        b"From: old@example.com\n\nTwo files:\n"
        b"begin 600 ../../etc/passwd\n" + uuencode(b"root:x:0:0") + b"end\n"
        b"begin 644 notes.txt\n" + uuencode(b"first\nsecond\n").replace(b" \n", b"\n") + b"end\n"
        b"Done.\n"
    )

    message = parse_email(raw)

    assert message.text == "Two files:\nDone."
    assert [item.filename for item in message.attachments] == ["passwd", "notes.txt"]
    assert [item.data for item in message.attachments] == [b"root:x:0:0", b"first\nsecond\n"]
    assert message.attachments[1].content_type == "text/plain"


@pytest.mark.parametrize(
    "block",
    [
        b"begin 644 cut.bin\n" + uuencode(b"no end line"),
        b"begin 644 prose.txt\nthis is a sentence, not uuencoded data\nend\n",
        b"begin with the basics\nend\n",
    ],
)
def test_text_that_is_not_a_whole_uuencoded_block_stays(block):
    raw = b"From: old@example.com\n\nBefore.\n" + block + b"After.\n"

    message = parse_email(raw)

    assert message.attachments == []
    assert message.text == ("Before.\n" + block.decode() + "After.").rstrip()
