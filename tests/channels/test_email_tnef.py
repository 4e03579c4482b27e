"""TNEF (winmail.dat) parts unpacked into attachments and bodies, on streams the tests write."""

from __future__ import annotations

import email
import email.policy
import struct
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.email.parse import parse_email
from channels.email.tnef import TnefError, decompress_rtf, read_tnef, rtf_to_html_or_text
from tests.channels import tnef_writer as w

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
CSV = "Datum;Betrag\n03.03.2026;12,50 €\n".encode("cp1252")


def mail(text: str | None, tnef: bytes, *, content_type: str = "application/ms-tnef",
         filename: str = "winmail.dat") -> bytes:
    """Return a mail as Exchange sends it: an optional text body and the TNEF part."""
    message = EmailMessage()
    message["From"] = "Anna <anna@example.com>"
    message["To"] = "support@example.com"
    message["Subject"] = "Invoice"
    message["Message-ID"] = "<tnef-1@example.com>"
    if text is not None:
        message.set_content(text)
    maintype, subtype = content_type.split("/")
    message.add_attachment(tnef, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def two_files() -> bytes:
    """Return a TNEF stream with a PDF named by its long file name and a CSV named by its title."""
    return w.stream(
        w.header(),
        w.file_attachment(
            PDF,
            title=b"RECHNU~1.PDF",
            props=(
                w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "Rechnung März 2026.pdf"),
                w.Prop(w.PT_STRING8, w.PR_ATTACH_MIME_TAG, b"application/pdf"),
                w.Prop(w.PT_LONG, w.PR_ATTACH_METHOD, 1),
                w.Prop(w.PT_BINARY, w.PR_ATTACH_DATA, PDF),
            ),
        ),
        w.file_attachment(
            CSV,
            title="Beträge.csv".encode("cp1252"),
            props=(w.Prop(w.PT_STRING8, w.PR_ATTACH_EXTENSION, b".csv"),),
        ),
    )


def test_winmail_becomes_its_files():
    message = parse_email(mail("See the invoice.", two_files()))

    assert message.text == "See the invoice."
    assert [item.filename for item in message.attachments] == ["Rechnung März 2026.pdf", "Beträge.csv"]
    pdf, csv = message.attachments
    assert pdf.content_type == "application/pdf"
    assert pdf.data == PDF
    assert pdf.size == len(PDF)
    assert csv.content_type == "text/csv"
    assert csv.data == CSV
    assert pdf.inline is False
    assert csv.inline is False


def test_winmail_sent_as_octet_stream_is_unpacked():
    raw = mail("See the invoice.", two_files(), content_type="application/octet-stream")

    names = [item.filename for item in parse_email(raw).attachments]

    assert names == ["Rechnung März 2026.pdf", "Beträge.csv"]


def test_truncated_winmail_stays_an_attachment():
    tnef = two_files()[:-40]

    message = parse_email(mail("See the invoice.", tnef))

    assert message.text == "See the invoice."
    [kept] = message.attachments
    assert kept.filename == "winmail.dat"
    assert kept.content_type == "application/ms-tnef"
    assert kept.data == tnef


def test_tnef_type_without_signature_stays_an_attachment():
    message = parse_email(mail("Hello", b"not TNEF at all"))

    [kept] = message.attachments
    assert kept.filename == "winmail.dat"
    assert kept.data == b"not TNEF at all"


def test_unknown_property_type_stays_an_attachment():
    broken = w.properties(w.Prop(w.PT_LONG, w.PR_ATTACH_METHOD, 1)).replace(
        struct.pack("<HH", w.PT_LONG, w.PR_ATTACH_METHOD), struct.pack("<HH", 0x0999, w.PR_ATTACH_METHOD)
    )
    tnef = w.stream(
        w.header(),
        w.attribute(w.ATTACHMENT, w.ATT_ATTACH_REND_DATA, b"\x00" * 14),
        w.attribute(w.ATTACHMENT, w.ATT_ATTACHMENT, broken),
    )

    [kept] = parse_email(mail("Hello", tnef)).attachments

    assert kept.filename == "winmail.dat"


