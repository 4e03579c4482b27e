"""Full-text search of conversations: message subjects and text, contact names and addresses.

The database does the searching, with no search server: SQLite through the FTS5 tables
``messages_fts`` and ``contacts_fts`` (triggers keep them in step with their tables), and
PostgreSQL through GIN indexes on ``to_tsvector('simple', ...)``: of the generated column
``messages.search_vector`` (migration 0023) and of expressions on contacts and their
addresses. Migration 0019 creates the rest, and the contact expressions below must stay
identical to the ones it indexes.

A query is never passed through as search syntax. ``parse_query`` keeps only its words (runs
of letters and digits), so quotes, operators, ``*`` and ``-`` cannot cause a syntax error.
Every word must match, and each one matches the words that start with it ("refun" finds
"refund"). A conversation matches when all words appear in one of its messages, in its
contact's name, or in the contact's addresses. A query that looks like a phone number
becomes its digits, without leading zeros, so "+49 151 1234" and "0151 1234" both find
"+491511234...".
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import NullType

from inbox.models import Conversation, Message

MAX_QUERY_LENGTH = 200
MAX_TERMS = 8
# The shortest run of digits that is searched as a phone number rather than as words.
MIN_PHONE_DIGITS = 6
# The words of a snippet around the first match, and the characters of one without a match.
SNIPPET_TOKENS = 16
SNIPPET_CHARACTERS = 160
# From this many matching messages on, a search on PostgreSQL tests conversations in list
# order instead of collecting every match first.
# NOTE: an estimate of where both ways cost about the same at one million messages.
DENSE_MATCHES = 20_000
# The same on SQLite, as a share of all messages: testing a conversation costs one probe per
# message, so the walk in list order pays off once a good share of conversations match.
# NOTE: an estimate between two measurements at one million messages: at 0.1% collecting
# took 3 ms and walking 28 ms, at 5% collecting took 39 ms and walking 8 ms.
SQLITE_DENSE_SHARE = 0.005
# Up to this many matches, collecting them all is quick whatever the share.
SQLITE_SPARSE_MATCHES = 200

# SQLite's FTS5 tables and their shadow tables (messages_fts_data, ...), its index from
# message to conversation, and PostgreSQL's text indexes and generated vector column, which
# the models do not declare.
SEARCH_TABLE_PREFIXES = ("messages_fts", "contacts_fts")
SEARCH_INDEXES = (
    "ix_messages_search", "ix_contacts_search", "ix_contact_identities_search", "ix_messages_id_conversation",
)
SEARCH_COLUMNS = ("search_vector",)

_WORD = re.compile(r"[^\W_]+")
_PHONE_QUERY = re.compile(r"[\d\s+().\-/]+")

# The vectors that PostgreSQL's GIN indexes cover: the stored one of a message's subject and
# text (migration 0023), and the expressions of migration 0019 for contacts and addresses.
_PG_MESSAGE_VECTOR = "messages.search_vector"
_PG_CONTACT_VECTOR = "to_tsvector('simple'::regconfig, coalesce(contacts.name, ''))"
_PG_ADDRESS_VECTOR = (
    "to_tsvector('simple'::regconfig, contact_identities.value || ' '"
    " || translate(contact_identities.value, '@.+-_', '     ')"
    " || CASE WHEN contact_identities.value LIKE '+%' THEN ' ' || substr(contact_identities.value, 3)"
    " || ' ' || substr(contact_identities.value, 4) || ' ' || substr(contact_identities.value, 5) ELSE '' END)"
)
_PG_QUERY = "to_tsquery('simple'::regconfig, :search_tsquery)"


@dataclass(frozen=True)
class SearchQuery:
    """The words of a search, lower-cased. No words means that nothing matches.

    ``dense`` is set by ``measure_density`` when the words occur in so many messages that
    testing conversations in list order finds a page sooner than collecting every match.
    """

    terms: tuple[str, ...]
    dense: bool = False

    def fts5(self) -> str:
        """Return the FTS5 query: every term quoted as a string and matched as a prefix."""
        return " ".join(f'"{term}"*' for term in self.terms)

    def fts5_words(self) -> str:
        """Return the FTS5 query of the terms as whole words. It matches a subset of ``fts5()``."""
        return " ".join(f'"{term}"' for term in self.terms)

    def tsquery(self) -> str:
        """Return the ``to_tsquery`` text: every term quoted, matched as a prefix, all required."""
        return " & ".join(f"'{term}':*" for term in self.terms)


def parse_query(raw: str) -> SearchQuery:
    """Return the search for the text typed in the search box.

    Never raises: text with no letters or digits gives a query with no terms. Only the first
    ``MAX_QUERY_LENGTH`` characters and ``MAX_TERMS`` words count.
    """
    raw = raw[:MAX_QUERY_LENGTH]
    digits = re.sub(r"\D", "", raw)
    if _PHONE_QUERY.fullmatch(raw.strip() or "x") and len(digits) >= MIN_PHONE_DIGITS:
        # Stored numbers are E.164, which has no leading zero, so a national prefix 0 is dropped.
        return SearchQuery((digits.lstrip("0") or digits,))
    terms: list[str] = []
    for word in _WORD.findall(raw):
        term = word.lower()
        if term not in terms:
            terms.append(term)
    return SearchQuery(tuple(terms[:MAX_TERMS]))


def is_model_object(name: str | None, type_: str, parent_names: Any) -> bool:
    """Tell Alembic's ``include_name`` hook to leave out the search tables, indexes and
    columns when it compares the database with the models."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(SEARCH_TABLE_PREFIXES)
    if type_ == "column":
        return name not in SEARCH_COLUMNS
    return not (type_ == "index" and name in SEARCH_INDEXES)


