"""Auto-replies, bounces and our own mail coming back, through a real Dovecot and SMTP server."""

from __future__ import annotations

import threading
from email.message import EmailMessage

from sqlalchemy import func, select

from gateway.workers import OutboxDispatcher
from inbox.models import ContactIdentity, Conversation, Event, Message
from inbox.replies import create_reply, may_answer_automatically
from inbox.serialize import conversation_to_dict, message_to_dict
from tests.gateway.conftest import SUPPORT, import_mailbox

CUSTOMER = "alice@customer.example"


def _mail(subject: str, body: str, message_id: str, headers: dict[str, str] | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"Alice <{CUSTOMER}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Date"] = "Sat, 05 Dec 2026 10:00:00 +0000"
    message["Message-ID"] = f"<{message_id}>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes()


def _dsn(our_message_id: str) -> bytes:
    """Return a delivery status notification that returns our mail to CUSTOMER."""
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        f"To: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Sat, 05 Dec 2026 10:05:00 +0000\r\n"
        "Message-ID: <dsn-flow@mx.customer.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n'
        "\r\n"
        "--r\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {CUSTOMER}\r\n"
        "Action: failed\r\nStatus: 5.2.1\r\n"
        "Diagnostic-Code: smtp; 550 5.2.1 Mailbox disabled\r\n\r\n"
        "--r\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {SUPPORT}\r\nTo: {CUSTOMER}\r\nMessage-ID: <{our_message_id}>\r\n\r\n"
        "--r--\r\n"
    ).encode()


def _may_answer(state, conversation_id: int) -> bool:
    with state.session_factory() as session:
        return may_answer_automatically(session, session.get(Conversation, conversation_id))


def _send_reply(state, agent, smtp, conversation_id: int) -> tuple[int, bytes]:
    """Send a reply through the SMTP server; return its id and the bytes the server got."""
    with state.session_factory() as session:
        reply = create_reply(session, conversation_id, agent.id, "Your kettle is on its way.")
        session.commit()
        reply_id = reply.id
    OutboxDispatcher(state, threading.Event()).dispatch_due()
    (sent,) = smtp.wait_for(1)
    return reply_id, sent.message.as_bytes()


def test_normal_mail_may_be_answered(state, mailbox, email_channel):
    mailbox.append(_mail("Broken kettle", "My kettle leaks.", "a1@customer.example"))
    assert import_mailbox(state, email_channel) == 1

    with state.session_factory() as session:
        message = session.scalar(select(Message))
        assert message.automatic is None
        assert message_to_dict(message)["automatic"] is None
        assert conversation_to_dict(message.conversation)["contact"]["failing"] is None
    assert _may_answer(state, 1) is True


def test_out_of_office_is_stored_as_auto_reply(state, mailbox, email_channel):
    mailbox.append(_mail("Broken kettle", "My kettle leaks.", "a1@customer.example"))
    mailbox.append(_mail(
        "Out of office: Broken kettle", "I am away until Monday.", "oof@customer.example",
        {"Auto-Submitted": "auto-replied", "In-Reply-To": "<a1@customer.example>",
         "References": "<a1@customer.example>"},
    ))

    assert import_mailbox(state, email_channel) == 2

    with state.session_factory() as session:
        messages = session.scalars(select(Message).order_by(Message.id)).all()
        assert [m.automatic for m in messages] == [None, "auto_reply"]
        assert messages[1].conversation_id == messages[0].conversation_id
        assert message_to_dict(messages[1])["automatic"] == "auto_reply"
    assert _may_answer(state, 1) is False


def test_bounce_marks_reply_undelivered_and_address_failing(state, agent, mailbox, smtp, email_channel):
    mailbox.append(_mail("Broken kettle", "My kettle leaks.", "a1@customer.example"))
    import_mailbox(state, email_channel)
    reply_id, _ = _send_reply(state, agent, smtp, 1)
    with state.session_factory() as session:
        our_id = session.get(Message, reply_id).rfc_message_id
        assert session.get(Message, reply_id).delivery_status == "sent"

    mailbox.append(_dsn(our_id))
    assert import_mailbox(state, email_channel) == 1

    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Conversation)) == 1
        bounce = session.scalar(select(Message).where(Message.automatic == "bounce"))
        assert bounce.conversation_id == 1
        reply = session.get(Message, reply_id)
        assert reply.delivery_status == "undelivered"
        assert "550 5.2.1 Mailbox disabled" in reply.delivery_error
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.value == CUSTOMER))
        assert identity.failing_since is not None
        assert "Mailbox disabled" in identity.failure_reason
        failing = conversation_to_dict(bounce.conversation)["contact"]["failing"]
        assert failing["reason"] == identity.failure_reason
        # The dispatcher reported "sent" first; the bounce adds the last update.
        update = session.scalar(
            select(Event).where(Event.type == "message.updated").order_by(Event.id.desc()).limit(1)
        )
        assert update.payload["message"]["id"] == reply_id
        assert update.payload["message"]["delivery_status"] == "undelivered"
    assert _may_answer(state, 1) is False


def test_bounce_replayed_changes_nothing(state, agent, mailbox, smtp, email_channel):
    mailbox.append(_mail("Broken kettle", "My kettle leaks.", "a1@customer.example"))
    import_mailbox(state, email_channel)
    reply_id, _ = _send_reply(state, agent, smtp, 1)
    with state.session_factory() as session:
        our_id = session.get(Message, reply_id).rfc_message_id

    mailbox.append(_dsn(our_id))
    mailbox.append(_dsn(our_id))

    assert import_mailbox(state, email_channel) == 1
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.automatic == "bounce")) == 1


def test_bounce_for_unknown_mail_marks_nothing(state, mailbox, email_channel):
    mailbox.append(_mail("Broken kettle", "My kettle leaks.", "a1@customer.example"))
    mailbox.append(_dsn("sb.never-sent@shop.example"))

    assert import_mailbox(state, email_channel) == 2

    with state.session_factory() as session:
        bounce = session.scalar(select(Message).where(Message.automatic == "bounce"))
        assert bounce.conversation_id != 1
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.value == CUSTOMER))
        assert identity.failing_since is None
    assert _may_answer(state, 1) is True


def test_mail_from_customer_clears_failing_address(state, agent, mailbox, smtp, email_channel):
    mailbox.append(_mail("Broken kettle", "My kettle leaks.", "a1@customer.example"))
    import_mailbox(state, email_channel)
    reply_id, _ = _send_reply(state, agent, smtp, 1)
    with state.session_factory() as session:
        our_id = session.get(Message, reply_id).rfc_message_id
    mailbox.append(_dsn(our_id))
    import_mailbox(state, email_channel)

    mailbox.append(_mail("Re: Broken kettle", "My mailbox works again.", "a2@customer.example",
                         {"In-Reply-To": f"<{our_id}>"}))
    assert import_mailbox(state, email_channel) == 1

    with state.session_factory() as session:
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.value == CUSTOMER))
        assert identity.failing_since is None
        assert identity.failure_reason is None
    assert _may_answer(state, 1) is True


def test_own_sent_mail_fetched_back_is_duplicate(state, agent, mailbox, smtp, email_channel):
    mailbox.append(_mail("Broken kettle", "My kettle leaks.", "a1@customer.example"))
    import_mailbox(state, email_channel)
    _, sent_bytes = _send_reply(state, agent, smtp, 1)

    # As when the mailbox keeps a copy of what we sent, or a list echoes it back.
    mailbox.append(sent_bytes)

    assert import_mailbox(state, email_channel) == 0
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2