def test_wrong_checksum_is_ignored():
    tnef = w.stream(
        w.header(),
        w.attribute(w.ATTACHMENT, w.ATT_ATTACH_REND_DATA, b"\x00" * 14),
        w.attribute(w.ATTACHMENT, w.ATT_ATTACH_TITLE, b"notes.txt\x00", checksum=0),
        w.attribute(w.ATTACHMENT, w.ATT_ATTACH_DATA, b"some notes", checksum=1),
    )

    [notes] = parse_email(mail("Hello", tnef)).attachments

    assert notes.filename == "notes.txt"
    assert notes.data == b"some notes"


def test_tnef_file_names_are_made_safe():
    tnef = w.stream(
        w.header(),
        w.file_attachment(b"MZ", props=(w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "..\\..\\run\x07.exe"),)),
        w.file_attachment(b"\x00\x01", props=(w.Prop(w.PT_STRING8, w.PR_ATTACH_MIME_TAG, b"image/png"),)),
    )

    message = parse_email(mail("Hello", tnef))

    assert [item.filename for item in message.attachments] == ["run.exe", "attachment-2-2.png"]
    assert message.attachments[1].content_type == "image/png"


def test_invalid_mime_tag_falls_back_to_name():
    tnef = w.stream(
        w.header(),
        w.file_attachment(b"x", props=(
            w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "photo.jpg"),
            w.Prop(w.PT_STRING8, w.PR_ATTACH_MIME_TAG, b"image/jpeg\r\nX-Evil: 1"),
        )),
    )

    [photo] = parse_email(mail("Hello", tnef)).attachments

    assert photo.content_type == "image/jpeg"


def test_named_and_multivalued_properties_are_skipped():
    tnef = w.stream(
        w.header(),
        w.file_attachment(b"report", legacy_data=False, props=(
            w.Prop(w.PT_STRING8, 0x8005, b"a named string", name="Keywords"),
            w.Prop(w.PT_MV_LONG, 0x6800, [1, 2, 3]),
            w.Prop(w.PT_BOOLEAN, 0x8006, 1, name="Flag"),
            w.Prop(w.PT_SHORT, 0x0E21, 7),
            w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "report.txt"),
            w.Prop(w.PT_BINARY, w.PR_ATTACH_DATA, b"report"),
        )),
    )

    [report] = parse_email(mail("Hello", tnef)).attachments

    assert report.filename == "report.txt"
    assert report.data == b"report"


def test_hidden_image_with_content_id_is_inline():
    tnef = w.stream(
        w.header(),
        w.file_attachment(b"\x89PNG", props=(
            w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "image001.png"),
            w.Prop(w.PT_STRING8, w.PR_ATTACH_CONTENT_ID, b"<image001.png@01DC0000.12345678>"),
            w.Prop(w.PT_BOOLEAN, w.PR_ATTACHMENT_HIDDEN, 1),
        )),
    )

    [image] = parse_email(mail("Hello", tnef)).attachments

    assert image.inline is True
    assert image.content_id == "image001.png@01DC0000.12345678"


def test_tnef_text_body_used_when_mail_has_none():
    tnef = w.stream(
        w.header(),
        w.attribute(w.MESSAGE, w.ATT_MAPI_PROPS, w.properties(w.Prop(w.PT_UNICODE, w.PR_BODY, "Hallo,\r\nanbei die Rechnung."))),
        w.file_attachment(PDF, props=(w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "Rechnung.pdf"),)),
    )

    message = parse_email(mail(None, tnef))

    assert message.text == "Hallo,\nanbei die Rechnung."
    assert message.html is None
    assert [item.filename for item in message.attachments] == ["Rechnung.pdf"]


def test_legacy_body_attribute_uses_oem_code_page():
    tnef = w.stream(
        w.header(code_page=1251),
        w.attribute(w.MESSAGE, w.ATT_BODY, "Добрый день".encode("cp1251") + b"\x00"),
    )

    assert parse_email(mail(None, tnef)).text == "Добрый день"


def test_tnef_body_ignored_when_mail_has_one():
    tnef = w.stream(
        w.header(),
        w.attribute(w.MESSAGE, w.ATT_MAPI_PROPS, w.properties(w.Prop(w.PT_UNICODE, w.PR_BODY, "TNEF copy of the body"))),
    )

    message = parse_email(mail("The mail's own body.", tnef))

    assert message.text == "The mail's own body."
    assert message.attachments == []


