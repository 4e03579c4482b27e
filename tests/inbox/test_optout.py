"""Opt-out and opt-in keywords applied by the time the customer sent them, on real databases.

The conversation starts through real ingestion. Each keyword message is then stored and
applied as ingestion does, with the sent and stored times that a late webhook gives it.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from inbox.channel_config import add_channel
from inbox.models import Contact, Conversation, Message
from inbox.optout import OptChange, apply_opt_keywords
from tests.support.conversations import receive
from tests.support.whatsapp import app_with

CUSTOMER = "+4930123456"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
_SIDS = itertools.count(1)


@pytest.fixture
def conversation_id(state, whatsapp_channel) -> int:
    return receive(state, whatsapp_channel.id, CUSTOMER, "Where is my order?").conversation_id


@pytest.fixture
def email_channel(state):
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop Support", "support@shop.example",
            {
                "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": "support@shop.example",
                "imap_password": "not-used", "smtp_host": "127.0.0.1", "smtp_port": 5125,
                "smtp_security": "none",
            },
        )
        session.commit()
        return channel


def keyword(state, conversation_id: int, text: str, *, sent: datetime | None, stored: datetime,
            pass_sent_at: bool = True) -> OptChange | None:
    """Store a customer's message sent at ``sent`` and stored at ``stored``, and apply it."""
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        contact = session.get(Contact, conversation.contact_id)
        session.add(Message(
            conversation_id=conversation.id, channel_id=conversation.channel_id, contact_id=contact.id,
            direction="inbound", provider_message_id=f"wamid.{next(_SIDS)}", text=text,
            sent_at=sent, created_at=stored,
        ))
        session.flush()
        change = apply_opt_keywords(session, contact, text, stored, sent_at=sent if pass_sent_at else None)
        session.commit()
        return change


def opted_out(state, conversation_id: int) -> tuple[datetime | None, str | None]:
    with state.session_factory() as session:
        contact = session.get(Contact, session.get(Conversation, conversation_id).contact_id)
        return contact.opted_out_at, contact.opted_out_keyword


def test_late_stop_after_newer_start_ignored(state, conversation_id):
    start = keyword(state, conversation_id, "START", sent=T0 + timedelta(seconds=20), stored=T0 + timedelta(minutes=1))
    stop = keyword(state, conversation_id, "STOP", sent=T0 + timedelta(seconds=10), stored=T0 + timedelta(minutes=2))

    assert start is OptChange.OPTED_IN
    assert stop is OptChange.OPTED_IN
    assert opted_out(state, conversation_id) == (None, None)


def test_late_start_after_newer_stop_ignored(state, conversation_id):
    stop = keyword(state, conversation_id, "Stop!", sent=T0 + timedelta(seconds=20), stored=T0 + timedelta(minutes=1))
    start = keyword(state, conversation_id, "start", sent=T0 + timedelta(seconds=10), stored=T0 + timedelta(minutes=2))

    assert stop is OptChange.OPTED_OUT
    assert start is OptChange.OPTED_OUT
    assert opted_out(state, conversation_id) == (T0 + timedelta(seconds=20), "STOP")


def test_keywords_in_order_still_apply(state, conversation_id):
    keyword(state, conversation_id, "STOP", sent=T0, stored=T0 + timedelta(seconds=1))
    after_stop = opted_out(state, conversation_id)
    start = keyword(state, conversation_id, "START", sent=T0 + timedelta(minutes=1),
                    stored=T0 + timedelta(minutes=1, seconds=1))

    assert after_stop == (T0, "STOP")
    assert start is OptChange.OPTED_IN
    assert opted_out(state, conversation_id) == (None, None)


def test_late_keyword_after_ordinary_message_applies(state, conversation_id):
    keyword(state, conversation_id, "Thanks, where is it now?", sent=T0 + timedelta(seconds=20),
            stored=T0 + timedelta(minutes=1))
    stop = keyword(state, conversation_id, "STOP", sent=T0 + timedelta(seconds=10), stored=T0 + timedelta(minutes=2))

    assert stop is OptChange.OPTED_OUT
    assert opted_out(state, conversation_id) == (T0 + timedelta(seconds=10), "STOP")


def test_keyword_sent_in_same_second_applies(state, conversation_id):
    keyword(state, conversation_id, "START", sent=T0, stored=T0 + timedelta(minutes=1))
    stop = keyword(state, conversation_id, "STOP", sent=T0, stored=T0 + timedelta(minutes=2))

    assert stop is OptChange.OPTED_OUT
    assert opted_out(state, conversation_id) == (T0, "STOP")


def test_sent_time_later_than_storing_counts_as_stored(state, conversation_id):
    # A provider clock ahead of ours: the message counts as sent when it was stored.
    keyword(state, conversation_id, "START", sent=T0 + timedelta(hours=1), stored=T0 + timedelta(minutes=1))
    stop = keyword(state, conversation_id, "STOP", sent=T0 + timedelta(minutes=2), stored=T0 + timedelta(minutes=3))

    assert stop is OptChange.OPTED_OUT
    assert opted_out(state, conversation_id) == (T0 + timedelta(minutes=2), "STOP")


def test_keyword_without_sent_time_counts_as_stored(state, conversation_id):
    keyword(state, conversation_id, "START", sent=None, stored=T0 + timedelta(minutes=1))
    stop = keyword(state, conversation_id, "STOP", sent=T0, stored=T0 + timedelta(minutes=2))
    later_stop = keyword(state, conversation_id, "STOP", sent=T0 + timedelta(minutes=5),
                         stored=T0 + timedelta(minutes=6), pass_sent_at=False)

    assert stop is OptChange.OPTED_IN
    assert later_stop is OptChange.OPTED_OUT
    assert opted_out(state, conversation_id) == (T0 + timedelta(minutes=6), "STOP")


def test_workspace_keywords_ordered_by_sent_time(config, whatsapp_channel):
    with app_with(config, whatsapp_opt_out_keywords="Abmelden", whatsapp_opt_in_keywords="Anmelden") as (state, _, _):
        conversation = receive(state, whatsapp_channel.id, CUSTOMER, "Hallo").conversation_id
        opt_in = keyword(state, conversation, "anmelden", sent=T0 + timedelta(seconds=20),
                         stored=T0 + timedelta(minutes=1))
        opt_out = keyword(state, conversation, "ABMELDEN", sent=T0 + timedelta(seconds=10),
                          stored=T0 + timedelta(minutes=2))
        final = opted_out(state, conversation)

    assert opt_in is OptChange.OPTED_IN
    assert opt_out is OptChange.OPTED_IN
    assert final == (None, None)


def test_keyword_by_email_does_not_count(state, conversation_id, email_channel):
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        mail_conversation = Conversation(contact_id=conversation.contact_id, channel_id=email_channel.id)
        session.add(mail_conversation)
        session.flush()
        session.add(Message(
            conversation_id=mail_conversation.id, channel_id=email_channel.id, contact_id=conversation.contact_id,
            direction="inbound", text="start", sent_at=T0 + timedelta(seconds=20), created_at=T0 + timedelta(minutes=1),
        ))
        session.commit()

    stop = keyword(state, conversation_id, "STOP", sent=T0 + timedelta(seconds=10), stored=T0 + timedelta(minutes=2))

    assert stop is OptChange.OPTED_OUT
    assert opted_out(state, conversation_id) == (T0 + timedelta(seconds=10), "STOP")
