"""Thread by Reply-To token, subject reference and Thread-Index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'previous_conversation_id',
            sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
            nullable=True,
        ))
        batch_op.add_column(sa.Column('reply_token', sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_conversations_previous_conversation_id_conversations'),
            'conversations', ['previous_conversation_id'], ['id'],
        )
        batch_op.create_index(
            batch_op.f('ix_conversations_previous_conversation_id'), ['previous_conversation_id'], unique=False
        )

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('thread_reason', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('thread_index_root', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_thread_index_root'), ['thread_index_root'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_thread_index_root'))
        batch_op.drop_column('thread_index_root')
        batch_op.drop_column('thread_reason')

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversations_previous_conversation_id'))
        batch_op.drop_constraint(
            batch_op.f('fk_conversations_previous_conversation_id_conversations'), type_='foreignkey'
        )
        batch_op.drop_column('reply_token')
        batch_op.drop_column('previous_conversation_id')
