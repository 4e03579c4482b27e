"""WhatsApp opt-out keywords, and failed WhatsApp replies resent by email.

Inbound WhatsApp messages are signed webhooks; email leaves through the outbox to aiosmtpd.
"""

from __future__ import annotations

import io
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from sqlalchemy import select

from channels.email.parse import parse_email
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import Contact, ContactIdentity, Conversation, Message, utcnow
from tests.support.smtp_server import SmtpTestServer
from tests.support.whatsapp import (  # noqa: F401 (client, config and twilio are fixtures)
    CUSTOMER,
    LOCAL,
    app_with,
    client,
    close_window,
    config,
    dispatch,
    post_inbound,
    post_status,
    twilio,
)

SUPPORT = "support@shop.example"
CUSTOMER_EMAIL = "grace@example.org"


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def email_channel(state, smtp):
    """An email channel whose SMTP server is aiosmtpd; no mailbox reader runs in these tests."""
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop Support", SUPPORT,
            {
                "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": SUPPORT,
                "imap_password": "not-used", "smtp_host": smtp.host, "smtp_port": smtp.port,
                "smtp_security": "none",
            },
        )
        session.commit()
        return channel


def contact_state(client, state) -> dict:
    """Return the WhatsApp conversation as the API shows it, with its contact and messages."""
    return client.get(f"/api/v1/conversations/{whatsapp_conversation_id(state)}").json


def whatsapp_conversation_id(state) -> int:
    with state.session_factory() as session:
        return session.scalar(
            select(Conversation.id).where(Conversation.channel.has(kind="whatsapp"))
        )


def customer_email_first(state, email_channel) -> str:
    """Ingest a mail from the customer, then give that contact the WhatsApp number too, as an
    admin would link the two. Returns the mail's Message-ID."""
    mail = EmailMessage()
    mail["From"] = f"Grace <{CUSTOMER_EMAIL}>"
    mail["To"] = SUPPORT
    mail["Subject"] = "Parcel"
    mail["Message-ID"] = "<first.mail@example.org>"
    mail["Date"] = format_datetime(utcnow())
    mail.set_content("Where is my parcel?")
    with state.session_factory() as session:
        ingest_message(session, email_channel.id, parse_email(mail.as_bytes()))
    with state.session_factory() as session:
        contact_id = session.scalar(select(Contact.id))
        session.add(ContactIdentity(contact_id=contact_id, kind="phone", value=CUSTOMER))
        session.commit()
    return "first.mail@example.org"


def failed_whatsapp_reply(client, state, twilio) -> int:
    conversation_id = whatsapp_conversation_id(state)
    message_id = client.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"text": "Your parcel is at the depot."}
    ).json["id"]
    twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    dispatch(state)
    return message_id


# Opt-out


def test_stop_opts_out_and_start_opts_back_in(client, state, whatsapp_channel):
    post_inbound(client, whatsapp_channel, "Hello")
    post_inbound(client, whatsapp_channel, "  stop! ")
    opted_out = contact_state(client, state)["contact"]["opted_out"]
    post_inbound(client, whatsapp_channel, "Start")
    opted_in = contact_state(client, state)["contact"]["opted_out"]

    assert opted_out["keyword"] == "STOP"
    assert opted_out["since"]
    assert opted_in is None
    assert [m["text"] for m in contact_state(client, state)["messages"]] == ["Hello", "  stop! ", "Start"]


def test_unsubscribe_and_workspace_keyword_opt_out(config, whatsapp_channel):
    results = []
    with app_with(config, whatsapp_opt_out_keywords="alto, Abmelden") as (state, client, _):
        for text in ("Please don't stop my order", "ALTO", "START", "unsubscribe", "start", "abmelden"):
            post_inbound(client, whatsapp_channel, text)
            with state.session_factory() as session:
                results.append(session.scalar(select(Contact.opted_out_keyword)))

    assert results == [None, "ALTO", None, "UNSUBSCRIBE", None, "ABMELDEN"]


