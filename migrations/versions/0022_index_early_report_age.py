"""Index early delivery reports by when they arrived

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 10:00:00.000000

A status report for a send nobody recorded, such as one of another tool that sends from the
same number, used to stay forever. Storing an early report now deletes those older than a
day, and this index finds them without reading the table.
"""

from __future__ import annotations

from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_early_delivery_reports_received_at', 'early_delivery_reports', ['received_at'], unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_early_delivery_reports_received_at', table_name='early_delivery_reports')
