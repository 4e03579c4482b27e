"""Add the time an update template was last enabled

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 12:00:00.000000

The proactive sweep starts a template's lookback when it was enabled, so enabling an old
template sends nothing for what happened while it was off. Templates enabled today get
their last change time, the closest stored time to when they were enabled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('update_templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enabled_at', inbox.models.UTCDateTime(timezone=True), nullable=True))
    templates = sa.table('update_templates', sa.column('enabled', sa.Boolean()),
                         sa.column('enabled_at', sa.DateTime()), sa.column('updated_at', sa.DateTime()))
    op.execute(templates.update().where(templates.c.enabled.is_(True)).values(enabled_at=templates.c.updated_at))


def downgrade() -> None:
    with op.batch_alter_table('update_templates', schema=None) as batch_op:
        batch_op.drop_column('enabled_at')
