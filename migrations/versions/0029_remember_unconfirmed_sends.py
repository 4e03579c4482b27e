"""Remember when a send attempt with an unknown outcome began

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06 18:00:00.000000

A Twilio send that timed out or lost its connection may have created the message anyway, and
the Messages API takes no idempotency key. The outbox keeps the start of such an attempt in
``outbox_items.unconfirmed_since``, so that before it sends again it can ask Twilio for a
message created since then, and adopt it instead of sending a second copy.
``in_flight_since`` cannot hold it, because it marks an attempt still running and is cleared
when the outcome is recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unconfirmed_since', inbox.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox_items', schema=None) as batch_op:
        batch_op.drop_column('unconfirmed_since')
