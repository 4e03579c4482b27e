"""Index conversations and messages by creation time

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05 16:10:00.000000

The trend report counts conversations created per day and looks for agent replies within a
range of days. Without these indexes each of those reads every row of its table.
"""

from __future__ import annotations

from alembic import op

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_conversations_created_at', 'conversations', ['created_at'], unique=False)
    op.create_index('ix_messages_created_at', 'messages', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_messages_created_at', table_name='messages')
    op.drop_index('ix_conversations_created_at', table_name='conversations')
