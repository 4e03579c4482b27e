"""Email end to end: real Dovecot in, real SMTP out, threading, restarts and outages."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy import func, select

from gateway.workers import OutboxDispatcher, Workers
from inbox.channel_config import add_channel
from inbox.models import Channel, Conversation, Message, OutboxItem, utcnow
from inbox.replies import create_reply
from tests.channels.test_email_tnef import PDF as TNEF_PDF
from tests.channels.test_email_tnef import mail as tnef_mail
from tests.channels.test_email_tnef import two_files as tnef_two_files
from tests.gateway.conftest import SUPPORT, import_mailbox
from tests.support.dovecot import DovecotServer



def _mail(sender: str, subject: str, body: str, message_id: str | None, in_reply_to: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    if message_id:
        message["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
        message["References"] = f"<{in_reply_to}>"
    message.set_content(body)
    return message.as_bytes()


def _threads(state) -> list[list[str]]:
    with state.session_factory() as session:
        conversations = session.scalars(select(Conversation).order_by(Conversation.id)).all()
        return [[m.text.strip() for m in c.messages] for c in conversations]


def _message_count(state) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Message))


def _reply(state, agent, conversation_id: int, text: str) -> int:
    with state.session_factory() as session:
        message = create_reply(session, conversation_id, agent.id, text)
        session.commit()
        return message.id


def _make_due(state) -> None:
    with state.session_factory() as session:
        for item in session.scalars(select(OutboxItem).where(OutboxItem.status == "pending")):
            item.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.commit()


def test_reply_threading_across_imap_and_smtp(state, agent, mailbox, smtp, email_channel):
    mailbox.append(_mail("Alice <alice@customer.example>", "Broken kettle", "My kettle leaks.", "a1@customer.example"))
    assert import_mailbox(state, email_channel) == 1

    reply_id = _reply(state, agent, 1, "Sorry to hear that! Could you send a photo?")
    OutboxDispatcher(state, threading.Event()).dispatch_due()
    (sent,) = smtp.wait_for(1)
    assert sent.message["In-Reply-To"] == "<a1@customer.example>"
    assert sent.message["References"] == "<a1@customer.example>"
    assert sent.message["Subject"] == "Re: Broken kettle [#1]"
    assert sent.rcpt_tos == ("alice@customer.example",)
    our_id = sent.message["Message-ID"].strip("<>")
    with state.session_factory() as session:
        stored = session.get(Message, reply_id)
        assert stored.rfc_message_id == our_id
        assert stored.delivery_status == "sent"

    mailbox.append(_mail("alice@customer.example", "Re: Broken kettle", "Here is the photo.", "a2@customer.example", our_id))
    mailbox.append(_mail("Bob <bob@other.example>", "Invoice", "Please send my invoice.", "b1@other.example"))
    assert import_mailbox(state, email_channel) == 2

    assert _threads(state) == [
        ["My kettle leaks.", "Sorry to hear that! Could you send a photo?", "Here is the photo."],
        ["Please send my invoice."],
    ]

    # A restarted reader resumes from the checkpoint and imports nothing twice.
    assert import_mailbox(state, email_channel) == 0
    assert _message_count(state) == 4


def test_mail_without_message_id_is_imported_once(state, mailbox, email_channel):
    mailbox.append(_mail("carol@customer.example", "No id", "This mail has no Message-ID.", None))
    assert import_mailbox(state, email_channel) == 1

    # Even when the checkpoint is lost, the content hash recognises the mail.
    with state.session_factory() as session:
        from inbox.models import MailboxCheckpoint

        session.query(MailboxCheckpoint).delete()
        session.commit()
    assert import_mailbox(state, email_channel) == 0
    assert _message_count(state) == 1


def test_uidvalidity_change_resyncs_without_duplicates(state, mailbox, email_channel):
    mailbox.append(_mail("dan@customer.example", "One", "first", "d1@customer.example"))
    mailbox.append(_mail("dan@customer.example", "Two", "second", "d2@customer.example"))
    assert import_mailbox(state, email_channel) == 2

    mailbox.set_uidvalidity(int(time.time()) + 12345)
    mailbox.append(_mail("dan@customer.example", "Three", "third", "d3@customer.example"))

    assert import_mailbox(state, email_channel) == 1
    assert _message_count(state) == 3


def test_reply_stays_queued_while_smtp_is_down(state, agent, mailbox, smtp, email_channel):
    mailbox.append(_mail("erin@customer.example", "Refund", "Where is my refund?", "e1@customer.example"))
    import_mailbox(state, email_channel)
    reply_id = _reply(state, agent, 1, "The refund left today.")
    dispatcher = OutboxDispatcher(state, threading.Event())

    smtp.stop()
    dispatcher.dispatch_due()
    with state.session_factory() as session:
        item = session.scalar(select(OutboxItem))
        assert (item.status, item.attempts) == ("pending", 1)
        assert item.last_error
        assert session.get(Message, reply_id).delivery_status == "queued"

    smtp.start()
    _make_due(state)
    dispatcher.dispatch_due()
    _make_due(state)
    dispatcher.dispatch_due()

    assert len(smtp.wait_for(1)) == 1
    assert len(smtp.received) == 1
    with state.session_factory() as session:
        assert session.scalar(select(OutboxItem.status)) == "sent"
        assert session.get(Message, reply_id).delivery_status == "sent"


def test_rejected_recipient_fails_with_reason(state, agent, mailbox, smtp, email_channel):
    mailbox.append(_mail("frank@customer.example", "Hi", "Hello", "f1@customer.example"))
    import_mailbox(state, email_channel)
    smtp.reject_recipient("frank@customer.example")
    reply_id = _reply(state, agent, 1, "Hello Frank")

    OutboxDispatcher(state, threading.Event()).dispatch_due()

    with state.session_factory() as session:
        message = session.get(Message, reply_id)
        assert message.delivery_status == "failed"
        assert "550" in message.delivery_error
    assert smtp.received == []


def test_running_workers_import_new_mail(state, mailbox, email_channel):
    workers = Workers(state)
    workers.start()
    try:
        mailbox.append(_mail("gina@customer.example", "Live", "Arrives while the reader idles.", "g1@customer.example"))
        deadline = time.monotonic() + 30
        while _message_count(state) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        workers.stop(timeout=2)

    assert _threads(state) == [["Arrives while the reader idles."]]


def test_reader_polls_a_server_without_idle(config, tmp_path):
    from dataclasses import replace

    from gateway import create_app, get_state

    state = get_state(create_app(replace(config, imap_poll_interval=0.2)))
    # Advertise no IDLE, so the reader must poll.
    with DovecotServer(username=SUPPORT, extra_config="imap_capability = IMAP4rev1 UIDPLUS") as plain:
        with state.session_factory() as session:
            channel = add_channel(
                session, "email", "Polled", SUPPORT,
                {
                    "imap_host": plain.host, "imap_port": plain.port, "imap_username": plain.username,
                    "imap_password": plain.password, "imap_ssl": False,
                    "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
                },
            )
            session.commit()
        workers = Workers(state)
        workers.start()
        try:
            plain.append(_mail("hana@customer.example", "Polling", "Found by a poll.", "h1@customer.example"))
            deadline = time.monotonic() + 30
            while _message_count(state) == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            workers.stop(timeout=2)
    state.engine.dispose()

    assert channel.id == 1
    assert _threads(state) == [["Found by a poll."]]


def _deeply_nested(depth: int) -> bytes:
    parts = [b"From: mallory@attacker.example\r\nMessage-ID: <deep@attacker.example>\r\n"
             b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    for level in range(depth):
        parts.append(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (level, level + 1))
    return b"".join(parts)


def test_hostile_mail_is_kept_and_does_not_block_mailbox(state, mailbox, email_channel):
    from inbox.models import MailboxCheckpoint, RawPayload

    mailbox.append(_mail("ivy@customer.example", "Before", "before the bad one", "i1@customer.example"))
    mailbox.append(_deeply_nested(3000))
    last_uid = mailbox.append(_mail("ivy@customer.example", "After", "after the bad one", "i2@customer.example"))

    assert import_mailbox(state, email_channel) == 2

    assert _threads(state) == [["before the bad one"], ["after the bad one"]]
    with state.session_factory() as session:
        failed = session.scalars(select(RawPayload).where(RawPayload.status == "failed")).all()
        assert len(failed) == 1
        assert "RecursionError" in failed[0].error
        assert session.scalar(select(MailboxCheckpoint.last_uid)) == last_uid


def test_stranger_cannot_join_a_customer_thread_by_message_id(state, mailbox, email_channel):
    mailbox.append(_mail("alice@customer.example", "Order", "My order", "a1@customer.example"))
    mailbox.append(_mail("eve@attacker.example", "Re: Order", "Let me in", "e1@attacker.example", "a1@customer.example"))
    mailbox.append(_mail("alice@customer.example", "Re: Order", "Any news?", "a2@customer.example", "a1@customer.example"))

    import_mailbox(state, email_channel)

    assert _threads(state) == [["My order", "Any news?"], ["Let me in"]]


def test_reused_message_id_from_another_sender_keeps_both(state, mailbox, email_channel):
    mailbox.append(_mail("eve@attacker.example", "Squat", "sent first with a copied id", "next@customer.example"))
    mailbox.append(_mail("alice@customer.example", "Real", "the real mail", "next@customer.example"))

    assert import_mailbox(state, email_channel) == 2

    assert sorted(text for thread in _threads(state) for text in thread) == [
        "sent first with a copied id", "the real mail",
    ]


def test_oversize_mail_is_imported_as_a_note(state, mailbox, email_channel):
    with state.session_factory() as session:
        channel = session.get(Channel, email_channel.id)
        channel.settings = {**channel.settings, "max_message_bytes": 100_000}
        session.commit()
        session.refresh(channel)
        session.expunge(channel)
    big = EmailMessage()
    big["From"] = "jane@customer.example"
    big["To"] = SUPPORT
    big["Subject"] = "Photos of the damage"
    big["Message-ID"] = "<big@customer.example>"
    big.set_content("See the attached photos.")
    big.add_attachment(bytes(300_000), maintype="image", subtype="jpeg", filename="damage.jpg")
    mailbox.append(_mail("jane@customer.example", "Before", "small one", "j1@customer.example"))
    mailbox.append(big.as_bytes())
    mailbox.append(_mail("jane@customer.example", "After", "another small one", "j2@customer.example"))

    assert import_mailbox(state, channel) == 3

    with state.session_factory() as session:
        stub = session.scalar(select(Message).where(Message.rfc_message_id == "big@customer.example"))
        assert stub.subject == "Photos of the damage"
        assert "import limit" in stub.text
        assert stub.attachments == []
        assert len(stub.raw_payload.body) < 100_000


def test_mailbox_health_in_the_api(app, state, api_token, mailbox, email_channel):
    mailbox.append(_mail("kim@customer.example", "Hi", "hello", "k1@customer.example"))
    import_mailbox(state, email_channel)

    response = app.test_client().get("/api/v1/channels", headers={"Authorization": f"Bearer {api_token}"})

    (item,) = response.json["items"]
    assert item["last_sync_at"] is not None
    assert item["last_error"] is None
    assert 0 <= item["sync_lag_seconds"] < 3600


def test_winmail_dat_imports_as_its_files(app, state, api_token, mailbox, email_channel):
    mailbox.append(tnef_mail("See the invoice.", tnef_two_files()))

    assert import_mailbox(state, email_channel) == 1

    headers = {"Authorization": f"Bearer {api_token}"}
    client = app.test_client()
    [conversation] = client.get("/api/v1/conversations", headers=headers).get_json()["items"]
    thread = client.get(f"/api/v1/conversations/{conversation['id']}", headers=headers).get_json()
    [message] = thread["messages"]
    assert message["text"] == "See the invoice."
    listed = {item["filename"]: item for item in message["attachments"]}
    assert set(listed) == {"Rechnung März 2026.pdf", "Beträge.csv"}
    pdf = client.get(listed["Rechnung März 2026.pdf"]["url"], headers=headers)
    assert pdf.status_code == 200
    assert pdf.data == TNEF_PDF
    assert listed["Rechnung März 2026.pdf"]["size"] == len(TNEF_PDF)
