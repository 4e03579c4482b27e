"""Files in email replies: accepted by the API, sent over real SMTP as multipart/mixed, shown in the thread."""

from __future__ import annotations

import email
import email.policy
import io
import re
import threading
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from channels.email.smtp import MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS
from gateway.workers import OutboxDispatcher
from inbox.models import Attachment, Message
from inbox.storage import attachment_store
from tests.gateway.conftest import SUPPORT, import_mailbox

INVOICE = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
LABEL = b"\x89PNG\r\n\x1a\n" + bytes(reversed(range(256))) * 12
# A name with letters outside ASCII and a character outside Latin-1, so RFC 2231 is needed.
LABEL_NAME = "Étiquette d’expédition №7.png"


@pytest.fixture
def conversation_id(state, mailbox, email_channel) -> int:
    mail = EmailMessage()
    mail["From"] = "Alice <alice@customer.example>"
    mail["To"] = SUPPORT
    mail["Subject"] = "Invoice and label"
    mail["Message-ID"] = "<order-7@customer.example>"
    mail.set_content("Could you send me the invoice and the shipping label?")
    mailbox.append(mail.as_bytes())
    assert import_mailbox(state, email_channel) == 1
    with state.session_factory() as session:
        return session.scalar(select(Message.conversation_id))


def _post_reply(app, api_token, conversation_id: int, text: str, files: list[tuple[bytes, str, str]]):
    form = {"text": text, "attachments": [(io.BytesIO(data), name, content_type) for data, name, content_type in files]}
    return app.test_client().post(
        f"/api/v1/conversations/{conversation_id}/messages", data=form,
        headers={"Authorization": f"Bearer {api_token}"}, content_type="multipart/form-data",
    )


def _attachment_count(state) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Attachment))


def test_reply_files_reach_smtp_as_mixed_parts(app, state, api_token, smtp, conversation_id):
    response = _post_reply(app, api_token, conversation_id, "Here are your invoice and label.", [
        (INVOICE, "invoice-7.pdf", "application/pdf"),
        (LABEL, LABEL_NAME, "image/png"),
    ])
    assert response.status_code == 201, response.get_json()
    reply = response.get_json()
    assert [a["filename"] for a in reply["attachments"]] == ["invoice-7.pdf", LABEL_NAME]
    assert [a["status"] for a in reply["attachments"]] == ["stored", "stored"]

    OutboxDispatcher(state, threading.Event()).dispatch_due()
    (sent,) = smtp.wait_for(1)
    received = email.message_from_bytes(sent.raw, policy=email.policy.default)

    # The threading headers are those of a reply without files.
    assert received["In-Reply-To"] == "<order-7@customer.example>"
    assert received["References"] == "<order-7@customer.example>"
    assert received["Subject"] == f"Re: Invoice and label [#{conversation_id}]"
    assert received.get_content_type() == "multipart/mixed"

    body, *files = received.iter_parts()
    assert body.get_content_type() == "text/plain"
    assert body.get_content().strip() == "Here are your invoice and label."
    assert [part.get_filename() for part in files] == ["invoice-7.pdf", LABEL_NAME]
    assert [part.get_content_type() for part in files] == ["application/pdf", "image/png"]
    assert [part.get_content_disposition() for part in files] == ["attachment", "attachment"]
    assert [part.get_payload(decode=True) for part in files] == [INVOICE, LABEL]

    # The non-ASCII name goes as an RFC 2231 parameter, and the mail is all ASCII.
    raw = sent.raw.decode("ascii")
    assert re.search(r"filename\*(0\*)?=utf-8''%C3%89tiquette", raw)

    with state.session_factory() as session:
        message = session.get(Message, reply["id"])
        assert message.delivery_status == "sent"
        assert message.subject == received["Subject"]


def test_reply_files_served_like_inbound_ones(app, api_token, smtp, conversation_id):
    response = _post_reply(app, api_token, conversation_id, "", [(LABEL, LABEL_NAME, "image/png")])
    assert response.status_code == 201, response.get_json()
    [attachment] = response.get_json()["attachments"]

    download = app.test_client().get(attachment["url"], headers={"Authorization": f"Bearer {api_token}"})

    assert download.status_code == 200
    assert download.data == LABEL
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''" in download.headers["Content-Disposition"]
    assert download.headers["X-Content-Type-Options"] == "nosniff"


def test_reply_with_too_many_files_rejected(app, state, api_token, conversation_id):
    files = [(b"line %d\n" % index, f"note-{index}.txt", "text/plain") for index in range(MAX_ATTACHMENTS + 1)]

    response = _post_reply(app, api_token, conversation_id, "Notes", files)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "attachments"
    assert f"at most {MAX_ATTACHMENTS}" in error["message"]
    assert _attachment_count(state) == 0


def test_reply_with_too_many_bytes_rejected(app, state, api_token, conversation_id):
    half = b"\x00" * (MAX_ATTACHMENT_BYTES // 2 + 1)

    response = _post_reply(app, api_token, conversation_id, "Scans", [
        (half, "scan-1.pdf", "application/pdf"), (half, "scan-2.pdf", "application/pdf"),
    ])

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "attachments"
    assert "at most 15 MB" in error["message"]
    assert _attachment_count(state) == 0


def test_reply_with_empty_file_rejected(app, state, api_token, conversation_id):
    response = _post_reply(app, api_token, conversation_id, "Label", [(b"", "label.png", "image/png")])

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "attachments"
    assert "'label.png' is empty" in error["message"]


def test_reply_with_lost_file_fails_with_reason(app, state, api_token, smtp, conversation_id):
    response = _post_reply(app, api_token, conversation_id, "Invoice", [(INVOICE, "invoice-7.pdf", "application/pdf")])
    assert response.status_code == 201, response.get_json()
    reply_id = response.get_json()["id"]
    with state.session_factory() as session:
        [row] = session.scalars(select(Attachment)).all()
        attachment_store(session).path(row.storage_key).unlink()

    OutboxDispatcher(state, threading.Event()).dispatch_due()

    assert smtp.received == []
    with state.session_factory() as session:
        message = session.get(Message, reply_id)
        assert message.delivery_status == "failed"
        assert "invoice-7.pdf" in message.delivery_error
        assert "missing from the attachment folder" in message.delivery_error
