"""Record automatic mail and failing addresses

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 09:12:40.218634
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('automatic', sa.String(length=20), nullable=True))

    with op.batch_alter_table('contact_identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failing_since', inbox.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failure_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact_identities', schema=None) as batch_op:
        batch_op.drop_column('failure_reason')
        batch_op.drop_column('failing_since')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('automatic')
