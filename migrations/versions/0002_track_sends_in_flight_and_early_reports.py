"""Track outbox sends in flight and keep early delivery reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 20:40:26.635927
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('early_delivery_reports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('provider_message_id', sa.String(length=998), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('error_code', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('received_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_early_delivery_reports_channel_id_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_early_delivery_reports')),
    sa.UniqueConstraint('channel_id', 'provider_message_id', 'state', name=op.f('uq_early_delivery_reports_channel_id_provider_message_id_state'))
    )
    with op.batch_alter_table('outbox_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('in_flight_since', inbox.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claim_token', sa.String(length=64), nullable=True))

    # A pending item that still holds a lease from the previous release may be mid-send in a
    # dispatcher that is gone. Marking it in flight makes the new dispatcher report it to the
    # agent once the lease expires, instead of sending it a second time.
    op.execute(
        "UPDATE outbox_items SET in_flight_since = updated_at "
        "WHERE status = 'pending' AND locked_until IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('outbox_items', schema=None) as batch_op:
        batch_op.drop_column('claim_token')
        batch_op.drop_column('in_flight_since')

    op.drop_table('early_delivery_reports')
