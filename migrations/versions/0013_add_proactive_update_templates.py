"""Add proactive update templates

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('update_templates',
    sa.Column('id', _ID, nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('trigger', sa.String(length=40), nullable=False),
    sa.Column('trigger_params', sa.JSON(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('email_subject', sa.Text(), nullable=False),
    sa.Column('email_body', sa.Text(), nullable=False),
    sa.Column('whatsapp_body', sa.Text(), nullable=False),
    sa.Column('whatsapp_content_sid', sa.String(length=34), nullable=True),
    sa.Column('whatsapp_variables', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', _ID, nullable=True),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['agents.id'],
                            name=op.f('fk_update_templates_created_by_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_update_templates')),
    sa.UniqueConstraint('name', name=op.f('uq_update_templates_name'))
    )
    op.create_index('ix_update_templates_trigger_enabled', 'update_templates', ['trigger', 'enabled'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_update_templates_trigger_enabled', table_name='update_templates')
    op.drop_table('update_templates')
