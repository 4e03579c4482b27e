"""Full-text search of conversations: message subjects and text, contact names and addresses.

The database does the searching, with no search server: SQLite through the FTS5 tables
``messages_fts`` and ``contacts_fts`` (triggers keep them in step with their tables), and
PostgreSQL through GIN indexes on ``to_tsvector('simple', ...)`` expressions. Migration 0018
creates both, and the SQL expressions below must stay identical to the ones it indexes.

A query is never passed through as search syntax. ``parse_query`` keeps only its words (runs
of letters and digits), so quotes, operators, ``*`` and ``-`` cannot cause a syntax error.
Every word must match, and each one matches the words that start with it ("refun" finds
"refund"). A conversation matches when all words appear in one of its messages, in its
contact's name, or in the contact's addresses. A query that looks like a phone number
becomes its digits, without leading zeros, so "+49 151 1234" and "0151 1234" both find
"+491511234...".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import Boolean

from inbox.models import Conversation

MAX_QUERY_LENGTH = 200
MAX_TERMS = 8
# The shortest run of digits that is searched as a phone number rather than as words.
MIN_PHONE_DIGITS = 6
# Private-use characters mark a match in the database's snippet.
# NOTE: customer text that itself contains them shifts the highlighting of that snippet,
# though the parts stay plain text.
MARK_START = "\ue000"
MARK_END = "\ue001"
SNIPPET_TOKENS = 16
# From this many matching messages on, a search tests conversations in list order instead
# of collecting every match first. NOTE: chosen from bench/inbox_scale.py at one million
# messages, where both ways cost about the same at this count.
DENSE_MATCHES = 20_000

# SQLite's FTS5 tables and their shadow tables (messages_fts_data, ...) and PostgreSQL's
# expression indexes, which the models do not declare.
SEARCH_TABLE_PREFIXES = ("messages_fts", "contacts_fts")
SEARCH_INDEXES = ("ix_messages_search", "ix_contacts_search", "ix_contact_identities_search")

_WORD = re.compile(r"[^\W_]+")
_PHONE_QUERY = re.compile(r"[\d\s+().\-/]+")

# The PostgreSQL expressions of migration 0018's indexes.
_PG_MESSAGE_VECTOR = (
    "to_tsvector('simple'::regconfig, left(coalesce(messages.subject, '') || ' ' || messages.text, 100000))"
)
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
    """Tell Alembic's ``include_name`` hook to leave out the search tables and indexes when
    it compares the database with the models."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(SEARCH_TABLE_PREFIXES)
    return not (type_ == "index" and name in SEARCH_INDEXES)


def measure_density(session: Session, query: SearchQuery) -> SearchQuery:
    """Return ``query`` with ``dense`` set when at least ``DENSE_MATCHES`` messages match it.

    Counting stops at that number, so this costs at most as much as reading that many
    entries of the index.
    """
    if not query.terms:
        return query
    if session.get_bind().dialect.name == "postgresql":
        statement = text(
            f"SELECT count(*) FROM (SELECT 1 FROM messages WHERE {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY}"
            " LIMIT :threshold) AS found"
        )
        params: dict[str, Any] = {"search_tsquery": query.tsquery(), "threshold": DENSE_MATCHES}
    else:
        statement = text(
            "SELECT count(*) FROM (SELECT 1 FROM messages_fts WHERE messages_fts MATCH :search_fts"
            " LIMIT :threshold) AS found"
        )
        params = {"search_fts": query.fts5(), "threshold": DENSE_MATCHES}
    found = session.execute(statement, params).scalar_one()
    return SearchQuery(query.terms, dense=found >= DENSE_MATCHES)


class ConversationMatches(ColumnElement[bool]):
    """A WHERE clause on ``conversations``: true for the conversations that ``query`` finds.

    Compiled per dialect, so ``ConversationFilter.condition`` stays free of a session. A
    sparse query collects the conversations of every matching message first; a dense one
    is tested per conversation, newest message first, while the list is read in order.
    """

    type = Boolean()
    # The SQL depends on the query's terms, so statements holding it are not cached.
    inherit_cache = False

    def __init__(self, query: SearchQuery):
        self.query = query


