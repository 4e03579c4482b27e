"""``switchboard simulate email``: a customer's mail put into a real Dovecot mailbox over IMAP."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gateway.cli import main
from inbox.models import Channel, Contact, ContactIdentity, Conversation, Message
from tests.gateway.conftest import SUPPORT, import_mailbox


@pytest.fixture
def run(database_url, tmp_path):
    env = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}

    def invoke(*args: str):
        return CliRunner().invoke(main, ["simulate", "email", *args], env=env, catch_exceptions=False)

    return invoke


def test_simulated_mail_becomes_conversation(run, state, mailbox, email_channel):
    result = run("--from", "grace@customer.example", "--name", "Grace Hopper", "--subject", "Late order",
                 "Where is my parcel?")

    assert result.exit_code == 0, result.output
    assert "from grace@customer.example into 'INBOX' of channel 1 (Shop Support)" in result.output
    assert import_mailbox(state, email_channel) == 1
    with state.session_factory() as session:
        message = session.scalar(select(Message))
        assert message.text.strip() == "Where is my parcel?"
        assert message.rfc_message_id.endswith("@customer.example")
        assert message.rfc_message_id in result.output
        assert session.get(Conversation, message.conversation_id).subject == "Late order"
        contact = session.get(Contact, message.contact_id)
        assert contact.name == "Grace Hopper"
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.contact_id == contact.id))
        assert (identity.kind, identity.value) == ("email", "grace@customer.example")


def test_simulated_mail_is_unread_in_mailbox(run, mailbox, email_channel):
    result = run("--from", "grace@customer.example", "Hello")

    assert result.exit_code == 0, result.output
    (flags,) = mailbox.flags()
    assert b"\\Seen" not in flags


def test_simulated_mail_names_rejected_password(run, state, mailbox, email_channel):
    with state.session_factory() as session:
        channel = session.get(Channel, email_channel.id)
        channel.settings = {**channel.settings, "imap_password": "wrong password"}
        session.commit()

    result = run("--from", "grace@customer.example", "Hello")

    assert result.exit_code == 1
    assert f"The mail was not delivered. IMAP login failed on {mailbox.host}:{mailbox.port}" in result.output
    assert "Check the username and password." in result.output
    assert mailbox.flags() == []


@pytest.mark.parametrize(("args", "error"), [
    (["--from", "grace", "Hello"], "'grace' is not an email address"),
    (["--from", "Grace <grace@customer.example>", "Hello"], "is not an email address"),
    (["--from", SUPPORT.upper(), "Hello"], "is the channel's own address"),
    (["--from", "grace@customer.example", "   "], "The message text is empty."),
    (["--from", "grace@customer.example", "--subject", "Hi\r\nBcc: x@example.com", "Hello"], "one line"),
    (["--from", "grace@customer.example", "--channel", "9", "Hello"], "No email channel 9."),
])
def test_simulate_email_rejects_bad_input(run, mailbox, email_channel, args, error):
    result = run(*args)

    assert result.exit_code == 1
    assert error in result.output
    assert mailbox.flags() == []


def test_simulate_email_without_channel_explains(run):
    result = run("--from", "grace@customer.example", "Hello")

    assert result.exit_code == 1
    assert "No email channel found" in result.output


def test_simulate_email_on_disabled_channel_explains(run, state, mailbox, email_channel):
    with state.session_factory() as session:
        session.get(Channel, email_channel.id).is_active = False
        session.commit()

    result = run("--from", "grace@customer.example", "Hello")

    assert result.exit_code == 1
    assert "Channel 1 (Shop Support) is disabled" in result.output
    assert mailbox.flags() == []