def measure_density(session: Session, query: SearchQuery) -> SearchQuery:
    """Return ``query`` with ``dense`` set when many messages match it: on PostgreSQL at
    least ``DENSE_MATCHES`` by the planner's estimate, on SQLite at least
    ``SQLITE_DENSE_SHARE`` of all messages by a count that stops there.

    PostgreSQL's estimate comes from the statistics ANALYZE keeps on the text index, so it
    costs a plan and no reading of matches. SQLite has no estimate; FTS5 merges a prefix
    term's list of matches once per statement, which is quick next to mapping each match to
    its conversation.
    """
    if not query.terms:
        return query
    if session.get_bind().dialect.name == "sqlite":
        return SearchQuery(query.terms, dense=_sqlite_is_dense(session, query))
    plan = session.execute(
        text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM messages WHERE {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY}"),
        {"search_tsquery": query.tsquery()},
    ).scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return SearchQuery(query.terms, dense=plan[0]["Plan"]["Plan Rows"] >= DENSE_MATCHES)


def _sqlite_is_dense(session: Session, query: SearchQuery) -> bool:
    if not SQLITE_DENSE_SHARE:
        return True
    # The largest id approximates the number of messages, which count(*) would have to scan.
    enough = max(
        SQLITE_SPARSE_MATCHES, math.ceil(SQLITE_DENSE_SHARE * (session.scalar(text("SELECT max(id) FROM messages")) or 0))
    )
    # The whole words first, because every message they match the prefixes match too. FTS5
    # reads a whole word's matches as stored and can stop at the limit. A prefix term first
    # merges the matches of all its words, in time that grows with all of them.
    for fts5 in (query.fts5_words(), query.fts5()):
        found = session.scalar(
            text("SELECT count(*) FROM (SELECT 1 FROM messages_fts WHERE messages_fts MATCH :search_fts LIMIT :enough)"),
            {"search_fts": fts5, "enough": enough},
        )
        if found >= enough:
            return True
    return False


class ConversationMatches(ColumnElement[Any]):
    """A WHERE clause on ``conversations``: true for the conversations that ``query`` finds.

    Compiled per dialect, so ``ConversationFilter.condition`` stays free of a session. A
    sparse query collects the conversations of every matching message first. A dense one
    is tested per conversation while the list is read in order. On SQLite that test is the
    ``search_hit`` join that ``join_newest_match`` adds, which the statement must contain.
    """

    # Not Boolean: SQLAlchemy would append "= 1" on SQLite, which hides the IN list from
    # SQLite's planner, so it would walk the whole list in order instead of starting from the matches.
    type = NullType()
    # The SQL depends on the query's terms, so statements holding it are not cached.
    inherit_cache = False

    def __init__(self, query: SearchQuery):
        self.query = query


# The message ids that an FTS5 query matches. SQLite builds this list once per statement and
# probes it for each message. The unary + on messages.id keeps SQLite from doing the reverse:
# one index search per match.
# NOTE: building the list takes time in proportion to all matches, however few conversations
# the page tests (about 8 ms for 50,000 in bench/inbox_scale.py, see docs/benchmarks.md).
_SQLITE_MATCHING = "+messages.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :search_fts)"

# The id of a conversation's newest matching message, read from the conversation's messages
# newest first, or NULL when none matches.
_SQLITE_NEWEST_MATCH = (
    "(SELECT messages.id FROM messages INDEXED BY ix_messages_conversation"
    f" WHERE messages.conversation_id = conversations.id AND {_SQLITE_MATCHING}"
    " ORDER BY messages.id DESC LIMIT 1)"
)

# The outer join of each conversation's newest matching message on SQLite (``join_newest_match``).
_SEARCH_HIT = Message.__table__.alias("search_hit")

