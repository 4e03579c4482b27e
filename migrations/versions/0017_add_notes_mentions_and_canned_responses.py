"""Add internal notes, @mentions of agents and canned responses

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('conversation_notes',
    sa.Column('id', BigId, nullable=False),
    sa.Column('conversation_id', BigId, nullable=False),
    sa.Column('agent_id', BigId, nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'],
                            name=op.f('fk_conversation_notes_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_conversation_notes_agent_id_agents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_notes'))
    )
    op.create_index('ix_conversation_notes_conversation', 'conversation_notes', ['conversation_id', 'id'], unique=False)

    op.create_table('note_mentions',
    sa.Column('id', BigId, nullable=False),
    sa.Column('note_id', BigId, nullable=False),
    sa.Column('agent_id', BigId, nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('read_at', inbox.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['note_id'], ['conversation_notes.id'], name=op.f('fk_note_mentions_note_id_conversation_notes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_note_mentions_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_note_mentions')),
    sa.UniqueConstraint('note_id', 'agent_id', name=op.f('uq_note_mentions_note_id_agent_id'))
    )
    op.create_index('ix_note_mentions_agent_read', 'note_mentions', ['agent_id', 'read_at', 'id'], unique=False)

    op.create_table('canned_responses',
    sa.Column('id', BigId, nullable=False),
    sa.Column('owner_id', BigId, nullable=True),
    sa.Column('title', sa.String(length=80), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by_id', BigId, nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['agents.id'], name=op.f('fk_canned_responses_owner_id_agents'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['updated_by_id'], ['agents.id'], name=op.f('fk_canned_responses_updated_by_id_agents'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_canned_responses'))
    )
    op.create_index(op.f('ix_canned_responses_owner_id'), 'canned_responses', ['owner_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_canned_responses_owner_id'), table_name='canned_responses')
    op.drop_table('canned_responses')
    op.drop_index('ix_note_mentions_agent_read', table_name='note_mentions')
    op.drop_table('note_mentions')
    op.drop_index('ix_conversation_notes_conversation', table_name='conversation_notes')
    op.drop_table('conversation_notes')
