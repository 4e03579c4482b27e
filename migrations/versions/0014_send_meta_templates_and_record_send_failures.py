"""Send Meta message templates and record send failures per channel

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('template_name', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('template_language', sa.String(length=20), nullable=True))

    op.create_table('send_failures',
    sa.Column('id', _ID, nullable=False),
    sa.Column('channel_id', _ID, nullable=False),
    sa.Column('message_id', _ID, nullable=True),
    sa.Column('failed_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('error_code', sa.String(length=40), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_send_failures_channel_id_channels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_send_failures_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_failures'))
    )
    op.create_index('ix_send_failures_channel_failed_at', 'send_failures', ['channel_id', 'failed_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_send_failures_channel_failed_at', table_name='send_failures')
    op.drop_table('send_failures')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('template_language')
        batch_op.drop_column('template_name')