# Per dialect: the conversation ids of the matching messages, the test of one conversation's
# messages (for a dense query), the ids of the matching contacts, and the bind parameter that
# carries the query.
_MATCH_SQL = {
    "sqlite": (
        "SELECT messages.conversation_id FROM messages_fts"
        " JOIN messages INDEXED BY ix_messages_id_conversation ON messages.id = messages_fts.rowid"
        " WHERE messages_fts MATCH :search_fts",
        # The test is in the join's ON clause, so this statement builds the list of matches once
        # for the test and for the snippets.
        "search_hit.id IS NOT NULL",
        "SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH :search_fts",
        "search_fts",
    ),
    "postgresql": (
        f"SELECT messages.conversation_id FROM messages WHERE {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY}",
        # OFFSET 0 keeps the planner from turning the EXISTS into a join that reads every match.
        "EXISTS (SELECT 1 FROM messages WHERE messages.conversation_id = conversations.id"
        f" AND {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY} OFFSET 0)",
        f"SELECT contacts.id FROM contacts WHERE {_PG_CONTACT_VECTOR} @@ {_PG_QUERY}"
        " UNION SELECT contact_identities.contact_id FROM contact_identities"
        f" WHERE {_PG_ADDRESS_VECTOR} @@ {_PG_QUERY}",
        "search_tsquery",
    ),
}


@compiles(ConversationMatches, "sqlite")
@compiles(ConversationMatches, "postgresql")
def _compile_matches(element: ConversationMatches, compiler: Any, **kw: Any) -> str:
    if not element.query.terms:
        return "1 = 0"
    messages, dense, contacts, parameter = _MATCH_SQL[compiler.dialect.name]
    value = element.query.fts5() if parameter == "search_fts" else element.query.tsquery()
    if element.query.dense:
        sql = f"({dense} OR conversations.contact_id IN ({contacts}))"
    else:
        # One list of ids, so the database can start from the matches however few they are,
        # instead of walking the whole list in order until a page of them turns up.
        sql = (
            f"conversations.id IN ({messages} UNION ALL SELECT matched.id FROM conversations AS matched"
            f" WHERE matched.contact_id IN ({contacts}))"
        )
    return compiler.process(text(sql).bindparams(bindparam(parameter, value)), **kw)


class _NewestMatch(ColumnElement[Any]):
    """The id of the newest message of ``conversations`` that ``query`` matches, on SQLite."""

    type = NullType()
    inherit_cache = False

    def __init__(self, query: SearchQuery):
        self.query = query


@compiles(_NewestMatch, "sqlite")
def _compile_newest_match(element: _NewestMatch, compiler: Any, **kw: Any) -> str:
    statement = text(_SQLITE_NEWEST_MATCH).bindparams(bindparam("search_fts", element.query.fts5()))
    return compiler.process(statement, **kw)


def join_newest_match(statement: Select[Any], query: SearchQuery) -> Select[Any]:
    """Return ``statement`` with each conversation's newest message that ``query`` matches
    outer-joined as ``search_hit``, and that message's id (None without one) as a last column.

    Meant for a dense query on SQLite, whose ``ConversationMatches`` tests that join. The
    ids are the ``hits`` that ``search_highlights`` takes.
    """
    return statement.outerjoin(_SEARCH_HIT, _SEARCH_HIT.c.id == _NewestMatch(query)).add_columns(_SEARCH_HIT.c.id)


@dataclass(frozen=True)
class Highlight:
    """The place where a conversation matched, as text parts with ``match`` true on the found
    words: its newest matching message, or its contact when no message did (``message_id`` None)."""

    message_id: int | None
    parts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "parts": self.parts}


def search_highlights(
    session: Session, query: SearchQuery, conversations: Sequence[Conversation], hits: Mapping[int, int] | None = None
) -> dict[int, Highlight]:
    """Return, per conversation id, the snippet around the words ``query`` found.

    Meant for one page of results: the database finds the newest matching message of each
    conversation in one query, and the words are marked here. ``hits`` saves that query
    when the list statement found those messages already: the newest matching message id
    per conversation id. A conversation that only its contact matches has no entry.
    """
    if not query.terms or not conversations:
        return {}
    ids = [conversation.id for conversation in conversations]
    if hits is not None:
        hits = {conversation_id: hits[conversation_id] for conversation_id in ids if conversation_id in hits}
    elif session.get_bind().dialect.name == "postgresql":
        hits = _postgres_hits(session, query, ids)
    else:
        hits = _sqlite_hits(session, query, ids)
    texts = {
        message_id: (subject, body)
        for message_id, subject, body in session.execute(
            select(Message.id, Message.subject, Message.text).where(Message.id.in_(list(hits.values())))
        )
    } if hits else {}

    highlights: dict[int, Highlight] = {}
    for conversation in conversations:
        message_id = hits.get(conversation.id)
        if message_id is not None and message_id in texts:
            subject, body = texts[message_id]
            # The body when the words are there, else the subject that matched.
            parts = _mark(body, query.terms) or _mark(subject or "", query.terms) or _plain(body)
            highlights[conversation.id] = Highlight(message_id, parts)
        else:
            contact = conversation.contact
            values = [contact.name or "", *(identity.value for identity in contact.identities)]
            text_value = " · ".join(value for value in values if value)
            highlights[conversation.id] = Highlight(None, _mark(text_value, query.terms) or _plain(text_value))
    return highlights


