"""Keep applied status callbacks for a day

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 17:10:00.000000

The webhook worker used to delete a Twilio status callback once it was applied, so a
replay of the same callback was queued and applied again. It now marks the callback
processed, which makes a replay within a day a no-op at the door, and deletes it after a
day. This partial index finds the callbacks to delete.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

_APPLIED_STATUSES = "status = 'processed' AND format = 'twilio-status-form'"


def upgrade() -> None:
    op.create_index(
        'ix_raw_payloads_applied_statuses', 'raw_payloads', ['received_at'], unique=False,
        sqlite_where=sa.text(_APPLIED_STATUSES), postgresql_where=sa.text(_APPLIED_STATUSES),
    )


def downgrade() -> None:
    op.drop_index('ix_raw_payloads_applied_statuses', table_name='raw_payloads')
    # The code of revision 0026 deletes applied callbacks and never looks at kept ones.
    op.execute(f"DELETE FROM raw_payloads WHERE {_APPLIED_STATUSES}")