def test_stop_keeps_held_reply_start_releases(client, state, whatsapp_channel, twilio):
    post_inbound(client, whatsapp_channel, "Where is my parcel?")
    close_window(state)
    conversation_id = whatsapp_conversation_id(state)
    client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "It ships today."})

    post_inbound(client, whatsapp_channel, "STOP")
    dispatch(state)
    sent_after_stop = len(twilio.messages)
    post_inbound(client, whatsapp_channel, "START")
    dispatch(state)

    assert sent_after_stop == 0
    assert [m["body"] for m in twilio.messages] == ["It ships today."]


def test_opted_out_contact_gets_no_template(client, state, whatsapp_channel, twilio):
    sid = twilio.add_template("Your order {{1}} shipped.")
    post_inbound(client, whatsapp_channel, "STOP")
    conversation_id = whatsapp_conversation_id(state)

    answered = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "Noted, no more news."})
    close_window(state)
    template = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"template": {"content_sid": sid, "variables": {"1": "A-1"}}},
    )
    dispatch(state)

    assert answered.status_code == 201
    assert template.status_code == 409
    assert template.json["error"]["code"] == "opted_out"
    assert [m["body"] for m in twilio.messages] == ["Noted, no more news."]


# Fallback to email


def test_failed_reply_resent_by_email(client, state, whatsapp_channel, email_channel, twilio, smtp):
    first_mail_id = customer_email_first(state, email_channel)
    post_inbound(client, whatsapp_channel, "Any update?")
    message_id = failed_whatsapp_reply(client, state, twilio)
    failed = contact_state(client, state)["messages"][-1]

    resent = client.post(f"/api/v1/messages/{message_id}/email")
    again = client.post(f"/api/v1/messages/{message_id}/email")
    dispatch(state)

    assert failed["delivery_status"] == "failed"
    assert failed["email_fallback"] == {"message_id": None, "conversation_id": None, "available": True}
    assert resent.status_code == 201
    assert resent.json["channel_kind"] == "email"
    assert again.status_code == 409
    assert again.json["error"]["code"] == "already_resent"
    (mail,) = smtp.wait_for(1)
    assert mail.rcpt_tos == (CUSTOMER_EMAIL,)
    assert mail.message["In-Reply-To"] == f"<{first_mail_id}>"
    assert f"<{first_mail_id}>" in mail.message["References"]
    assert mail.message["Subject"].startswith("Re: Parcel [#")
    assert mail.message["Reply-To"].startswith("support+c")
    assert "Your parcel is at the depot." in mail.message.get_content()
    resent_note = contact_state(client, state)["messages"][-1]["email_fallback"]
    assert resent_note["message_id"] == resent.json["id"]
    assert resent_note["available"] is False


def test_fallback_email_carries_the_reply_files(config, whatsapp_channel, email_channel, twilio, smtp):
    label = b"%PDF-1.4\n% shipping label\n%%EOF\n"
    with app_with(config, public_url=LOCAL) as (state, client, _):
        customer_email_first(state, email_channel)
        post_inbound(client, whatsapp_channel, "Any update?")
        reply = client.post(
            f"/api/v1/conversations/{whatsapp_conversation_id(state)}/messages",
            data={"text": "Here is your label.", "attachments": (io.BytesIO(label), "label.pdf", "application/pdf")},
        )
        assert reply.status_code == 201, reply.json
        twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
        dispatch(state)

        resent = client.post(f"/api/v1/messages/{reply.json['id']}/email")
        dispatch(state)

        assert resent.status_code == 201, resent.json
        assert [attachment["filename"] for attachment in resent.json["attachments"]] == ["label.pdf"]
        (mail,) = smtp.wait_for(1)
        (attached,) = list(mail.message.iter_attachments())
        assert attached.get_filename() == "label.pdf"
        assert attached.get_content() == label


def test_fallback_refuses_files_too_large_for_email(config, whatsapp_channel, email_channel, twilio, smtp):
    with app_with(config, public_url=LOCAL) as (state, client, _):
        customer_email_first(state, email_channel)
        post_inbound(client, whatsapp_channel, "Any update?")
        # Two 8 MiB documents fit a WhatsApp reply but not the 15 MiB of one email.
        files = [(io.BytesIO(b"%PDF" + bytes(8 * 1048576)), f"scan-{n}.pdf", "application/pdf") for n in range(2)]
        reply = client.post(
            f"/api/v1/conversations/{whatsapp_conversation_id(state)}/messages",
            data={"text": "Both scans.", "attachments": files},
        )
        assert reply.status_code == 201, reply.json
        twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
        dispatch(state)

        resent = client.post(f"/api/v1/messages/{reply.json['id']}/email")

        assert resent.status_code == 409
        assert resent.json["error"]["code"] == "files_over_email_limit"
        assert "at most 15 MB of files" in resent.json["error"]["message"]


