"""Hold WhatsApp replies, send templates, record opt-outs and email fallbacks

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opted_out_at', inbox.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('opted_out_keyword', sa.String(length=50), nullable=True))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_sid', sa.String(length=34), nullable=True))
        batch_op.add_column(sa.Column('content_variables', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column(
            'email_fallback_id',
            sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
            nullable=True,
        ))
        batch_op.create_foreign_key(
            batch_op.f('fk_messages_email_fallback_id_messages'), 'messages', ['email_fallback_id'], ['id'],
        )
        batch_op.create_unique_constraint(batch_op.f('uq_messages_email_fallback_id'), ['email_fallback_id'])

    with op.batch_alter_table('outbox_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_reason', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('held_at', inbox.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox_items', schema=None) as batch_op:
        batch_op.drop_column('held_at')
        batch_op.drop_column('hold_reason')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_messages_email_fallback_id'), type_='unique')
        batch_op.drop_constraint(batch_op.f('fk_messages_email_fallback_id_messages'), type_='foreignkey')
        batch_op.drop_column('email_fallback_id')
        batch_op.drop_column('content_variables')
        batch_op.drop_column('content_sid')

    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('opted_out_keyword')
        batch_op.drop_column('opted_out_at')
