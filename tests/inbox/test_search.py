"""Full-text search of conversations on the database under test (SQLite, or PostgreSQL when
SWITCHBOARD_TEST_DATABASE_URL names one), through real ingestion, replies and merges."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import select, text

from channels.email.parse import parse_email
from gateway.database import alembic_config
from inbox.channel_config import add_channel
from inbox.contact_merge import merge_contacts
from inbox.contacts import rename_contact
from inbox.conversations import ConversationFilter, list_conversations, list_messages, parse_filter
from inbox.ingest import ingest_message
from inbox.merge import merge_conversations
from inbox.models import Agent, Conversation, Label, Message, utcnow
from inbox.replies import create_reply
from inbox.teams import create_label
from inbox import search
from inbox.search import SearchQuery, measure_density, parse_query, search_highlights
from tests.inbox.test_label_views import _change
from tests.support.conversations import receive

_MAIL_IDS = itertools.count(1)

HOSTILE_QUERIES = [
    '"', '""', "'", "*", "-", "--", "-refund", "refund*", "*refund", "NOT", "AND OR NOT", "NEAR(a b)",
    "a:b", "subject:refund", "{text}: refund", "(", ")", "((", "a & b | !c", "<->", "'quoted'", ":*",
    "\\", "%", "_", "; DROP TABLE messages; --", "\x00", "\ue000\ue001", "🙂", "Zürich", "日本語",
    "ﷺ", "ǅ", "²³", "a" * 5000, "x " * 300, "+", "+49", "() - .", "réfund*", "\u200b", "\u0301",
]


@pytest.fixture(autouse=True, params=["sparse", "dense"])
def density(request, monkeypatch) -> str:
    """Run every test with both ways of searching: collecting every match, or testing each
    conversation in list order (what a word in many messages gets)."""
    if request.param == "dense":
        monkeypatch.setattr(search, "DENSE_MATCHES", 0)
        monkeypatch.setattr(search, "SQLITE_DENSE_SHARE", 0)
    return request.param


def _contact_id(state, conversation_id: int) -> int:
    with state.session_factory() as session:
        return session.get(Conversation, conversation_id).contact_id


def _search(state, text: str, where: ConversationFilter | None = None) -> list[int]:
    with state.session_factory() as session:
        search = parse_query(text)
        base = where or ConversationFilter()
        page = list_conversations(session, limit=200, where=ConversationFilter(**{**base.__dict__, "search": search}))
        return [conversation.id for conversation in page.items]


@pytest.fixture
def email_channel(state):
    # The channel only needs to exist: these tests ingest parsed mail directly.
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Support", "support@shop.example", {
            "imap_host": "127.0.0.1", "imap_port": 1, "imap_username": "support", "imap_password": "x",
            "imap_ssl": False, "smtp_host": "127.0.0.1", "smtp_port": 1, "smtp_security": "none",
        })
        session.commit()
        return channel


def receive_mail(state, channel_id: int, sender: str, subject: str, body: str) -> int:
    raw = (
        f"From: {sender}\r\nTo: support@shop.example\r\nSubject: {subject}\r\n"
        f"Message-ID: <search-{next(_MAIL_IDS)}@mail.example>\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    with state.session_factory() as session:
        result = ingest_message(session, channel_id, parse_email(raw))
    assert result.conversation_id is not None
    return result.conversation_id


def test_search_finds_body_word(state, whatsapp_channel):
    expected_id = receive(state, whatsapp_channel.id, "+4915112345678", "My parcel never arrived in Hamburg").conversation_id
    receive(state, whatsapp_channel.id, "+4915187654321", "Where is my invoice?")
    assert _search(state, "hamburg") == [expected_id]
    assert _search(state, "Hamb") == [expected_id]
    assert _search(state, "parcel hamburg") == [expected_id]
    assert _search(state, "parcel invoice") == []


def test_search_finds_subject_word(state, email_channel):
    expected_id = receive_mail(state, email_channel.id, "Ann Lee <ann@customer.example>", "Broken zipper on jacket", "Hello")
    receive_mail(state, email_channel.id, "Bo <bo@customer.example>", "Other question", "Hello")
    assert _search(state, "zipper") == [expected_id]


def test_search_finds_contact_fields(state, whatsapp_channel, email_channel):
    by_mail = receive_mail(state, email_channel.id, "Margarethe Quist <m.quist@northwind.example>", "Hi", "Hello")
    by_phone = receive(state, whatsapp_channel.id, "+4915112345678", "Hello").conversation_id
    receive(state, whatsapp_channel.id, "+4915187654321", "Hello")

    assert _search(state, "margarethe") == [by_mail]
    assert _search(state, "m.quist@northwind.example") == [by_mail]
    assert _search(state, "northwind") == [by_mail]
    assert _search(state, "+49 151 1234 5678") == [by_phone]
    assert _search(state, "4915112345678") == [by_phone]
    assert _search(state, "0151 12345678") == [by_phone]


def test_search_follows_contact_rename(state, whatsapp_channel):
    result = receive(state, whatsapp_channel.id, "+4915112345678", "Hello")
    with state.session_factory() as session:
        rename_contact(session, _contact_id(state, result.conversation_id), "Henrietta Vogel")
        session.commit()
    assert _search(state, "henrietta") == [result.conversation_id]


def test_search_sees_new_inbound_and_reply(state, whatsapp_channel, agent):
    conversation_id = receive(state, whatsapp_channel.id, "+4915112345678", "Hello").conversation_id
    assert _search(state, "kettle") == []

    receive(state, whatsapp_channel.id, "+4915112345678", "The kettle leaks")
    assert _search(state, "kettle") == [conversation_id]

    with state.session_factory() as session:
        create_reply(session, conversation_id, agent.id, "We will send a replacement thermostat")
        session.commit()
    assert _search(state, "thermostat") == [conversation_id]


def test_search_follows_merge(state, whatsapp_channel, agent):
    first = receive(state, whatsapp_channel.id, "+4915112345678", "Order 5521 about a walnut table").conversation_id
    with state.session_factory() as session:
        conversation = session.get(Conversation, first)
        conversation.status = "resolved"
        # Past the reopen window, so the next message starts a second conversation.
        conversation.last_message_at = utcnow() - timedelta(days=30)
        session.commit()
    second = receive(state, whatsapp_channel.id, "+4915112345678", "Another question").conversation_id
    assert first != second
    assert _search(state, "walnut") == [first]

    with state.session_factory() as session:
        merge_conversations(session, session.get(Agent, agent.id), first, second)
        session.commit()
    # The source is closed, so only the target is listed, and the moved message finds it.
    assert _search(state, "walnut") == [second]
    assert _search(state, "walnut", ConversationFilter(status="closed")) == []


def test_search_follows_contact_merge(state, whatsapp_channel, email_channel, agent):
    by_phone = receive(state, whatsapp_channel.id, "+4915112345678", "Hello").conversation_id
    by_mail = receive_mail(state, email_channel.id, "Q <quist@northwind.example>", "Hi", "Hello")
    kept_id, merged_id = _contact_id(state, by_phone), _contact_id(state, by_mail)
    with state.session_factory() as session:
        merge_contacts(session, session.get(Agent, agent.id), kept_id, merged_id)
        session.commit()
    # The kept contact has both addresses now, so each finds both conversations.
    assert set(_search(state, "northwind")) == {by_phone, by_mail}
    assert set(_search(state, "4915112345678")) == {by_phone, by_mail}


def test_search_combines_with_filters(state, whatsapp_channel):
    open_one = receive(state, whatsapp_channel.id, "+4915112345678", "Espresso machine broke").conversation_id
    resolved = receive(state, whatsapp_channel.id, "+4915187654321", "Espresso beans order").conversation_id
    with state.session_factory() as session:
        session.get(Conversation, resolved).status = "resolved"
        session.commit()
    assert _search(state, "espresso") == [resolved, open_one]
    assert _search(state, "espresso", ConversationFilter(status="open")) == [open_one]


@pytest.mark.parametrize("text", HOSTILE_QUERIES)
def test_hostile_query_does_not_error(state, whatsapp_channel, text):
    receive(state, whatsapp_channel.id, "+4915112345678", "Refund for order 2231 in Zürich 🙂")
    found = _search(state, text)
    assert isinstance(found, list)


def test_hostile_query_still_finds_its_words(state, whatsapp_channel):
    expected_id = receive(state, whatsapp_channel.id, "+4915112345678", "Refund for order 2231 please").conversation_id
    assert _search(state, '"refund" -order*') == [expected_id]
    assert _search(state, "refund)) OR ((") == [expected_id]


def test_query_without_words_matches_nothing(state, whatsapp_channel):
    receive(state, whatsapp_channel.id, "+4915112345678", "Hello")
    assert parse_query("*** -- ''").terms == ()
    assert _search(state, "*** -- ''") == []


def test_parse_query_keeps_words_only():
    assert parse_query('  "Refund" -NOT order*  ').terms == ("refund", "not", "order")
    assert parse_query("+49 (0) 151-1234").terms == ("4901511234",)
    assert parse_query("0151 1234 5678").terms == ("15112345678",)
    assert parse_query("a b c d e f g h i j").terms == tuple("abcdefgh")


def test_empty_q_is_no_search():
    assert parse_filter({"q": "   "}, 1).search is None
    assert parse_filter({"q": "refund"}, 1).search == SearchQuery(("refund",))


def test_highlight_marks_found_words(state, whatsapp_channel):
    conversation_id = receive(
        state, whatsapp_channel.id, "+4915112345678", "<b>Refund</b> please for the blue kettle"
    ).conversation_id
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        highlight = search_highlights(session, measure_density(session, parse_query("kettle")), [conversation])[conversation_id]
        message_id = session.scalar(select(Message.id).where(Message.conversation_id == conversation_id))
    assert highlight.message_id == message_id
    assert {"text": "kettle", "match": True} in highlight.parts
    # The markup is text inside a part that is not a match.
    assert any("<b>Refund</b>" in part["text"] and not part["match"] for part in highlight.parts)


def test_density_follows_estimate(state, whatsapp_channel, density):
    receive(state, whatsapp_channel.id, "+4915112345678", "kettle")
    with state.session_factory() as session:
        assert measure_density(session, parse_query("kettle")).dense is (density == "dense")


def test_highlight_shows_window_around_match(state, whatsapp_channel):
    words = [f"word{number}" for number in range(60)]
    words[40] = "Zürich"
    conversation_id = receive(state, whatsapp_channel.id, "+4915112345678", " ".join(words)).conversation_id
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        highlight = search_highlights(session, parse_query("zürich"), [conversation])[conversation_id]
    # Eight words before the match, sixteen in all, and an ellipsis where the text is cut.
    assert highlight.parts[0] == {"text": "…word32 word33 word34 word35 word36 word37 word38 word39 ", "match": False}
    assert highlight.parts[1] == {"text": "Zürich", "match": True}
    assert highlight.parts[2] == {"text": " word41 word42 word43 word44 word45 word46 word47…", "match": False}


def test_highlight_falls_back_to_subject(state, email_channel):
    conversation_id = receive_mail(state, email_channel.id, "Bo <bo@customer.example>", "Broken zipper", "Hello there")
    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        highlight = search_highlights(session, parse_query("zipper"), [conversation])[conversation_id]
    assert highlight.parts == [{"text": "Broken ", "match": False}, {"text": "zipper", "match": True}]


def test_highlight_of_contact_match(state, whatsapp_channel):
    result = receive(state, whatsapp_channel.id, "+4915112345678", "Hello")
    with state.session_factory() as session:
        rename_contact(session, _contact_id(state, result.conversation_id), "Henrietta Vogel")
        session.commit()
        conversation = session.get(Conversation, result.conversation_id)
        highlight = search_highlights(session, measure_density(session, parse_query("henri")), [conversation])[result.conversation_id]
    assert highlight.message_id is None
    assert highlight.parts[0] == {"text": "Henrietta", "match": True}


def test_many_matches_page_by_activity(state, whatsapp_channel):
    # Twelve conversations mention the parcel, some only in an older message. Later messages
    # without the word move their activity, and the activity decides the order.
    matching = []
    for number in range(12):
        phone = f"+49151555{number:04d}"
        matching.append(receive(state, whatsapp_channel.id, phone, f"my parcel {number} is late").conversation_id)
        receive(state, whatsapp_channel.id, f"+49151666{number:04d}", "nothing to find here")
    for number in (2, 7, 9):
        receive(state, whatsapp_channel.id, f"+49151555{number:04d}", "any news?")
    for number in (4, 5):
        receive(state, whatsapp_channel.id, f"+49151555{number:04d}", "second parcel, please")
    with state.session_factory() as session:
        # Equal activity on three of them: the id breaks the tie, across page ends too.
        same = utcnow() + timedelta(minutes=5)
        for conversation_id in matching[3:6]:
            session.get(Conversation, conversation_id).last_message_at = same
        session.commit()
        conversations = [session.get(Conversation, conversation_id) for conversation_id in matching]
        expected = [c.id for c in sorted(conversations, key=lambda c: (c.last_message_at, c.id), reverse=True)]
        newest_hits = {
            conversation_id: session.scalar(
                select(Message.id).where(Message.conversation_id == conversation_id, Message.text.contains("parcel"))
                .order_by(Message.id.desc()).limit(1)
            )
            for conversation_id in matching
        }

    seen: list[int] = []
    cursor = None
    with state.session_factory() as session:
        while True:
            where = ConversationFilter(search=parse_query("parc"))
            page = list_conversations(session, limit=5, cursor=cursor, where=where)
            hits = search_highlights(session, page.search, page.items, page.search_hits)
            assert {c.id: hits[c.id].message_id for c in page.items} == {c.id: newest_hits[c.id] for c in page.items}
            # The hits the list statement returned equal the ones the highlights look up alone.
            looked_up = search_highlights(session, page.search, page.items)
            assert {c.id: looked_up[c.id] for c in page.items} == {c.id: hits[c.id] for c in page.items}
            seen.extend(c.id for c in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == expected


def test_search_pages_with_label_and_status(state, whatsapp_channel, agent):
    # Sixteen conversations contain the word, and eight of them carry the label. Some of
    # those are resolved. Two more are labelled and match by their contact's name only.
    conversation_ids = [
        receive(state, whatsapp_channel.id, f"+49151777{number:04d}", f"the blender {number} is noisy").conversation_id
        for number in range(16)
    ]
    by_name = [receive(state, whatsapp_channel.id, f"+49151888{number:04d}", "Hello").conversation_id for number in range(2)]
    contact_ids = [_contact_id(state, conversation_id) for conversation_id in by_name]
    with state.session_factory() as session:
        for contact_id in contact_ids:
            rename_contact(session, contact_id, f"Blenderhaus {contact_id}")
        session.commit()
    labelled = conversation_ids[::2] + by_name
    with state.session_factory() as session:
        create_label(session, "Kitchen")
        session.commit()
    _change(state, agent.id, labelled, {"add_labels": ["Kitchen"]})
    _change(state, agent.id, conversation_ids[::4], {"status": "resolved"})
    with state.session_factory() as session:
        # Equal activity on three labelled ones: the id breaks the tie across page ends.
        same = utcnow() + timedelta(minutes=5)
        for conversation_id in labelled[1:4]:
            session.get(Conversation, conversation_id).last_message_at = same
        session.commit()
        label_id = session.scalar(select(Label.id).where(Label.name_key == "kitchen"))
        conversations = [session.get(Conversation, conversation_id) for conversation_id in labelled]
        newest = sorted(conversations, key=lambda c: (c.last_message_at, c.id), reverse=True)
        expected_any = [c.id for c in newest]
        expected_open = [c.id for c in newest if c.status == "open"]

    for status, expected in ((None, expected_any), ("open", expected_open)):
        seen: list[int] = []
        message_hits: dict[int, int | None] = {}
        cursor = None
        with state.session_factory() as session:
            while True:
                where = ConversationFilter(label_id=label_id, status=status, search=parse_query("blend"))
                page = list_conversations(session, limit=3, cursor=cursor, where=where)
                highlights = search_highlights(session, page.search, page.items, page.search_hits)
                message_hits.update({c.id: highlights[c.id].message_id for c in page.items})
                seen.extend(c.id for c in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
        assert seen == expected
        # A conversation found by its contact's name has no message to show.
        assert all(message_hits[conversation_id] is None for conversation_id in by_name if conversation_id in seen)
        assert all(message_hits[conversation_id] is not None for conversation_id in seen if conversation_id not in by_name)


def test_sqlite_density_counts_prefix_matches(state, whatsapp_channel, monkeypatch):
    if state.engine.dialect.name != "sqlite":
        pytest.skip("the count of matches is SQLite's estimate")
    monkeypatch.setattr(search, "SQLITE_DENSE_SHARE", 0.5)
    monkeypatch.setattr(search, "SQLITE_SPARSE_MATCHES", 3)
    for number in range(4):
        receive(state, whatsapp_channel.id, f"+49151999{number:04d}", f"kettles {number}")
    receive(state, whatsapp_channel.id, "+4915199990009", "kettle")
    with state.session_factory() as session:
        # Four of five messages match "kettl" as a prefix and none as a whole word.
        assert measure_density(session, parse_query("kettl")).dense is True
        # One message contains the whole word and four more start with it.
        assert measure_density(session, parse_query("kettle")).dense is True
        assert measure_density(session, parse_query("kettles 2")).dense is False


def test_message_pages_run_newest_first(state, whatsapp_channel):
    conversation_id = None
    for number in range(120):
        conversation_id = receive(state, whatsapp_channel.id, "+4915112345678", f"message {number}").conversation_id
    with state.session_factory() as session:
        newest = list_messages(session, conversation_id, limit=50)
        texts = [message.text for message in newest.items]
        assert texts == [f"message {n}" for n in range(70, 120)]
        assert newest.before == newest.items[0].id

        seen = texts
        before = newest.before
        while before is not None:
            page = list_messages(session, conversation_id, limit=50, before=before)
            seen = [message.text for message in page.items] + seen
            before = page.before
    assert seen == [f"message {n}" for n in range(120)]


def test_accents_by_dialect(state, whatsapp_channel):
    expected_id = receive(state, whatsapp_channel.id, "+4915112345678", "Our shop in Zürich is closed").conversation_id
    assert _search(state, "zürich") == [expected_id]
    # SQLite's unicode61 tokenizer drops accents, and PostgreSQL's simple configuration keeps them.
    expected = [] if state.engine.dialect.name == "postgresql" else [expected_id]
    assert _search(state, "zurich") == expected


def test_search_schema_exists_at_head(state):
    # A later migration that rebuilds one of these tables on SQLite (Alembic's batch mode copies
    # and drops it) also drops its triggers, and the index would silently fall behind.
    with state.engine.connect() as connection:
        if state.engine.dialect.name == "postgresql":
            names = set(connection.execute(text("SELECT indexname FROM pg_indexes")).scalars())
            expected = {"ix_messages_search", "ix_contacts_search", "ix_contact_identities_search"}
        else:
            names = set(connection.execute(text("SELECT name FROM sqlite_master")).scalars())
            expected = {
                "messages_fts", "contacts_fts", "messages_fts_insert", "messages_fts_delete", "messages_fts_update",
                "contacts_fts_insert", "contacts_fts_rename", "contacts_fts_delete",
                "contact_identities_fts_insert", "contact_identities_fts_delete", "contact_identities_fts_update",
            }
    assert expected <= names


def test_stored_vectors_cover_earlier_messages(state, whatsapp_channel):
    # Migration 0023 replaces the expression index with a generated column. A message stored
    # before it must be found after it, and downgrading must bring the expression index back.
    if state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's FTS5 tables did not change")
    expected_id = receive(state, whatsapp_channel.id, "+4915112345678", "The thermostat arrived broken").conversation_id
    config = alembic_config(state.engine.url.render_as_string(hide_password=False))
    state.engine.dispose()

    def migrate(step, revision: str) -> str:
        with state.engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, revision)
            return connection.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_search'"))

    try:
        assert "to_tsvector" in migrate(command.downgrade, "0022")
    finally:
        assert "(search_vector)" in migrate(command.upgrade, "head")
    assert _search(state, "thermo") == [expected_id]
