"""Add the conversation workflow: priority, snooze, labels, teams, assignment, merge, activity

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('teams',
    sa.Column('id', BigId, nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('name_key', sa.String(length=80), nullable=False),
    sa.Column('last_assigned_agent_id', BigId, nullable=True),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['last_assigned_agent_id'], ['agents.id'],
                            name=op.f('fk_teams_last_assigned_agent_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('name_key', name=op.f('uq_teams_name_key'))
    )
    op.create_table('team_members',
    sa.Column('team_id', BigId, nullable=False),
    sa.Column('agent_id', BigId, nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_members_team_id_teams'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_team_members_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'agent_id', name=op.f('pk_team_members'))
    )
    op.create_index(op.f('ix_team_members_agent_id'), 'team_members', ['agent_id'], unique=False)

    op.create_table('labels',
    sa.Column('id', BigId, nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('name_key', sa.String(length=50), nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labels')),
    sa.UniqueConstraint('name_key', name=op.f('uq_labels_name_key'))
    )
    op.create_table('conversation_labels',
    sa.Column('conversation_id', BigId, nullable=False),
    sa.Column('label_id', BigId, nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'],
                            name=op.f('fk_conversation_labels_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], name=op.f('fk_conversation_labels_label_id_labels'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('conversation_id', 'label_id', name=op.f('pk_conversation_labels'))
    )
    op.create_index(op.f('ix_conversation_labels_label_id'), 'conversation_labels', ['label_id'], unique=False)

    op.create_table('conversation_activities',
    sa.Column('id', BigId, nullable=False),
    sa.Column('conversation_id', BigId, nullable=False),
    sa.Column('agent_id', BigId, nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'],
                            name=op.f('fk_conversation_activities_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_conversation_activities_agent_id_agents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_activities'))
    )
    op.create_index('ix_conversation_activities_conversation', 'conversation_activities',
                    ['conversation_id', 'id'], unique=False)

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_open_conversations', sa.Integer(), nullable=True))

    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('default_team_id', BigId, nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_channels_default_team_id_teams'), 'teams',
                                    ['default_team_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        # Existing rows get "normal"; the model sets it on new rows.
        batch_op.add_column(sa.Column('priority', sa.String(length=10), nullable=False, server_default='normal'))
        batch_op.add_column(sa.Column('assignee_id', BigId, nullable=True))
        batch_op.add_column(sa.Column('team_id', BigId, nullable=True))
        batch_op.add_column(sa.Column('snoozed_until', inbox.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('merged_into_id', BigId, nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_conversations_assignee_id_agents'), 'agents',
                                    ['assignee_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_conversations_team_id_teams'), 'teams',
                                    ['team_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_conversations_merged_into_id_conversations'), 'conversations',
                                    ['merged_into_id'], ['id'])
        batch_op.create_index('ix_conversations_status_assignee_team', ['status', 'assignee_id', 'team_id'], unique=False)
        batch_op.create_index('ix_conversations_team_status', ['team_id', 'status'], unique=False)
        batch_op.create_index('ix_conversations_status_snoozed_until', ['status', 'snoozed_until'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_status_snoozed_until')
        batch_op.drop_index('ix_conversations_team_status')
        batch_op.drop_index('ix_conversations_status_assignee_team')
        batch_op.drop_constraint(batch_op.f('fk_conversations_merged_into_id_conversations'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_conversations_team_id_teams'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_conversations_assignee_id_agents'), type_='foreignkey')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('snoozed_until')
        batch_op.drop_column('team_id')
        batch_op.drop_column('assignee_id')
        batch_op.drop_column('priority')

    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_channels_default_team_id_teams'), type_='foreignkey')
        batch_op.drop_column('default_team_id')

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('max_open_conversations')

    op.drop_index('ix_conversation_activities_conversation', table_name='conversation_activities')
    op.drop_table('conversation_activities')
    op.drop_index(op.f('ix_conversation_labels_label_id'), table_name='conversation_labels')
    op.drop_table('conversation_labels')
    op.drop_table('labels')
    op.drop_index(op.f('ix_team_members_agent_id'), table_name='team_members')
    op.drop_table('team_members')
    op.drop_table('teams')
