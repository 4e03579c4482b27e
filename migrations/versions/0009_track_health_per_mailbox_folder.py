"""Track health per mailbox folder and failed Sent copies

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox_checkpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_sync_at', inbox.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('last_error_at', inbox.models.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_copy_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('sent_copy_error_at', inbox.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('sent_copy_error_at')
        batch_op.drop_column('sent_copy_error')

    with op.batch_alter_table('mailbox_checkpoints', schema=None) as batch_op:
        batch_op.drop_column('last_error_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('last_sync_at')
