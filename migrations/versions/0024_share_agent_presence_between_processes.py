"""Share which agents are online between processes

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 15:00:00.000000

Automatic assignment picks among the agents who are online, which only the web process that
holds an agent's Socket.IO connection knew. A worker that ingests webhooks or mail saw nobody
online, so with separate web and worker processes nothing was ever assigned. Each web
process now writes its connected agents to this table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('agent_presence',
    sa.Column('process_id', sa.String(length=100), nullable=False),
    sa.Column('agent_id', _ID, nullable=False),
    sa.Column('connections', sa.Integer(), nullable=False),
    sa.Column('seen_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_presence_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('process_id', 'agent_id', name=op.f('pk_agent_presence'))
    )
    op.create_index(op.f('ix_agent_presence_agent_id'), 'agent_presence', ['agent_id'], unique=False)
    op.create_index(op.f('ix_agent_presence_seen_at'), 'agent_presence', ['seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_agent_presence_seen_at'), table_name='agent_presence')
    op.drop_index(op.f('ix_agent_presence_agent_id'), table_name='agent_presence')
    op.drop_table('agent_presence')
