"""Email threading end to end: mail read from a real Dovecot, replies sent to a real SMTP server.

Covers the rules after the In-Reply-To/References match: the Reply-To token, the "[#id]"
subject reference, Outlook's Thread-Index, and reopening a resolved conversation.
"""

from __future__ import annotations

import base64
import threading
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy import select

from gateway.workers import OutboxDispatcher
from inbox.models import Channel, Conversation, Message, utcnow
from inbox.replies import create_reply
from tests.gateway.conftest import SUPPORT, import_mailbox

ALICE = "alice@customer.example"
EVE = "eve@attacker.example"
# An Outlook Thread-Index: a 22-byte root (FILETIME and GUID), then one 5-byte reply block.
THREAD_ROOT = bytes(range(1, 23))
FIRST_INDEX = base64.b64encode(THREAD_ROOT).decode()
REPLY_INDEX = base64.b64encode(THREAD_ROOT + b"\x00\x01\x02\x03\x04").decode()


def _mail(sender: str, subject: str, body: str, message_id: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = headers.pop("to", SUPPORT)
    message["Subject"] = subject
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    message["Message-ID"] = f"<{message_id}>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


def _deliver(state, channel, mailbox, raw: bytes) -> None:
    mailbox.append(raw)
    assert import_mailbox(state, channel) == 1


def _send_reply(state, agent, smtp, conversation_id: int, text: str):
    with state.session_factory() as session:
        create_reply(session, conversation_id, agent.id, text)
        session.commit()
    before = len(smtp.received)
    OutboxDispatcher(state, threading.Event()).dispatch_due()
    return smtp.wait_for(before + 1)[-1]


def _placement(state, message_id: str) -> tuple[int, str]:
    """Return the conversation id and thread reason of the stored mail with this Message-ID."""
    with state.session_factory() as session:
        message = session.scalar(select(Message).where(Message.rfc_message_id == message_id))
        return message.conversation_id, message.thread_reason


def _resolve(state, conversation_id: int, last_message_days_ago: int) -> None:
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        conversation.status = "resolved"
        conversation.last_message_at = utcnow() - timedelta(days=last_message_days_ago)
        session.commit()


def test_reply_carries_token_and_subject_reference(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Broken kettle", "It leaks.", "a1@customer.example"))

    sent = _send_reply(state, agent, smtp, 1, "Could you send a photo?")

    with state.session_factory() as session:
        token = session.get(Conversation, 1).reply_token
    assert token
    assert sent.message["Reply-To"] == f"support+c1.{token}@shop.example"
    assert sent.message["Subject"] == "Re: Broken kettle [#1]"
    assert _placement(state, "a1@customer.example") == (1, "new")


def test_relay_rewritten_message_id_threads_by_token(app, state, agent, api_token, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Broken kettle", "It leaks.", "a1@customer.example"))
    reply_to = str(_send_reply(state, agent, smtp, 1, "Could you send a photo?").message["Reply-To"])

    # The relay gave our reply a new Message-ID, so In-Reply-To names an id we never stored.
    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Photo", "Here it is.", "a2@customer.example",
        to=reply_to, In_Reply_To="<rewritten.1@relay.example>", References="<rewritten.1@relay.example>",
    ))

    assert _placement(state, "a2@customer.example") == (1, "reply_to_token")
    response = app.test_client().get("/api/v1/conversations/1", headers={"Authorization": f"Bearer {api_token}"})
    reasons = [message["thread_reason"] for message in response.get_json()["messages"]]
    assert reasons == ["new", None, "reply_to_token"]


def test_reply_to_unthreaded_mail_references_conversation(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Broken kettle", "It leaks.", "a1@customer.example"))
    first_reply = _send_reply(state, agent, smtp, 1, "Could you send a photo?")
    our_id = first_reply.message["Message-ID"].strip("<>")
    # A new mail to the reply address, without In-Reply-To or References.
    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Photo", "Here it is.", "a2@customer.example", to=str(first_reply.message["Reply-To"]),
    ))

    sent = _send_reply(state, agent, smtp, 1, "Thanks, we are sending a new one.")

    assert _placement(state, "a2@customer.example") == (1, "reply_to_token")
    assert sent.message["In-Reply-To"] == "<a2@customer.example>"
    assert sent.message["References"].split() == ["<a1@customer.example>", f"<{our_id}>", "<a2@customer.example>"]


