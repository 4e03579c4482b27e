"""Finding @mentions in note text, and the notifications a note creates."""

from __future__ import annotations

import pytest

from inbox.mentions import Mentionable, add_mentions, count_unread_mentions, find_mentions, handles_of, mark_mentions_read
from inbox.models import Agent, Note
from inbox.notes import create_note
from inbox.errors import InvalidInput, NotFound
from tests.support.conversations import add_agent, receive

ADA = Mentionable(1, handles_of("Ada Lovelace", "ada@shop.example"))
BOB = Mentionable(2, handles_of("Bob", "bob.builder@shop.example"))
ADAM = Mentionable(3, handles_of("Adam", "adam@shop.example"))
AGENTS = [ADA, BOB, ADAM]


def _names(text: str, agents=AGENTS) -> list[int]:
    return [mention.agent_id for mention in find_mentions(text, agents)]


def test_handles_are_name_and_email_local_part():
    assert handles_of("  Ada   Lovelace ", "ada@shop.example") == ("Ada Lovelace", "ada")
    assert handles_of("", "ops@shop.example") == ("ops",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@ada please check", [1]),
        ("@Ada Lovelace please check", [1]),
        ("@ADA LOVELACE", [1]),
        ("@Ada  Lovelace, twice spaced", [1]),
        ("cc @bob.builder.", [2]),
        ("cc @Bob: see above", [2]),
        ("(@adam)", [3]),
        ("@ada and @adam and @bob", [1, 3, 2]),
        ("@adam is not @ada", [3, 1]),
    ],
)
def test_mentions_by_name_or_local_part(text, expected):
    assert _names(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "write to ada@shop.example",
        "@adalbert is not anyone",
        "@bob.builderx is not anyone",
        "@nobody here",
        "@ alone",
        "email@ada",
        "",
    ],
)
def test_non_mentions_stay_text(text):
    assert _names(text) == []


def test_mention_span_covers_at_and_handle():
    (mention,) = find_mentions("Hi @Ada Lovelace!", AGENTS)

    assert "Hi @Ada Lovelace!"[mention.start:mention.end] == "@Ada Lovelace"


def test_ambiguous_name_names_nobody_but_local_part_works():
    twins = [Mentionable(1, handles_of("Sam", "sam.a@shop.example")), Mentionable(2, handles_of("Sam", "sam.b@shop.example"))]

    assert _names("@Sam", twins) == []
    assert _names("@sam.b", twins) == [2]


def test_note_notifies_each_mentioned_agent_once(state, agent, whatsapp_channel):
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    conversation_id = receive(state, whatsapp_channel.id, "+15551230001").conversation_id
    with state.session_factory() as session:
        note = create_note(session, conversation_id, agent.id, "@bob see this, @Bob Builder again, and @ada (me)")
        session.commit()
        mentions = [(m.agent_id, m.read_at) for m in note.mentions]

    assert mentions == [(bob.id, None)]


def test_inactive_agent_is_not_mentioned(state, agent, whatsapp_channel):
    gone = add_agent(state, "gone@example.com", "Gone Agent")
    with state.session_factory() as session:
        session.get(Agent, gone.id).is_active = False
        session.commit()
    conversation_id = receive(state, whatsapp_channel.id, "+15551230001").conversation_id
    with state.session_factory() as session:
        note = Note(conversation_id=conversation_id, agent_id=agent.id, text="@gone hello")
        session.add(note)

        assert add_mentions(session, note) == []


def test_mark_read_by_id_conversation_and_all(state, agent, whatsapp_channel):
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    first = receive(state, whatsapp_channel.id, "+15551230001").conversation_id
    second = receive(state, whatsapp_channel.id, "+15551230002").conversation_id
    with state.session_factory() as session:
        notes = [create_note(session, cid, agent.id, "@bob look") for cid in (first, first, second)]
        session.commit()
        ids = [note.mentions[0].id for note in notes]

        assert count_unread_mentions(session, bob.id) == 3
        assert mark_mentions_read(session, bob.id, mention_ids=[ids[0]]) == 1
        assert count_unread_mentions(session, bob.id) == 2
        assert mark_mentions_read(session, bob.id, conversation_id=first) == 1
        assert mark_mentions_read(session, bob.id) == 1
        assert count_unread_mentions(session, bob.id) == 0


def test_mark_read_rejects_foreign_and_bad_ids(state, agent, whatsapp_channel):
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    conversation_id = receive(state, whatsapp_channel.id, "+15551230001").conversation_id
    with state.session_factory() as session:
        note = create_note(session, conversation_id, agent.id, "@bob look")
        session.commit()
        mention_id = note.mentions[0].id

        with pytest.raises(NotFound):
            mark_mentions_read(session, agent.id, mention_ids=[mention_id])
        with pytest.raises(InvalidInput):
            mark_mentions_read(session, bob.id, mention_ids=["1"])
        with pytest.raises(InvalidInput):
            mark_mentions_read(session, bob.id, mention_ids=[])
        assert count_unread_mentions(session, bob.id) == 1
