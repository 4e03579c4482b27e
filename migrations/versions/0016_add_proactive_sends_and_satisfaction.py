"""Record proactive sends, satisfaction answers, contact time zones and scheduler jobs

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('proactive_sends',
    sa.Column('id', _ID, nullable=False),
    sa.Column('template_id', sa.BigInteger(), nullable=False),
    sa.Column('template_name', sa.String(length=200), nullable=False),
    sa.Column('conversation_id', _ID, nullable=False),
    sa.Column('occurrence_key', sa.String(length=100), nullable=False),
    sa.Column('trigger', sa.String(length=40), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('result', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('scheduled_for', inbox.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('message_id', _ID, nullable=True),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_proactive_sends_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_proactive_sends_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proactive_sends')),
    sa.UniqueConstraint('template_id', 'conversation_id', 'occurrence_key', name=op.f('uq_proactive_sends_template_id_conversation_id_occurrence_key'))
    )
    op.create_index(op.f('ix_proactive_sends_template_id'), 'proactive_sends', ['template_id'], unique=False)
    op.create_index('ix_proactive_sends_result_scheduled_for', 'proactive_sends', ['result', 'scheduled_for'], unique=False)
    op.create_index('ix_proactive_sends_conversation_created', 'proactive_sends', ['conversation_id', 'created_at'], unique=False)

    op.create_table('satisfaction_answers',
    sa.Column('id', _ID, nullable=False),
    sa.Column('conversation_id', _ID, nullable=False),
    sa.Column('agent_id', _ID, nullable=True),
    sa.Column('question_id', _ID, nullable=False),
    sa.Column('message_id', _ID, nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('answer', sa.String(length=50), nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_satisfaction_answers_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_satisfaction_answers_agent_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['question_id'], ['proactive_sends.id'], name=op.f('fk_satisfaction_answers_question_id_proactive_sends'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_satisfaction_answers_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_satisfaction_answers')),
    sa.UniqueConstraint('question_id', name=op.f('uq_satisfaction_answers_question_id')),
    sa.UniqueConstraint('message_id', name=op.f('uq_satisfaction_answers_message_id'))
    )
    op.create_index(op.f('ix_satisfaction_answers_conversation_id'), 'satisfaction_answers', ['conversation_id'], unique=False)
    op.create_index(op.f('ix_satisfaction_answers_agent_id'), 'satisfaction_answers', ['agent_id'], unique=False)

    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))

    op.create_index(
        'ix_conversation_activities_action_created', 'conversation_activities', ['action', 'created_at'], unique=False,
    )

    # APScheduler 3's SQLAlchemyJobStore keeps the proactive sweep's next run here, so a
    # restart after downtime catches up once. The store would create the table itself; the
    # migration does it, so that the schema comes from migrations alone.
    op.create_table('apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apscheduler_jobs'))
    )
    op.create_index(op.f('ix_apscheduler_jobs_next_run_time'), 'apscheduler_jobs', ['next_run_time'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_apscheduler_jobs_next_run_time'), table_name='apscheduler_jobs')
    op.drop_table('apscheduler_jobs')
    op.drop_index('ix_conversation_activities_action_created', table_name='conversation_activities')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('time_zone')
    op.drop_index(op.f('ix_satisfaction_answers_agent_id'), table_name='satisfaction_answers')
    op.drop_index(op.f('ix_satisfaction_answers_conversation_id'), table_name='satisfaction_answers')
    op.drop_table('satisfaction_answers')
    op.drop_index('ix_proactive_sends_conversation_created', table_name='proactive_sends')
    op.drop_index('ix_proactive_sends_result_scheduled_for', table_name='proactive_sends')
    op.drop_index(op.f('ix_proactive_sends_template_id'), table_name='proactive_sends')
    op.drop_table('proactive_sends')
