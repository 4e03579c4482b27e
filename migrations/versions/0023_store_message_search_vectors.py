"""Store each message's search vector on PostgreSQL

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 14:00:00.000000

Migration 0019 indexed an expression, so a search that tests a conversation's messages one by
one (a common word, and the snippets of every search) computed each message's vector again.
A generated column computes it once, when the message is written, and the GIN index moves to
that column. Adding the column rewrites the messages table under an exclusive lock: about a
minute per million messages, during which nothing can be stored. SQLite keeps its FTS5
tables and has nothing to change.
"""

from __future__ import annotations

from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

# The expression of migration 0019's index, unchanged, so that search finds the same messages.
_VECTOR = "to_tsvector('simple'::regconfig, left(coalesce(subject, '') || ' ' || text, 100000))"


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("DROP INDEX ix_messages_search")
    op.execute(f"ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({_VECTOR}) STORED")
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search_vector)")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("DROP INDEX ix_messages_search")
    op.execute("ALTER TABLE messages DROP COLUMN search_vector")
    op.execute(f"CREATE INDEX ix_messages_search ON messages USING gin ({_VECTOR})")