# Per dialect: the clause for a sparse query, for a dense one, for the contact, and the
# bind parameter that carries the query.
_MATCH_SQL = {
    "sqlite": (
        "conversations.id IN (SELECT messages.conversation_id FROM messages_fts"
        " JOIN messages ON messages.id = messages_fts.rowid WHERE messages_fts MATCH :search_fts)",
        # FTS5 tests a single row cheaply when the MATCH also names its rowid.
        "EXISTS (SELECT 1 FROM messages WHERE messages.conversation_id = conversations.id"
        " AND EXISTS (SELECT 1 FROM messages_fts WHERE messages_fts MATCH :search_fts"
        " AND messages_fts.rowid = messages.id))",
        "conversations.contact_id IN (SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH :search_fts)",
        "search_fts",
    ),
    "postgresql": (
        f"conversations.id IN (SELECT messages.conversation_id FROM messages WHERE {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY})",
        # OFFSET 0 keeps the planner from turning the EXISTS into a join that reads every match.
        "EXISTS (SELECT 1 FROM messages WHERE messages.conversation_id = conversations.id"
        f" AND {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY} OFFSET 0)",
        f"conversations.contact_id IN (SELECT contacts.id FROM contacts WHERE {_PG_CONTACT_VECTOR} @@ {_PG_QUERY})"
        " OR conversations.contact_id IN (SELECT contact_identities.contact_id FROM contact_identities"
        f" WHERE {_PG_ADDRESS_VECTOR} @@ {_PG_QUERY})",
        "search_tsquery",
    ),
}


@compiles(ConversationMatches, "sqlite")
@compiles(ConversationMatches, "postgresql")
def _compile_matches(element: ConversationMatches, compiler: Any, **kw: Any) -> str:
    if not element.query.terms:
        return "1 = 0"
    sparse, dense, contact, parameter = _MATCH_SQL[compiler.dialect.name]
    value = element.query.fts5() if parameter == "search_fts" else element.query.tsquery()
    clause = text(f"({dense if element.query.dense else sparse} OR {contact})").bindparams(bindparam(parameter, value))
    return compiler.process(clause, **kw)


@dataclass(frozen=True)
class Highlight:
    """Where a conversation matched: the newest matching message, or its contact when no
    message did (``message_id`` None), as text parts with ``match`` true on the found words."""

    message_id: int | None
    parts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "parts": self.parts}


def search_highlights(
    session: Session, query: SearchQuery, conversations: Sequence[Conversation]
) -> dict[int, Highlight]:
    """Return, per conversation id, the snippet around the words ``query`` found.

    Meant for one page of results: on SQLite it runs one small query per conversation, on
    PostgreSQL one for the page.
    """
    if not query.terms or not conversations:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        snippets = _postgres_snippets(session, query, [c.id for c in conversations])
    else:
        snippets = _sqlite_snippets(session, query, [c.id for c in conversations])

    highlights: dict[int, Highlight] = {}
    for conversation in conversations:
        found = snippets.get(conversation.id)
        if found is not None:
            message_id, marked = found
            highlights[conversation.id] = Highlight(message_id, _parts(marked))
        else:
            highlights[conversation.id] = Highlight(None, _contact_parts(query, conversation))
    return highlights


