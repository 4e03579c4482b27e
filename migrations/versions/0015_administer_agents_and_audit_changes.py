"""Administer agents, expire sign-ins, switch round robin per team, keep an audit log

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('last_seen_at', inbox.models.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('agent_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seen_at', inbox.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('ip_address', sa.String(length=45), nullable=True))

    # Every existing team assigned round robin, so they all keep doing so.
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round_robin', sa.Boolean(), nullable=False, server_default=sa.true()))

    op.create_table('password_resets',
    sa.Column('id', _ID, nullable=False),
    sa.Column('agent_id', _ID, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_by_id', _ID, nullable=True),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', inbox.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_password_resets_agent_id_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['agents.id'], name=op.f('fk_password_resets_created_by_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_resets')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_password_resets_token_hash'))
    )
    op.create_index(op.f('ix_password_resets_agent_id'), 'password_resets', ['agent_id'], unique=False)

    op.create_table('audit_events',
    sa.Column('id', _ID, nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', _ID, nullable=True),
    sa.Column('actor_label', sa.String(length=320), nullable=False),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.BigInteger(), nullable=True),
    sa.Column('target_label', sa.String(length=320), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['agents.id'], name=op.f('fk_audit_events_actor_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    op.create_index('ix_audit_events_actor', 'audit_events', ['actor_id', 'id'], unique=False)
    op.create_index('ix_audit_events_target', 'audit_events', ['target_type', 'target_id', 'id'], unique=False)
    op.create_index('ix_audit_events_action', 'audit_events', ['action', 'id'], unique=False)
    op.create_index('ix_audit_events_created_at', 'audit_events', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_events_created_at', table_name='audit_events')
    op.drop_index('ix_audit_events_action', table_name='audit_events')
    op.drop_index('ix_audit_events_target', table_name='audit_events')
    op.drop_index('ix_audit_events_actor', table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_index(op.f('ix_password_resets_agent_id'), table_name='password_resets')
    op.drop_table('password_resets')

    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('round_robin')

    with op.batch_alter_table('agent_sessions', schema=None) as batch_op:
        batch_op.drop_column('ip_address')
        batch_op.drop_column('user_agent')
        batch_op.drop_column('last_seen_at')

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('must_change_password')