def test_token_in_cc_threads(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Refund", "Where is it?", "a1@customer.example"))
    reply_to = str(_send_reply(state, agent, smtp, 1, "On its way.").message["Reply-To"])

    _deliver(state, email_channel, mailbox, _mail(
        "bob@customer.example", "Refund for Alice", "I am her colleague.", "b1@customer.example",
        to="someone@customer.example", Cc=reply_to,
    ))

    assert _placement(state, "b1@customer.example") == (1, "reply_to_token")


def test_forged_token_starts_new_conversation(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Refund", "Where is it?", "a1@customer.example"))
    _send_reply(state, agent, smtp, 1, "On its way.")

    _deliver(state, email_channel, mailbox, _mail(
        EVE, "Refund", "Let me in.", "e1@attacker.example", to="support+c1.000000000000@shop.example",
    ))
    _deliver(state, email_channel, mailbox, _mail(
        EVE, "Refund", "Guessing again.", "e2@attacker.example", to="support+c1@shop.example",
    ))

    assert _placement(state, "e1@attacker.example") == (2, "new")
    assert _placement(state, "e2@attacker.example") == (3, "new")


def test_token_for_another_domain_is_ignored(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Refund", "Where is it?", "a1@customer.example"))
    reply_to = str(_send_reply(state, agent, smtp, 1, "On its way.").message["Reply-To"])
    elsewhere = reply_to.replace("@shop.example", "@other.example")

    _deliver(state, email_channel, mailbox, _mail(ALICE, "Refund", "Again", "a2@customer.example", to=elsewhere))

    assert _placement(state, "a2@customer.example") == (2, "new")


def test_subject_reference_from_contact_threads(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Broken kettle", "It leaks.", "a1@customer.example"))
    _send_reply(state, agent, smtp, 1, "Could you send a photo?")

    # A fresh mail without threading headers, written with the subject of our reply.
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Re: Broken kettle [#1]", "Photo attached.", "a2@customer.example"))

    assert _placement(state, "a2@customer.example") == (1, "subject_reference")


def test_subject_reference_from_stranger_is_ignored(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Broken kettle", "It leaks.", "a1@customer.example"))
    _send_reply(state, agent, smtp, 1, "Could you send a photo?")

    _deliver(state, email_channel, mailbox, _mail(EVE, "Re: Broken kettle [#1]", "Let me in.", "e1@attacker.example"))

    assert _placement(state, "e1@attacker.example") == (2, "new")


def test_subject_reference_from_earlier_writer_threads(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Refund", "Where is it?", "a1@customer.example"))
    reply_to = str(_send_reply(state, agent, smtp, 1, "On its way.").message["Reply-To"])
    _deliver(state, email_channel, mailbox, _mail(
        "bob@customer.example", "Refund", "Adding myself.", "b1@customer.example", to=reply_to,
    ))

    _deliver(state, email_channel, mailbox, _mail(
        "bob@customer.example", "Still waiting [#1]", "Any news?", "b2@customer.example",
    ))

    assert _placement(state, "b2@customer.example") == (1, "subject_reference")


def test_thread_index_alone_threads_same_contact(state, mailbox, email_channel):
    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Invoice", "Please send it.", "a1@customer.example", Thread_Index=FIRST_INDEX,
    ))

    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "RE: Invoice", "Reminder.", "a2@customer.example", Thread_Index=REPLY_INDEX,
    ))
    _deliver(state, email_channel, mailbox, _mail(
        EVE, "RE: Invoice", "Me too.", "e1@attacker.example", Thread_Index=REPLY_INDEX,
    ))

    assert _placement(state, "a1@customer.example") == (1, "new")
    assert _placement(state, "a2@customer.example") == (1, "thread_index")
    assert _placement(state, "e1@attacker.example") == (2, "new")
    with state.session_factory() as session:
        roots = session.scalars(select(Message.thread_index_root).order_by(Message.id)).all()
    assert roots == [FIRST_INDEX, FIRST_INDEX, FIRST_INDEX]


def test_header_reasons_are_recorded(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Order", "Where?", "a1@customer.example"))
    our_id = str(_send_reply(state, agent, smtp, 1, "Shipped.").message["Message-ID"]).strip("<>")

    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Re: Order", "Thanks", "a2@customer.example", In_Reply_To=f"<{our_id}>", References=f"<{our_id}>",
    ))
    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Re: Order", "And one more", "a3@customer.example",
        In_Reply_To="<unknown@customer.example>", References=f"<{our_id}> <unknown@customer.example>",
    ))

    assert _placement(state, "a2@customer.example") == (1, "in_reply_to")
    assert _placement(state, "a3@customer.example") == (1, "references")


def test_reply_within_window_reopens(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Order", "Where?", "a1@customer.example"))
    our_id = str(_send_reply(state, agent, smtp, 1, "Shipped.").message["Message-ID"]).strip("<>")
    _resolve(state, 1, last_message_days_ago=3)

    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Re: Order", "It never came.", "a2@customer.example", In_Reply_To=f"<{our_id}>",
    ))

    assert _placement(state, "a2@customer.example") == (1, "reopened")
    with state.session_factory() as session:
        assert session.get(Conversation, 1).status == "open"
        assert session.scalar(select(Conversation).where(Conversation.id != 1)) is None


def test_reply_after_window_starts_linked_conversation(state, agent, mailbox, smtp, email_channel):
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Order", "Where?", "a1@customer.example"))
    reply = _send_reply(state, agent, smtp, 1, "Shipped.").message
    our_id = str(reply["Message-ID"]).strip("<>")
    _resolve(state, 1, last_message_days_ago=10)

    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Re: Order", "Another order now.", "a2@customer.example", In_Reply_To=f"<{our_id}>",
    ))
    # A second reply to the same old mail joins the follow-up, not a third conversation.
    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Re: Order", "Forgot to add this.", "a3@customer.example", to=str(reply["Reply-To"]),
    ))

    assert _placement(state, "a2@customer.example") == (2, "new")
    assert _placement(state, "a3@customer.example") == (2, "reply_to_token")
    with state.session_factory() as session:
        old = session.get(Conversation, 1)
        follow_up = session.get(Conversation, 2)
        assert old.status == "resolved"
        assert follow_up.previous_conversation_id == 1
        assert follow_up.status == "open"


def test_channel_reopen_window_setting_is_used(state, agent, mailbox, smtp, email_channel):
    with state.session_factory() as session:
        channel = session.get(Channel, email_channel.id)
        channel.settings = {**channel.settings, "reopen_window_days": 30}
        session.commit()
    _deliver(state, email_channel, mailbox, _mail(ALICE, "Order", "Where?", "a1@customer.example"))
    our_id = str(_send_reply(state, agent, smtp, 1, "Shipped.").message["Message-ID"]).strip("<>")
    _resolve(state, 1, last_message_days_ago=10)

    _deliver(state, email_channel, mailbox, _mail(
        ALICE, "Re: Order", "It never came.", "a2@customer.example", In_Reply_To=f"<{our_id}>",
    ))

    assert _placement(state, "a2@customer.example") == (1, "reopened")
