"""Download WhatsApp media after the message is stored

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 23:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_url', sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column('fetch_status', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('fetch_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_fetch_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_attachments_fetch_due', ['fetch_status', 'next_fetch_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_attachments_fetch_due')
        batch_op.drop_column('next_fetch_at')
        batch_op.drop_column('fetch_attempts')
        batch_op.drop_column('fetch_status')
        batch_op.drop_column('source_url')