def test_fallback_starts_email_conversation(client, state, whatsapp_channel, email_channel, twilio, smtp):
    post_inbound(client, whatsapp_channel, "Any update?")
    with state.session_factory() as session:
        contact_id = session.scalar(select(Contact.id))
        session.add(ContactIdentity(contact_id=contact_id, kind="email", value=CUSTOMER_EMAIL))
        session.commit()
    message_id = failed_whatsapp_reply(client, state, twilio)

    resent = client.post(f"/api/v1/messages/{message_id}/email")
    dispatch(state)

    assert resent.status_code == 201
    (mail,) = smtp.wait_for(1)
    assert mail.message["Subject"].startswith("Re: Your message on WhatsApp [#")
    assert mail.message["In-Reply-To"] is None
    with state.session_factory() as session:
        email = session.get(Message, resent.json["id"])
        assert email.conversation.channel_id == email_channel.id
        assert email.conversation.contact_id == contact_id


def test_fallback_without_email_address_is_409(client, state, whatsapp_channel, email_channel, twilio):
    post_inbound(client, whatsapp_channel, "Any update?")
    message_id = failed_whatsapp_reply(client, state, twilio)
    failed = contact_state(client, state)["messages"][-1]

    response = client.post(f"/api/v1/messages/{message_id}/email")

    assert failed["email_fallback"]["available"] is False
    assert response.status_code == 409
    assert response.json["error"]["code"] == "no_email"


def test_fallback_of_delivered_reply_is_409(client, state, whatsapp_channel, email_channel, twilio):
    customer_email_first(state, email_channel)
    post_inbound(client, whatsapp_channel, "Any update?")
    conversation_id = whatsapp_conversation_id(state)
    message_id = client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "Hi"}).json["id"]
    dispatch(state)

    response = client.post(f"/api/v1/messages/{message_id}/email")

    assert response.status_code == 409
    assert response.json["error"]["code"] == "not_failed"


def test_automatic_fallback_after_undelivered_callback(config, whatsapp_channel, email_channel, twilio, smtp):
    with app_with(config, whatsapp_email_fallback="automatic") as (state, client, agent_id):
        customer_email_first(state, email_channel)
        post_inbound(client, whatsapp_channel, "Any update?")
        conversation_id = whatsapp_conversation_id(state)
        client.post(f"/api/v1/conversations/{conversation_id}/messages", json={"text": "Parcel leaves today."})
        dispatch(state)

        post_status(client, whatsapp_channel, twilio.messages[0]["sid"], "undelivered", "63032")
        post_status(client, whatsapp_channel, twilio.messages[0]["sid"], "undelivered", "63032")
        dispatch(state)

        (mail,) = smtp.wait_for(1)
        assert "Parcel leaves today." in mail.message.get_content()
        with state.session_factory() as session:
            emails = session.scalars(
                select(Message).where(Message.channel_id == email_channel.id, Message.direction == "outbound")
            ).all()
            assert len(emails) == 1
            assert emails[0].agent_id == agent_id


def test_automatic_fallback_skips_window_error(config, whatsapp_channel, email_channel, twilio, smtp):
    with app_with(config, whatsapp_email_fallback="automatic") as (state, client, _):
        customer_email_first(state, email_channel)
        post_inbound(client, whatsapp_channel, "Any update?")
        client.post(
            f"/api/v1/conversations/{whatsapp_conversation_id(state)}/messages", json={"text": "Parcel leaves today."}
        )
        twilio.fail_next(400, 63016, "Failed to send freeform message because you are outside the allowed window.")

        dispatch(state)

        assert smtp.received == []
        with state.session_factory() as session:
            message = session.scalar(select(Message).where(Message.text == "Parcel leaves today."))
            assert message.email_fallback_id is None
            assert message.outbox_item.status == "held"
