"""Index the raw payloads that wait for the webhook worker

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 06:00:00.000000

A Twilio webhook is now stored as a pending raw payload and answered at once; the webhook
worker ingests the pending rows in id order. A partial index holds only those rows, so
finding them stays cheap however many processed payloads the table keeps.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_raw_payloads_pending', 'raw_payloads', ['id'], unique=False,
        sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index('ix_raw_payloads_pending', table_name='raw_payloads')
