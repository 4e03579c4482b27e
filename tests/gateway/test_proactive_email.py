"""A proactive update by email, received by a real SMTP server (aiosmtpd) on loopback.

The customer's mail is parsed and ingested as the IMAP reader would. The update must thread
under it like an agent reply, so In-Reply-To and References name the customer's Message-ID.
"""

from __future__ import annotations

import threading
from email.message import EmailMessage

import pytest
from sqlalchemy import select, update

from channels.email.parse import parse_email
from gateway.workers import OutboxDispatcher
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import Agent, Channel, ContactIdentity, Conversation, ProactiveSend, SatisfactionAnswer, utcnow
from inbox.proactive.sending import sweep
from inbox.workflow import Changes, change_conversation
from tests.support.proactive import add_template, settings
from tests.support.smtp_server import SmtpTestServer

SUPPORT = "support@shop.example"
ALICE = "alice@customer.example"


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def mail_channel(state, smtp) -> Channel:
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop Support", SUPPORT,
            {
                # Nothing reads this mailbox in these tests; only the SMTP side is used.
                "imap_host": "127.0.0.1", "imap_port": 1, "imap_username": SUPPORT, "imap_password": "unused",
                "imap_ssl": False, "smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_security": "none",
            },
        )
        session.commit()
        return channel


def receive_mail(state, channel: Channel, message_id: str, references: str | None = None) -> int:
    mail = EmailMessage()
    mail["From"] = f"Alice <{ALICE}>"
    mail["To"] = SUPPORT
    mail["Subject"] = "Order 1042 missing"
    mail["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    mail["Message-ID"] = f"<{message_id}>"
    if references:
        mail["References"] = references
    mail.set_content("My order has not arrived.")
    with state.session_factory() as session:
        result = ingest_message(session, channel.id, parse_email(mail.as_bytes()))
    return result.conversation_id


def resolve_to_pending(state, agent, conversation_id: int) -> None:
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, agent.id), conversation_id, Changes(status="pending"))
        session.commit()


def test_email_update_threads_under_customer_mail(state, agent, mail_channel, smtp):
    add_template(
        state, "status_changed", {"to_status": "pending"},
        email_subject="We need one detail from you",
        email_body="Hello {{ customer_name }}, please send us your order number.",
    )
    conversation_id = receive_mail(state, mail_channel, "first@customer.example")
    resolve_to_pending(state, agent, conversation_id)

    report = sweep(state.session_factory, settings(), utcnow())
    OutboxDispatcher(state, threading.Event()).dispatch_due()

    assert report.results == {"queued": 1}
    [mail] = smtp.wait_for(1)
    message = mail.message
    assert mail.rcpt_tos == (ALICE,)
    assert message["In-Reply-To"] == "<first@customer.example>"
    assert message["References"] == "<first@customer.example>"
    assert message["Subject"] == f"We need one detail from you [#{conversation_id}]"
    assert message["Reply-To"].startswith(f"support+c{conversation_id}.")
    assert "Hello Alice, please send us your order number." in message.get_content()
    with state.session_factory() as session:
        [row] = session.scalars(select(ProactiveSend)).all()
        assert row.channel == "email"
        assert row.message.rfc_message_id == message["Message-ID"].strip("<>")


def test_subject_reference_is_not_repeated(state, agent, mail_channel, smtp):
    add_template(
        state, "status_changed", {"to_status": "pending"}, email_subject="We need a word from you on {{ reference }}",
    )
    conversation_id = receive_mail(state, mail_channel, "first@customer.example")
    resolve_to_pending(state, agent, conversation_id)

    sweep(state.session_factory, settings(), utcnow())
    OutboxDispatcher(state, threading.Event()).dispatch_due()

    [mail] = smtp.wait_for(1)
    assert mail.message["Subject"] == f"We need a word from you on [#{conversation_id}]"


def test_email_update_keeps_references_chain(state, agent, mail_channel, smtp):
    add_template(state, "status_changed", {"to_status": "pending"}, email_subject="")
    conversation_id = receive_mail(state, mail_channel, "first@customer.example")
    receive_mail(state, mail_channel, "second@customer.example", references="<first@customer.example>")
    resolve_to_pending(state, agent, conversation_id)

    sweep(state.session_factory, settings(), utcnow())
    OutboxDispatcher(state, threading.Event()).dispatch_due()

    [mail] = smtp.wait_for(1)
    assert mail.message["In-Reply-To"] == "<second@customer.example>"
    assert mail.message["References"].split() == ["<first@customer.example>", "<second@customer.example>"]
    # Without a template subject the update keeps the thread's own.
    assert mail.message["Subject"] == f"Re: Order 1042 missing [#{conversation_id}]"


def test_failing_address_skipped(state, agent, mail_channel, smtp):
    add_template(state, "status_changed", {"to_status": "pending"})
    conversation_id = receive_mail(state, mail_channel, "first@customer.example")
    with state.session_factory() as session:
        session.execute(update(ContactIdentity).values(failing_since=utcnow(), failure_reason="550 no such user"))
        session.commit()
    resolve_to_pending(state, agent, conversation_id)

    report = sweep(state.session_factory, settings(), utcnow())

    assert report.results == {"skipped": 1}
    with state.session_factory() as session:
        [row] = session.scalars(select(ProactiveSend)).all()
        assert row.reason.startswith("failing_address:")
        assert session.get(Conversation, conversation_id).messages[-1].direction == "inbound"
    assert smtp.received == []


def test_quoted_email_rating_keeps_conversation_resolved(state, agent, mail_channel, smtp):
    add_template(
        state, "resolved", {}, email_subject="How did we do?",
        email_body="Please answer with a rating from 1 to 5.",
    )
    conversation_id = receive_mail(state, mail_channel, "first@customer.example")
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, agent.id), conversation_id, Changes(status="resolved"))
        session.commit()
    sweep(state.session_factory, settings(), utcnow())
    OutboxDispatcher(state, threading.Event()).dispatch_due()
    [question] = smtp.wait_for(1)

    # The customer's client quotes the question under the rating and adds its signature.
    answer = EmailMessage()
    answer["From"] = f"Alice <{ALICE}>"
    answer["To"] = SUPPORT
    answer["Subject"] = f"Re: {question.message['Subject']}"
    answer["Message-ID"] = "<rating@customer.example>"
    answer["In-Reply-To"] = question.message["Message-ID"]
    answer.set_content(
        "5\n\nSent from my iPhone\n\n"
        "On Fri, 4 Dec 2026 at 11:00, Shop Support <support@shop.example> wrote:\n"
        "> Please answer with a rating from 1 to 5.\n"
    )
    with state.session_factory() as session:
        ingest_message(session, mail_channel.id, parse_email(answer.as_bytes()))

    with state.session_factory() as session:
        [stored] = session.scalars(select(SatisfactionAnswer)).all()
        assert (stored.kind, stored.score) == ("rating", 5)
        assert session.get(Conversation, conversation_id).status == "resolved"
