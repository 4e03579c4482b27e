"""Search messages and contacts, and index the views and message pages

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 12:00:00.000000

SQLite gets FTS5 tables that triggers keep in step with ``messages``, ``contacts`` and
``contact_identities``, so every write path (ingest, replies, merges, bulk SQL) updates them
in its own transaction. PostgreSQL gets GIN indexes on ``to_tsvector`` expressions, which
need no triggers. The expressions here must stay identical to those in ``inbox.search``,
or the planner cannot use the indexes.

A later revision that rebuilds ``messages``, ``contacts`` or ``contact_identities`` on SQLite
(Alembic's batch mode copies the table and drops the old one) drops their triggers with it,
so it must create them again; ``tests/inbox/test_search.py`` checks that they exist.
"""

from __future__ import annotations

from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

# The text of a phone identity with its leading "+" and up to three country-code digits
# dropped, so "+4915112345678" is also found by "15112345678" (the national number).
_SQLITE_ADDRESS = (
    "value || CASE WHEN value LIKE '+%' "
    "THEN ' ' || substr(value, 3) || ' ' || substr(value, 4) || ' ' || substr(value, 5) ELSE '' END"
)

_SQLITE_UPGRADE = [
    # External content: the text is read from ``messages``; only the index is stored.
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    " subject, text, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN"
    " INSERT INTO messages_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text);"
    " END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text ON messages BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text);"
    " INSERT INTO messages_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    # Maps a matching message to its conversation without reading the message row and its text.
    "CREATE INDEX ix_messages_id_conversation ON messages (id, conversation_id)",

    # One row per contact (rowid = contact id): the name, and every address of the contact.
    "CREATE VIRTUAL TABLE contacts_fts USING fts5(name, addresses, tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER contacts_fts_insert AFTER INSERT ON contacts BEGIN"
    " INSERT INTO contacts_fts(rowid, name, addresses) VALUES (new.id, new.name, ''); END",
    "CREATE TRIGGER contacts_fts_rename AFTER UPDATE OF name ON contacts BEGIN"
    " UPDATE contacts_fts SET name = new.name WHERE rowid = new.id; END",
    "CREATE TRIGGER contacts_fts_delete AFTER DELETE ON contacts BEGIN"
    " DELETE FROM contacts_fts WHERE rowid = old.id; END",
    *[
        f"CREATE TRIGGER contact_identities_fts_{event.lower()} AFTER {event} ON contact_identities BEGIN"
        + "".join(
            f" UPDATE contacts_fts SET addresses = coalesce((SELECT group_concat({_SQLITE_ADDRESS}, ' ')"
            f" FROM contact_identities WHERE contact_id = {row}.contact_id), '') WHERE rowid = {row}.contact_id;"
            for row in rows
        )
        + " END"
        for event, rows in (("INSERT", ("new",)), ("DELETE", ("old",)), ("UPDATE", ("old", "new")))
    ],
    "INSERT INTO contacts_fts(rowid, name, addresses) SELECT contacts.id, contacts.name,"
    f" coalesce((SELECT group_concat({_SQLITE_ADDRESS}, ' ') FROM contact_identities"
    " WHERE contact_id = contacts.id), '') FROM contacts",
]

_SQLITE_DOWNGRADE = [
    "DROP TRIGGER contact_identities_fts_update",
    "DROP TRIGGER contact_identities_fts_delete",
    "DROP TRIGGER contact_identities_fts_insert",
    "DROP TRIGGER contacts_fts_delete",
    "DROP TRIGGER contacts_fts_rename",
    "DROP TRIGGER contacts_fts_insert",
    "DROP TABLE contacts_fts",
    "DROP TRIGGER messages_fts_update",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_insert",
    "DROP TABLE messages_fts",
    "DROP INDEX ix_messages_id_conversation",
]

# 'simple' folds case but does not stem, because customers write in many languages. The
# message text is cut at 100,000 characters because a tsvector holds at most 1 MB.
_POSTGRES_UPGRADE = [
    "CREATE INDEX ix_messages_search ON messages USING gin ("
    "to_tsvector('simple'::regconfig, left(coalesce(subject, '') || ' ' || text, 100000)))",
    "CREATE INDEX ix_contacts_search ON contacts USING gin ("
    "to_tsvector('simple'::regconfig, coalesce(name, '')))",
    # The parser keeps "+4915..." and "ann@example.com" as single tokens, so the address is
    # indexed a second time with its punctuation as spaces, and phone numbers without the
    # country code as for SQLite.
    "CREATE INDEX ix_contact_identities_search ON contact_identities USING gin ("
    "to_tsvector('simple'::regconfig, value || ' ' || translate(value, '@.+-_', '     ')"
    " || CASE WHEN value LIKE '+%' THEN ' ' || substr(value, 3) || ' ' || substr(value, 4)"
    " || ' ' || substr(value, 5) ELSE '' END))",
]

_POSTGRES_DOWNGRADE = [
    "DROP INDEX ix_contact_identities_search",
    "DROP INDEX ix_contacts_search",
    "DROP INDEX ix_messages_search",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        statements = _SQLITE_UPGRADE
    elif dialect == 'postgresql':
        statements = _POSTGRES_UPGRADE
    else:
        raise NotImplementedError(f"search is built for SQLite and PostgreSQL, not {dialect}")
    for statement in statements:
        op.execute(statement)

    # The filtered inbox views sort by activity within one status, with or without a priority.
    op.create_index('ix_conversations_status_activity', 'conversations',
                    ['status', 'last_message_at', 'id'], unique=False)
    op.create_index('ix_conversations_status_priority_activity', 'conversations',
                    ['status', 'priority', 'last_message_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_conversations_status_priority_activity', table_name='conversations')
    op.drop_index('ix_conversations_status_activity', table_name='conversations')
    statements = _SQLITE_DOWNGRADE if op.get_bind().dialect.name == 'sqlite' else _POSTGRES_DOWNGRADE
    for statement in statements:
        op.execute(statement)