def _sqlite_snippets(session: Session, query: SearchQuery, conversation_ids: list[int]) -> dict[int, tuple[int, str]]:
    if query.dense:
        # Each conversation's messages newest first: a dense query matches one of them soon.
        newest_match = text(
            "SELECT messages.id FROM messages WHERE messages.conversation_id = :conversation_id"
            " AND EXISTS (SELECT 1 FROM messages_fts WHERE messages_fts MATCH :search_fts"
            " AND messages_fts.rowid = messages.id) ORDER BY messages.id DESC LIMIT 1"
        )
        hits = {}
        for conversation_id in conversation_ids:
            message_id = session.execute(
                newest_match, {"conversation_id": conversation_id, "search_fts": query.fts5()}
            ).scalar()
            if message_id is not None:
                hits[conversation_id] = message_id
    else:
        # Few messages match, so reading all of them is cheaper than walking long threads.
        rows = session.execute(
            text(
                "SELECT messages.conversation_id, max(messages.id) FROM messages_fts"
                " JOIN messages ON messages.id = messages_fts.rowid WHERE messages_fts MATCH :search_fts"
                " AND messages.conversation_id IN :conversation_ids GROUP BY messages.conversation_id"
            ).bindparams(bindparam("conversation_ids", expanding=True)),
            {"search_fts": query.fts5(), "conversation_ids": conversation_ids},
        )
        hits = {conversation_id: message_id for conversation_id, message_id in rows}

    snippet = text(
        "SELECT snippet(messages_fts, -1, :mark_start, :mark_end, '…', :tokens) FROM messages_fts"
        " WHERE messages_fts MATCH :search_fts AND messages_fts.rowid = :message_id"
    )
    found: dict[int, tuple[int, str]] = {}
    for conversation_id, message_id in hits.items():
        marked = session.execute(snippet, {
            "mark_start": MARK_START, "mark_end": MARK_END, "tokens": SNIPPET_TOKENS,
            "search_fts": query.fts5(), "message_id": message_id,
        }).scalar()
        found[conversation_id] = (message_id, marked or "")
    return found


def _postgres_snippets(session: Session, query: SearchQuery, conversation_ids: list[int]) -> dict[int, tuple[int, str]]:
    # NOTE: ts_headline leaves out what its parser takes for HTML tags ("<b>"), so a
    # PostgreSQL snippet can lack text that the SQLite one shows.
    options = (
        f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={SNIPPET_TOKENS + 4}, MinWords=8,"
        " MaxFragments=1, FragmentDelimiter=…"
    )
    if query.dense:
        hits_sql = (
            "SELECT page.id AS conversation_id, hit.id FROM unnest(CAST(:conversation_ids AS bigint[])) AS page(id)"
            " CROSS JOIN LATERAL (SELECT messages.id FROM messages WHERE messages.conversation_id = page.id"
            f"  AND {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY} ORDER BY messages.id DESC LIMIT 1) AS hit"
        )
    else:
        hits_sql = (
            "SELECT DISTINCT ON (messages.conversation_id) messages.conversation_id, messages.id FROM messages"
            f" WHERE messages.conversation_id = ANY(CAST(:conversation_ids AS bigint[])) AND {_PG_MESSAGE_VECTOR} @@ {_PG_QUERY}"
            " ORDER BY messages.conversation_id, messages.id DESC"
        )
    statement = text(
        "SELECT hits.conversation_id, messages.id, ts_headline('simple'::regconfig,"
        f" left(coalesce(messages.subject, '') || ' ' || messages.text, 100000), {_PG_QUERY}, :options)"
        f" FROM ({hits_sql}) AS hits JOIN messages ON messages.id = hits.id"
    )
    rows = session.execute(statement, {
        "conversation_ids": conversation_ids, "search_tsquery": query.tsquery(), "options": options,
    })
    return {conversation_id: (message_id, marked) for conversation_id, message_id, marked in rows}


def _parts(marked: str) -> list[dict[str, Any]]:
    """Split a snippet with match marks into plain text parts, so no client renders it as HTML."""
    parts: list[dict[str, Any]] = []
    flat = " ".join(marked.split())
    for index, piece in enumerate(re.split(f"[{MARK_START}{MARK_END}]", flat)):
        if piece:
            # Marks alternate start, end, start..., so odd pieces are the found words.
            parts.append({"text": piece, "match": index % 2 == 1})
    return parts


def _contact_parts(query: SearchQuery, conversation: Conversation) -> list[dict[str, Any]]:
    """Return the contact's name and addresses with the words that start with a term marked."""
    contact = conversation.contact
    values: Iterable[str] = [contact.name or "", *(identity.value for identity in contact.identities)]
    text_value = " · ".join(value for value in values if value)
    parts: list[dict[str, Any]] = []
    position = 0
    for word in re.finditer(r"[^\W_]+", text_value):
        lowered = word.group().lower()
        if not any(lowered.startswith(term) or (term.isdigit() and term in lowered) for term in query.terms):
            continue
        if word.start() > position:
            parts.append({"text": text_value[position:word.start()], "match": False})
        parts.append({"text": word.group(), "match": True})
        position = word.end()
    if position < len(text_value):
        parts.append({"text": text_value[position:], "match": False})
    return parts
