"""Merging two contacts of one person: everything moves, nothing is lost, later mail finds them.

These run on SQLite, and on PostgreSQL when SWITCHBOARD_TEST_DATABASE_URL names a database.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from channels.types import Address, AddressKind
from inbox.activity import list_activities
from inbox.contact_merge import CONTACT_MERGED, CannotMerge, merge_contacts
from inbox.contacts import (
    get_contact_or_404,
    list_contact_merges,
    resolve_identity,
    search_contacts,
    update_contact,
)
from inbox.errors import Conflict, InvalidInput, NotFound
from inbox.ingest import ingest_message
from inbox.models import (
    Agent, Contact, ContactIdentity, ContactMerge, Conversation, Event, Message, utcnow,
)
from inbox.optout import may_message_proactively
from tests.support.contacts import add_email_channel, contact_of, receive_mail
from tests.support.conversations import customer_message, receive

PHONE = "+15551230042"
EMAIL = "grace@example.org"


@pytest.fixture
def email_channel(state):
    return add_email_channel(state)


def merge(state, agent, kept_id: int, merged_id: int) -> ContactMerge:
    with state.session_factory() as session:
        record = merge_contacts(session, session.get(Agent, agent.id), kept_id, merged_id)
        session.commit()
        session.refresh(record)
        session.expunge(record)
        return record


def edit(state, contact_id: int, changes: dict) -> None:
    with state.session_factory() as session:
        update_contact(session, contact_id, changes)
        session.commit()


@pytest.fixture
def grace(state, whatsapp_channel, email_channel):
    """Grace on WhatsApp (opted out with STOP, with notes) and by email: two contacts."""
    whatsapp = receive(state, whatsapp_channel.id, PHONE, "Where is my order?").conversation_id
    receive(state, whatsapp_channel.id, PHONE, "STOP")
    email = receive_mail(state, email_channel.id, EMAIL, "Hello, order 1234 is late", name="Grace Hopper").conversation_id
    phone_contact, email_contact = contact_of(state, whatsapp), contact_of(state, email)
    edit(state, phone_contact, {"notes": "Prefers WhatsApp in the morning."})
    edit(state, email_contact, {"notes": "Ordered twice in May."})
    return {
        "whatsapp": whatsapp, "email": email, "phone_contact": phone_contact, "email_contact": email_contact,
    }


def test_merge_moves_everything_to_the_kept_contact(state, agent, grace, published):
    kept, merged = grace["email_contact"], grace["phone_contact"]
    with state.session_factory() as session:
        messages_before = {row.id: row.conversation_id for row in session.scalars(select(Message))}
        stop_time = session.get(Contact, merged).opted_out_at
    published.clear()

    record = merge(state, agent, kept, merged)

    with state.session_factory() as session:
        contact = get_contact_or_404(session, kept)
        assert {(i.kind, i.value) for i in contact.identities} == {("email", EMAIL), ("phone", PHONE)}
        assert contact.name == "Grace Hopper"
        assert contact.notes == "Ordered twice in May.\n\nPrefers WhatsApp in the morning."
        # The STOP written on WhatsApp still keeps proactive messages away.
        assert contact.opted_out_at == stop_time
        assert contact.opted_out_keyword == "STOP"
        assert not may_message_proactively(contact)

        # Every conversation and message is still there, now under the kept contact.
        assert {row.id: row.conversation_id for row in session.scalars(select(Message))} == messages_before
        assert set(session.scalars(select(Conversation.contact_id))) == {kept}
        assert set(session.scalars(select(Message.contact_id).where(Message.direction == "inbound"))) == {kept}
        assert session.scalar(select(func.count()).select_from(ContactIdentity).where(ContactIdentity.contact_id == merged)) == 0

        gone = session.get(Contact, merged)
        assert (gone.merged_into_id, gone.notes) == (kept, None)

        [stored] = list_contact_merges(session, kept)
        assert stored.id == record.id
        assert (stored.merged_contact_id, stored.agent_id, stored.merged_name) == (merged, agent.id, None)
        assert stored.merged_identities == [{"kind": "phone", "value": PHONE}]
        assert stored.details["conversation_ids"] == [grace["whatsapp"]]
        assert stored.details["message_count"] == 2
        assert stored.details["notes_moved"] is True
        assert stored.details["opted_out"]["keyword"] == "STOP"

        # The history of both conversations records who merged what.
        for conversation_id, moved in ((grace["whatsapp"], True), (grace["email"], False)):
            [activity] = [a for a in list_activities(session, conversation_id) if a.action == CONTACT_MERGED]
            assert activity.agent_id == agent.id
            assert activity.details["merged_identities"] == [{"kind": "phone", "value": PHONE}]
            assert activity.details["moved"] is moved

    kinds = [event["type"] for event in published]
    assert kinds.count("contact.merged") == 1
    assert kinds.count("conversation.updated") == 2
    merged_event = next(event for event in published if event["type"] == "contact.merged")
    assert merged_event["merged_contact_id"] == merged
    assert {i["value"] for i in merged_event["contact"]["identities"]} == {EMAIL, PHONE}
    updated = [event for event in published if event["type"] == "conversation.updated"]
    assert {event["conversation"]["contact"]["id"] for event in updated} == {kept}


def test_inbound_after_merge_finds_kept_contact(
    state, agent, grace, whatsapp_channel, email_channel
):
    kept = grace["email_contact"]
    merge(state, agent, kept, grace["phone_contact"])

    by_whatsapp = receive(state, whatsapp_channel.id, PHONE, "Any news?")
    by_email = receive_mail(state, email_channel.id, EMAIL, "A second question")

    with state.session_factory() as session:
        for result in (by_whatsapp, by_email):
            message = session.get(Message, result.message_id)
            assert message.contact_id == kept
            assert message.conversation.contact_id == kept
        # WhatsApp threads into the conversation that moved, not into a new one.
        assert by_whatsapp.conversation_id == grace["whatsapp"]
        assert session.scalar(select(func.count()).select_from(Contact).where(Contact.merged_into_id.is_(None))) == 1


def test_ingest_racing_merge_finds_kept_contact(state, agent, grace):
    # An ingest read the identity, then a merge committed before it locked the contact.
    with state.session_factory() as ingesting:
        stale = ingesting.scalar(select(ContactIdentity).where(ContactIdentity.value == PHONE))
        assert stale.contact_id == grace["phone_contact"]
        ingesting.commit()

        merge(state, agent, grace["email_contact"], grace["phone_contact"])

        identity = resolve_identity(ingesting, Address(AddressKind.PHONE, PHONE, "Grace"))
        assert identity.contact_id == grace["email_contact"]
        assert identity.contact.merged_into_id is None
        ingesting.rollback()


def test_repeat_or_self_merge_conflicts(state, agent, grace):
    kept, merged = grace["email_contact"], grace["phone_contact"]
    merge(state, agent, kept, merged)
    with state.session_factory() as session:
        events_before = session.scalar(select(func.count()).select_from(Event))

    with pytest.raises(Conflict) as repeat:
        merge(state, agent, kept, merged)
    with pytest.raises(Conflict) as itself:
        merge(state, agent, kept, kept)
    with pytest.raises(Conflict) as into_merged:
        merge(state, agent, merged, kept)
    with pytest.raises(NotFound):
        merge(state, agent, kept, 999_999)

    assert repeat.value.code == "already_merged"
    assert itself.value.code == "same_contact"
    assert into_merged.value.code == "already_merged"
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ContactMerge)) == 1
        assert session.scalar(select(func.count()).select_from(Event)) == events_before


def test_merged_contact_cannot_be_kept_or_edited(state, agent, grace, whatsapp_channel):
    kept, merged = grace["email_contact"], grace["phone_contact"]
    other = contact_of(state, receive(state, whatsapp_channel.id, "+15551239999", "hi").conversation_id)
    merge(state, agent, kept, merged)

    with pytest.raises(Conflict) as into_gone:
        merge(state, agent, merged, other)
    with pytest.raises(Conflict) as edited:
        edit(state, merged, {"notes": "lost?"})

    assert into_gone.value.code == "contact_merged"
    assert edited.value.code == "contact_merged"


def test_two_phone_numbers_do_not_merge(state, agent, whatsapp_channel):
    first = contact_of(state, receive(state, whatsapp_channel.id, "+15551230001", "one").conversation_id)
    second = contact_of(state, receive(state, whatsapp_channel.id, "+15551230002", "two").conversation_id)

    with pytest.raises(CannotMerge) as refused:
        merge(state, agent, first, second)

    assert "+15551230001" in refused.value.message
    assert "+15551230002" in refused.value.message
    with state.session_factory() as session:
        assert session.get(Contact, second).merged_into_id is None
        assert len(session.get(Contact, second).identities) == 1


def test_merge_chain_points_to_last_contact(state, agent, whatsapp_channel, email_channel):
    phone = contact_of(state, receive(state, whatsapp_channel.id, PHONE, "hi").conversation_id)
    mail = contact_of(state, receive_mail(state, email_channel.id, EMAIL, "hi").conversation_id)
    with state.session_factory() as session:
        bare = Contact(name="Walk-in customer")
        session.add(bare)
        session.commit()
        bare_id = bare.id

    merge(state, agent, mail, phone)
    merge(state, agent, bare_id, mail)

    with state.session_factory() as session:
        assert session.get(Contact, phone).merged_into_id == bare_id
        assert session.get(Contact, mail).merged_into_id == bare_id
        assert [m.merged_contact_id for m in list_contact_merges(session, bare_id)] == [mail, phone]
        contact = get_contact_or_404(session, bare_id)
        assert contact.name == "Walk-in customer"
        assert {i.value for i in contact.identities} == {PHONE, EMAIL}


def test_merge_keeps_earlier_opt_out(state, agent, whatsapp_channel, email_channel):
    phone = contact_of(state, receive(state, whatsapp_channel.id, PHONE, "hi").conversation_id)
    mail = contact_of(state, receive_mail(state, email_channel.id, EMAIL, "hi").conversation_id)
    earlier = utcnow() - timedelta(days=3)
    with state.session_factory() as session:
        session.get(Contact, phone).opted_out_at = utcnow()
        session.get(Contact, phone).opted_out_keyword = "STOP"
        session.get(Contact, mail).opted_out_at = earlier
        session.get(Contact, mail).opted_out_keyword = "UNSUBSCRIBE"
        session.commit()

    merge(state, agent, phone, mail)

    with state.session_factory() as session:
        contact = session.get(Contact, phone)
        assert (contact.opted_out_at, contact.opted_out_keyword) == (earlier, "UNSUBSCRIBE")


def test_merge_prefers_agent_set_name(state, agent, whatsapp_channel, email_channel):
    with state.session_factory() as session:
        ingest_message(session, whatsapp_channel.id, customer_message(PHONE, "hi", name="gh"))
    phone = contact_of(state, receive(state, whatsapp_channel.id, PHONE, "again").conversation_id)
    mail = contact_of(state, receive_mail(state, email_channel.id, EMAIL, "hi").conversation_id)
    edit(state, mail, {"name": "Grace Hopper"})

    merge(state, agent, phone, mail)

    with state.session_factory() as session:
        contact = session.get(Contact, phone)
        assert (contact.name, contact.name_set_by_agent) == ("Grace Hopper", True)


@pytest.mark.parametrize(
    ("kept_zone", "merged_zone", "expected"),
    [
        ("Europe/Berlin", "America/New_York", "Europe/Berlin"),
        (None, "America/New_York", "America/New_York"),
        ("Europe/Berlin", None, "Europe/Berlin"),
        (None, None, None),
    ],
)
def test_merge_keeps_own_time_zone_else_takes_other(
    state, agent, whatsapp_channel, email_channel, kept_zone, merged_zone, expected
):
    phone = contact_of(state, receive(state, whatsapp_channel.id, PHONE, "hi").conversation_id)
    mail = contact_of(state, receive_mail(state, email_channel.id, EMAIL, "hi").conversation_id)
    edit(state, phone, {"time_zone": kept_zone})
    edit(state, mail, {"time_zone": merged_zone})

    merge(state, agent, phone, mail)

    with state.session_factory() as session:
        assert session.get(Contact, phone).time_zone == expected


def test_search_finds_by_name_email_and_phone_digits(state, agent, grace, whatsapp_channel):
    receive(state, whatsapp_channel.id, "+4915112345678", "Hallo")
    with state.session_factory() as session:
        def ids(query: str) -> list[int]:
            return [contact.id for contact in search_contacts(session, query)]

        assert ids("hopper") == [grace["email_contact"]]
        assert ids("GRACE@EXAMPLE") == [grace["email_contact"]]
        assert ids("+1 555 123-0042") == [grace["phone_contact"]]
        assert len(ids("+49 151 1234")) == 1
        # LIKE's wildcards in the query are plain characters.
        assert ids("%") == []
        assert ids("gr_ce") == []
        with pytest.raises(InvalidInput):
            search_contacts(session, "   ")

    merge(state, agent, grace["email_contact"], grace["phone_contact"])
    with state.session_factory() as session:
        assert [c.id for c in search_contacts(session, "5551230042")] == [grace["email_contact"]]
