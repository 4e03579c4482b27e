"""Files in outbound email: MIME structure, file names and types, and the reply limits."""

from __future__ import annotations

import email
import email.policy

import pytest

from channels.email.smtp import (
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    SmtpSettings,
    UnreadableAttachment,
    attachment_type,
    build_mime,
    check_attachments,
    safe_filename,
)
from channels.types import Address, AddressKind, Attachment, OutboundMessage

SETTINGS = SmtpSettings(host="127.0.0.1", port=2525, from_address="support@shop.example")


def _message(**changes) -> OutboundMessage:
    fields = {
        "to": Address(AddressKind.EMAIL, "alice@customer.example"),
        "text": "Your invoice is attached.",
        "subject": "Re: Invoice [#3]",
        "message_id": "sb.1@shop.example",
        "in_reply_to": "a1@customer.example",
        "references": ["a1@customer.example"],
    }
    fields.update(changes)
    return OutboundMessage(**fields)


def _parsed(message: OutboundMessage) -> email.message.EmailMessage:
    return email.message_from_bytes(build_mime(message, SETTINGS).as_bytes(), policy=email.policy.default)


def test_html_reply_keeps_alternative_beside_files():
    parsed = _parsed(_message(
        html="<p>Your invoice is attached.</p>",
        attachments=[Attachment("invoice.pdf", "application/pdf", b"%PDF-1.4")],
    ))

    assert parsed.get_content_type() == "multipart/mixed"
    body, invoice = parsed.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in body.iter_parts()] == ["text/plain", "text/html"]
    assert invoice.get_filename() == "invoice.pdf"
    assert invoice.get_param("name") == "invoice.pdf"
    assert parsed["In-Reply-To"] == "<a1@customer.example>"
    assert parsed["References"] == "<a1@customer.example>"


def test_reply_without_files_stays_single_part():
    parsed = _parsed(_message())

    assert parsed.get_content_type() == "text/plain"


def test_unreadable_attachment_rejects_build():
    message = _message(attachments=[UnreadableAttachment("label.png", "image/png", b"", reason="file missing")])

    with pytest.raises(ValueError, match="'label.png' cannot be read: file missing"):
        build_mime(message, SETTINGS)


def test_file_name_loses_control_characters():
    parsed = _parsed(_message(attachments=[Attachment("../a\r\nb.txt", "text/plain", b"x")]))

    [_, part] = parsed.iter_parts()
    assert part.get_filename() == ".._a__b.txt"


@pytest.mark.parametrize(
    ("content_type", "filename", "expected"),
    [
        ("application/pdf", "x.bin", ("application", "pdf")),
        ("Text/Plain; charset=utf-8", "notes.txt", ("text", "plain")),
        ("application/octet-stream", "invoice.pdf", ("application", "pdf")),
        ("", "label.png", ("image", "png")),
        ("not a type", "archive", ("application", "octet-stream")),
        ("message/rfc822", "mail.eml", ("application", "octet-stream")),
        ("multipart/mixed", "parts", ("application", "octet-stream")),
    ],
)
def test_attachment_type_cases(content_type, filename, expected):
    assert attachment_type(content_type, filename) == expected


def test_safe_filename_falls_back():
    assert safe_filename("  ") == "attachment"
    assert safe_filename("Facture é.pdf") == "Facture é.pdf"


def test_check_attachments_limits():
    check_attachments([("a.pdf", MAX_ATTACHMENT_BYTES)])
    check_attachments([(f"{index}.txt", 1) for index in range(MAX_ATTACHMENTS)])

    with pytest.raises(ValueError, match=f"at most {MAX_ATTACHMENTS}"):
        check_attachments([(f"{index}.txt", 1) for index in range(MAX_ATTACHMENTS + 1)])
    with pytest.raises(ValueError, match="at most 15 MB of files"):
        check_attachments([("a.pdf", MAX_ATTACHMENT_BYTES), ("b.pdf", 1)])
    with pytest.raises(ValueError, match="'empty.txt' is empty"):
        check_attachments([("empty.txt", 0)])
