"""Send WhatsApp in parts, pace senders, keep inbound content and reply links

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('message_parts',
    sa.Column('id', _ID, nullable=False),
    sa.Column('message_id', _ID, nullable=False),
    sa.Column('channel_id', _ID, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('provider_message_id', sa.String(length=998), nullable=False),
    sa.Column('delivery_status', sa.String(length=20), nullable=True),
    sa.Column('delivery_error', sa.Text(), nullable=True),
    sa.Column('sent_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_parts_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_message_parts_channel_id_channels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_parts')),
    sa.UniqueConstraint('message_id', 'position', name=op.f('uq_message_parts_message_id_position')),
    sa.UniqueConstraint('channel_id', 'provider_message_id', name=op.f('uq_message_parts_channel_id_provider_message_id'))
    )

    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_not_before', inbox.models.UTCDateTime(timezone=True), nullable=True))

    # Names stored so far came from the channels, so none of them is an agent's.
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_set_by_agent', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reply_to_message_id', _ID, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_messages_reply_to_message_id_messages'), 'messages', ['reply_to_message_id'], ['id'],
        )
        batch_op.create_index(batch_op.f('ix_messages_reply_to_message_id'), ['reply_to_message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_reply_to_message_id'))
        batch_op.drop_constraint(batch_op.f('fk_messages_reply_to_message_id_messages'), type_='foreignkey')
        batch_op.drop_column('reply_to_message_id')
        batch_op.drop_column('content')

    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('name_set_by_agent')

    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('send_not_before')

    op.drop_table('message_parts')
