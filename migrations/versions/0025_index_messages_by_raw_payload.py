"""Index messages by their raw payload

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 16:40:00.000000

The webhook worker deletes the payloads of applied status callbacks. Every delete checks
the foreign key from messages.raw_payload_id, and without an index that check read the
whole messages table: on PostgreSQL a storm of 18,000 callbacks against 14,000 messages
read 315 million rows. Building the index blocks writes to messages while it runs, about a
second per million messages.
"""

from __future__ import annotations

from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_messages_raw_payload_id', 'messages', ['raw_payload_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_messages_raw_payload_id', table_name='messages')
