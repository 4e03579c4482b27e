"""Regression tests for threading and bounce abuse: strangers must not redirect a customer's mail."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from channels.email.parse import parse_email
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import ContactIdentity, Conversation, Message, utcnow
from inbox.replies import create_reply

SUPPORT = "support@shop.example"
ALICE = "alice@customer.example"
BOB = "bob@customer.example"
EVE = "eve@attacker.example"


def _settings() -> dict:
    return {
        "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": "x", "imap_password": "x",
        "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
    }


@pytest.fixture
def channel_id(state) -> int:
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Shop", SUPPORT, _settings())
        session.commit()
        return channel.id


def _mail(sender: str, subject: str, body: str, message_id: str, to: str = SUPPORT, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id}>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


def _ingest(state, channel_id: int, raw: bytes):
    with state.session_factory() as session:
        return ingest_message(session, channel_id, parse_email(raw))


def _reply(state, agent, conversation_id: int) -> str:
    with state.session_factory() as session:
        message = create_reply(session, conversation_id, agent.id, "Here is your answer.")
        session.commit()
        return message.rfc_message_id


def _resolve(state, conversation_id: int, days_ago: int) -> None:
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        conversation.status = "resolved"
        conversation.last_message_at = utcnow() - timedelta(days=days_ago)
        session.commit()


def _owner(state, message_id: str) -> str:
    with state.session_factory() as session:
        message = session.scalar(select(Message).where(Message.rfc_message_id == message_id))
        return message.conversation.contact.identities[0].value


def _delivery_report(sender: str, failed_recipient: str, our_message_id: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: Undelivered\r\nMessage-ID: <dsn-{our_message_id}>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        "--r\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        f"Final-Recipient: rfc822; {failed_recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{our_message_id}>\r\n\r\n--r--\r\n"
    ).encode()


def test_follow_up_of_another_customer_gets_no_mail(state, agent, channel_id):
    first = _ingest(state, channel_id, _mail(ALICE, "Invoice 42", "Where is my invoice?", "a1@customer.example"))
    our_reply = _reply(state, agent, first.conversation_id)
    _resolve(state, first.conversation_id, days_ago=30)
    # Bob, who was forwarded our reply, answers it after the reopen window.
    _ingest(state, channel_id, _mail(BOB, "Re: Invoice 42", "Forwarded to me", "b1@customer.example",
                                     In_Reply_To=f"<{our_reply}>"))

    _ingest(state, channel_id, _mail(ALICE, "Re: Invoice 42 [#1]", "Private follow-up", "a2@customer.example"))

    assert _owner(state, "b1@customer.example") == BOB
    assert _owner(state, "a2@customer.example") == ALICE


def test_reference_into_another_mailbox_starts_new_conversation(state, agent, channel_id):
    with state.session_factory() as session:
        other = add_channel(session, "email", "Other brand", "help@other.example", _settings())
        session.commit()
        other_id = other.id
    first = _ingest(state, channel_id, _mail(ALICE, "Secret", "Brand A issue", "a1@customer.example"))
    our_reply = _reply(state, agent, first.conversation_id)

    result = _ingest(state, other_id, _mail(EVE, "Hello", "x", "e1@attacker.example", to="help@other.example",
                                            In_Reply_To=f"<{our_reply}>"))

    with state.session_factory() as session:
        assert session.get(Message, result.message_id).conversation.channel_id == other_id


def test_bounce_naming_another_recipient_marks_nothing(state, agent, channel_id):
    first = _ingest(state, channel_id, _mail(ALICE, "Help", "hi", "a1@customer.example"))
    our_reply = _reply(state, agent, first.conversation_id)

    _ingest(state, channel_id, _delivery_report(EVE, EVE, our_reply))

    with state.session_factory() as session:
        reply = session.scalar(select(Message).where(Message.rfc_message_id == our_reply))
        assert reply.delivery_status != "undelivered"
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.value == ALICE))
        assert identity.failing_since is None


def test_postmaster_in_display_name_is_a_person(state, channel_id):
    result = _ingest(state, channel_id, _mail(f'"postmaster@customer.example" <{ALICE}>', "Hi", "hello",
                                              "a1@customer.example"))

    with state.session_factory() as session:
        assert session.get(Message, result.message_id).automatic is None


def test_customer_mail_reusing_our_message_id_is_kept(state, agent, channel_id):
    first = _ingest(state, channel_id, _mail(ALICE, "Help", "hi", "a1@customer.example"))
    our_reply = _reply(state, agent, first.conversation_id)

    result = _ingest(state, channel_id, _mail(ALICE, "Re: Help", "My client resent your id", our_reply))

    assert not result.duplicate


def test_over_long_in_reply_to_is_stored(state, channel_id):
    result = _ingest(state, channel_id, _mail(ALICE, "Long", "x", "a1@customer.example",
                                              In_Reply_To="<" + "x" * 1500 + "@example.com>"))
    assert result.message_id is not None
