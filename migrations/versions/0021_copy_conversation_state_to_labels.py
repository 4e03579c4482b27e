"""Copy each conversation's status, priority and activity to its labels, for labelled views

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 14:00:00.000000

A view filtered by a label (with a status and a priority, or without) used to walk the
conversations of that status in activity order and test the label on each, so its cost grew
with the conversations that lack the label. ``conversation_labels`` now carries the
conversation's ``status``, ``priority`` and ``last_message_at``, and indexes that start with
the label read one page of a labelled view in order.

Triggers keep the copies equal to the conversation on every write path (the ORM, bulk
updates, merges): a new label row copies its conversation's values, and a change of the
three columns on ``conversations`` is copied to its label rows. A later revision that
rebuilds ``conversations`` or ``conversation_labels`` on SQLite (Alembic's batch mode copies
the table and drops the old one) drops these triggers with it, so it must create them again;
``tests/inbox/test_label_views.py`` checks that they exist.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

_COPIED = ('status', 'priority', 'last_message_at')
_CHANGED = " OR ".join(f"old.{column} IS NOT new.{column}" for column in _COPIED)

_SQLITE_UPGRADE = [
    # SQLite cannot change NEW in a BEFORE trigger, so the row is completed after its insert.
    "CREATE TRIGGER conversation_labels_copy AFTER INSERT ON conversation_labels BEGIN"
    " UPDATE conversation_labels SET (status, priority, last_message_at) ="
    " (SELECT status, priority, last_message_at FROM conversations WHERE id = new.conversation_id)"
    " WHERE conversation_id = new.conversation_id AND label_id = new.label_id; END",
    "CREATE TRIGGER conversations_label_copies AFTER UPDATE OF status, priority, last_message_at"
    f" ON conversations WHEN {_CHANGED} BEGIN"
    " UPDATE conversation_labels SET status = new.status, priority = new.priority,"
    " last_message_at = new.last_message_at WHERE conversation_id = new.id; END",
]

_SQLITE_DOWNGRADE = [
    "DROP TRIGGER conversations_label_copies",
    "DROP TRIGGER conversation_labels_copy",
]

_POSTGRES_UPGRADE = [
    "CREATE FUNCTION conversation_labels_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " SELECT status, priority, last_message_at INTO NEW.status, NEW.priority, NEW.last_message_at"
    " FROM conversations WHERE id = NEW.conversation_id; RETURN NEW; END $$",
    "CREATE TRIGGER conversation_labels_copy BEFORE INSERT OR UPDATE OF conversation_id ON conversation_labels"
    " FOR EACH ROW EXECUTE FUNCTION conversation_labels_copy()",
    "CREATE FUNCTION conversations_label_copies() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE conversation_labels SET status = NEW.status, priority = NEW.priority,"
    " last_message_at = NEW.last_message_at WHERE conversation_id = NEW.id; RETURN NULL; END $$",
    "CREATE TRIGGER conversations_label_copies AFTER UPDATE OF status, priority, last_message_at"
    f" ON conversations FOR EACH ROW WHEN ({_CHANGED.replace('IS NOT', 'IS DISTINCT FROM')})"
    " EXECUTE FUNCTION conversations_label_copies()",
]

_POSTGRES_DOWNGRADE = [
    "DROP TRIGGER conversations_label_copies ON conversations",
    "DROP FUNCTION conversations_label_copies()",
    "DROP TRIGGER conversation_labels_copy ON conversation_labels",
    "DROP FUNCTION conversation_labels_copy()",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in ('sqlite', 'postgresql'):
        raise NotImplementedError(f"label views are built for SQLite and PostgreSQL, not {dialect}")
    op.add_column('conversation_labels', sa.Column('status', sa.String(length=20), nullable=True))
    op.add_column('conversation_labels', sa.Column('priority', sa.String(length=10), nullable=True))
    op.add_column('conversation_labels',
                  sa.Column('last_message_at', inbox.models.UTCDateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE conversation_labels SET status = conversations.status, priority = conversations.priority,"
        " last_message_at = conversations.last_message_at FROM conversations"
        " WHERE conversations.id = conversation_labels.conversation_id"
    )
    for statement in _SQLITE_UPGRADE if dialect == 'sqlite' else _POSTGRES_UPGRADE:
        op.execute(statement)

    # One label in activity order; with one status; with one status and one priority.
    op.drop_index('ix_conversation_labels_label_id', table_name='conversation_labels')
    op.create_index('ix_conversation_labels_label_activity', 'conversation_labels',
                    ['label_id', 'last_message_at', 'conversation_id'], unique=False)
    op.create_index('ix_conversation_labels_label_status_activity', 'conversation_labels',
                    ['label_id', 'status', 'last_message_at', 'conversation_id'], unique=False)
    op.create_index('ix_conversation_labels_label_status_priority_activity', 'conversation_labels',
                    ['label_id', 'status', 'priority', 'last_message_at', 'conversation_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_conversation_labels_label_status_priority_activity', table_name='conversation_labels')
    op.drop_index('ix_conversation_labels_label_status_activity', table_name='conversation_labels')
    op.drop_index('ix_conversation_labels_label_activity', table_name='conversation_labels')
    op.create_index('ix_conversation_labels_label_id', 'conversation_labels', ['label_id'], unique=False)
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_DOWNGRADE if dialect == 'sqlite' else _POSTGRES_DOWNGRADE:
        op.execute(statement)
    with op.batch_alter_table('conversation_labels') as batch:
        batch.drop_column('last_message_at')
        batch.drop_column('priority')
        batch.drop_column('status')