def test_tnef_html_body_is_sanitized():
    html = '<html><body><p>Bitte <b>zahlen</b></p><script>alert(1)</script></body></html>'
    tnef = w.stream(
        w.header(),
        w.attribute(w.MESSAGE, w.ATT_MAPI_PROPS, w.properties(
            w.Prop(w.PT_LONG, w.PR_INTERNET_CPID, 65001),
            w.Prop(w.PT_BINARY, w.PR_BODY_HTML, html.encode("utf-8")),
        )),
    )

    message = parse_email(mail(None, tnef))

    assert message.html == "<p>Bitte <b>zahlen</b></p>"
    assert message.text == "Bitte zahlen"


ENCAPSULATED_HTML = (
    b"{\\rtf1\\ansi\\ansicpg1252\\fromhtml1 \\deff0{\\fonttbl{\\f0\\fswiss Arial;}}"
    b"{\\*\\htmltag19 <html>}{\\*\\htmltag34 <body>}"
    b"{\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 Gr\\'fc\\'dfe aus K\\u246?ln"
    b"{\\*\\htmltag84 &nbsp;}\\htmlrtf \\'a0\\htmlrtf0 \\u8364?10\\htmlrtf\\par\\htmlrtf0}"
    b"\\htmlrtf0 {\\*\\htmltag72 </p>}{\\*\\htmltag42 </body>}{\\*\\htmltag27 </html>}}"
)


def test_rtf_encapsulated_html_body():
    tnef = w.stream(
        w.header(),
        w.attribute(w.MESSAGE, w.ATT_MAPI_PROPS, w.properties(
            w.Prop(w.PT_BINARY, w.PR_RTF_COMPRESSED, w.compress_rtf(ENCAPSULATED_HTML)),
        )),
    )

    message = parse_email(mail(None, tnef))

    assert message.html == "<p>Grüße aus Köln&nbsp;€10</p>"
    assert message.text == "Grüße aus Köln €10"


def test_plain_rtf_body_becomes_text():
    rtf = (
        b"{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0 Calibri;}}{\\colortbl;\\red0\\green0\\blue0;}"
        b"{\\*\\generator Riched20 10.0;}\\viewkind4\\uc1\\pard\\f0\\fs22 Hello team,\\par"
        b"\\par the total is \\b 12\\b0\\tab EUR\\par}"
    )
    tnef = w.stream(
        w.header(),
        w.attribute(w.MESSAGE, w.ATT_MAPI_PROPS, w.properties(w.Prop(w.PT_BINARY, w.PR_RTF_COMPRESSED, w.stored_rtf(rtf)))),
    )

    message = parse_email(mail(None, tnef))

    assert message.text == "Hello team,\n\nthe total is 12\tEUR"
    assert message.html is None


def test_embedded_message_becomes_eml():
    inner = w.stream(
        w.header(),
        w.attribute(w.MESSAGE, w.ATT_MAPI_PROPS, w.properties(
            w.Prop(w.PT_UNICODE, w.PR_SUBJECT, "Angebot Nr. 7"),
            w.Prop(w.PT_UNICODE, w.PR_SENDER_NAME, "Müller, Jan"),
            w.Prop(w.PT_UNICODE, w.PR_SENDER_EMAIL_ADDRESS, "jan@example.de"),
            w.Prop(w.PT_SYSTIME, w.PR_CLIENT_SUBMIT_TIME, w.windows_filetime(2026, 3, 2, 9, 30)),
            w.Prop(w.PT_UNICODE, w.PR_BODY, "Das Angebot liegt bei."),
        )),
        w.file_attachment(PDF, props=(w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "Angebot\r\n.pdf"),)),
    )
    tnef = w.stream(
        w.header(),
        w.file_attachment(b"", legacy_data=False, props=(
            w.Prop(w.PT_UNICODE, w.PR_DISPLAY_NAME, "Angebot Nr. 7"),
            w.Prop(w.PT_LONG, w.PR_ATTACH_METHOD, 5),
            w.Prop(w.PT_OBJECT, w.PR_ATTACH_DATA, w.IID_IMESSAGE + inner),
        )),
    )

    [forwarded] = parse_email(mail("Forwarding the offer.", tnef)).attachments

    assert forwarded.filename == "Angebot Nr. 7.eml"
    assert forwarded.content_type == "message/rfc822"
    embedded = email.message_from_bytes(forwarded.data, policy=email.policy.default)
    assert embedded["Subject"] == "Angebot Nr. 7"
    assert embedded["From"].addresses[0].addr_spec == "jan@example.de"
    assert embedded["From"].addresses[0].display_name == "Müller, Jan"
    assert embedded["Date"].datetime.isoformat() == "2026-03-02T09:30:00+00:00"
    assert embedded.get_body(("plain",)).get_content().strip() == "Das Angebot liegt bei."
    [pdf] = list(embedded.iter_attachments())
    assert pdf.get_filename() == "Angebot.pdf"
    assert pdf.get_content() == PDF