def _sqlite_hits(session: Session, query: SearchQuery, conversation_ids: list[int]) -> dict[int, int]:
    # Each page conversation's messages newest first, probed in the list of matches. Only
    # the list grows with the matches. Mapping every match to its conversation instead took
    # an index search per match: 1 ms for 1,000 matches at a million messages.
    statement = (
        f"SELECT conversations.id, {_SQLITE_NEWEST_MATCH} FROM conversations"
        " WHERE conversations.id IN :conversation_ids"
    )
    rows = session.execute(
        text(statement).bindparams(bindparam("conversation_ids", expanding=True)),
        {"search_fts": query.fts5(), "conversation_ids": conversation_ids},
    )
    return {conversation_id: message_id for conversation_id, message_id in rows if message_id is not None}


def _postgres_hits(session: Session, query: SearchQuery, conversation_ids: list[int]) -> dict[int, int]:
    if query.dense:
        # Each conversation's messages newest first: a dense query matches one of them soon.
        statement = (
            "SELECT page.id, hit.id FROM unnest(CAST(:conversation_ids AS bigint[])) AS page(id)"
            " CROSS JOIN LATERAL (SELECT messages.id FROM messages WHERE messages.conversation_id = page.id"
            f"  AND {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY} ORDER BY messages.id DESC LIMIT 1) AS hit"
        )
    else:
        statement = (
            "SELECT DISTINCT ON (messages.conversation_id) messages.conversation_id, messages.id FROM messages"
            " WHERE messages.conversation_id = ANY(CAST(:conversation_ids AS bigint[]))"
            f" AND {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY} ORDER BY messages.conversation_id, messages.id DESC"
        )
    rows = session.execute(text(statement), {"conversation_ids": conversation_ids, "search_tsquery": query.tsquery()})
    return {conversation_id: message_id for conversation_id, message_id in rows}


def _fold(word: str) -> str:
    """Return ``word`` lower-cased and without accents, as SQLite's tokenizer compares words."""
    if word.isascii():
        return word.lower()  # ASCII has no accents to remove, and most words are ASCII
    return "".join(char for char in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(char))


def _mark(text_value: str, terms: Sequence[str]) -> list[dict[str, Any]]:
    """Return a window of ``text_value`` around its first word that starts with a term, as
    parts with the matching words marked, or [] when no word matches.

    NOTE: this marks words by their start, which approximates the database's tokenizer, so
    a rare match found by the database (inside an email address on PostgreSQL) may go unmarked.
    """
    flat = " ".join(text_value.split())
    words = list(_WORD.finditer(flat))
    folded_terms = [_fold(term) for term in terms]
    matched = [
        index for index, word in enumerate(words)
        if any(_fold(word.group()).startswith(term) or (term.isdigit() and term in word.group()) for term in folded_terms)
    ]
    if not matched:
        return []
    first = max(0, matched[0] - SNIPPET_TOKENS // 2)
    last = min(len(words), first + SNIPPET_TOKENS) - 1
    # Punctuation before the first word and after the last one stays when nothing is cut.
    start = words[first].start() if first > 0 else 0
    end = words[last].end() if last < len(words) - 1 else len(flat)

    parts: list[dict[str, Any]] = [{"text": "…", "match": False}] if start > 0 else []
    position = start
    for index in matched:
        word = words[index]
        if not start <= word.start() < end:
            continue
        if word.start() > position:
            parts.append({"text": flat[position:word.start()], "match": False})
        parts.append({"text": word.group(), "match": True})
        position = word.end()
    if position < end:
        parts.append({"text": flat[position:end], "match": False})
    if end < len(flat):
        parts.append({"text": "…", "match": False})
    return _merge_plain(parts)


def _merge_plain(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for part in parts:
        if merged and not part["match"] and not merged[-1]["match"]:
            merged[-1] = {"text": merged[-1]["text"] + part["text"], "match": False}
        else:
            merged.append(part)
    return merged


def _plain(text_value: str) -> list[dict[str, Any]]:
    flat = " ".join(text_value.split())
    return [{"text": flat[:SNIPPET_CHARACTERS], "match": False}] if flat else []