def test_deeply_embedded_messages_stay_an_attachment():
    tnef = w.stream(w.header(), w.attribute(w.MESSAGE, w.ATT_BODY, b"innermost\x00"))
    for _ in range(12):
        tnef = w.stream(
            w.header(),
            w.file_attachment(b"", legacy_data=False, props=(
                w.Prop(w.PT_LONG, w.PR_ATTACH_METHOD, 5),
                w.Prop(w.PT_OBJECT, w.PR_ATTACH_DATA, w.IID_IMESSAGE + tnef),
            )),
        )

    [kept] = parse_email(mail("Hello", tnef)).attachments

    assert kept.filename == "winmail.dat"


def rich_stream() -> bytes:
    """Return a stream with every kind of content the reader handles."""
    inner = w.stream(w.header(), w.attribute(w.MESSAGE, w.ATT_BODY, b"inner body\x00"))
    return w.stream(
        w.header(),
        w.attribute(w.MESSAGE, w.ATT_MAPI_PROPS, w.properties(
            w.Prop(w.PT_UNICODE, w.PR_BODY, "body"),
            w.Prop(w.PT_BINARY, w.PR_RTF_COMPRESSED, w.compress_rtf(ENCAPSULATED_HTML)),
        )),
        w.file_attachment(b"data" * 20, title=b"a.txt", props=(
            w.Prop(w.PT_STRING8, 0x8005, b"named", name="Keywords"),
            w.Prop(w.PT_UNICODE, w.PR_ATTACH_LONG_FILENAME, "long name.txt"),
        )),
        w.file_attachment(b"", legacy_data=False, props=(
            w.Prop(w.PT_LONG, w.PR_ATTACH_METHOD, 5),
            w.Prop(w.PT_OBJECT, w.PR_ATTACH_DATA, w.IID_IMESSAGE + inner),
        )),
    )


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_stream_raises_only_tnef_error(data):
    stream = bytearray(rich_stream())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(6, len(stream) - 1))
        stream[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(6, len(stream)))

    try:
        read_tnef(bytes(stream[:cut]))
    except TnefError:
        pass

    message = parse_email(mail("Hello", bytes(stream[:cut])))
    assert message.text == "Hello"


def test_read_tnef_rejects_other_bytes():
    with pytest.raises(TnefError, match="signature"):
        read_tnef(b"PK\x03\x04 a zip file")


def test_compressed_rtf_round_trip_uses_references():
    rtf = b"{\\rtf1\\ansi\\ansicpg1252\\pard hello hello hello world\\par\\par}"
    compressed = w.compress_rtf(rtf)

    assert len(compressed) < 16 + len(rtf)
    assert decompress_rtf(compressed) == rtf


def test_stored_rtf_is_returned_as_is():
    assert decompress_rtf(w.stored_rtf(b"{\\rtf1 x}")) == b"{\\rtf1 x}"


@pytest.mark.parametrize("value", [b"short", struct.pack("<IIII", 12, 0, 0x12345678, 0)])
def test_unreadable_compressed_rtf_raises(value):
    with pytest.raises(TnefError):
        decompress_rtf(value)


@pytest.mark.parametrize(
    ("rtf", "expected"),
    [
        (b"{\\rtf1\\ansi\\ansicpg1251 \\'cf\\'f0\\'e8\\'e2\\'e5\\'f2}", "Привет"),
        (b"{\\rtf1\\ansi\\uc2 caf\\u233\\'65\\'65 ok}", "café ok"),
        (b"{\\rtf1\\ansi \\u-10179?\\u-8704?}", "😀"),
        (b"{\\rtf1 a\\~b\\{c\\}d\\\\e}", "a\u00a0b{c}d\\e"),
        (b"{\\rtf1 visible{\\*\\unknown hidden}{\\info{\\title hidden}} too}", "visible too"),
    ],
)
def test_rtf_text_conversion(rtf, expected):
    assert rtf_to_html_or_text(rtf) == (None, expected)
