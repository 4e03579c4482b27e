"""Add contact notes and the record of merged contacts

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import inbox.models

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('merged_into_id', _ID, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_contacts_merged_into_id_contacts'), 'contacts', ['merged_into_id'], ['id'],
        )
        batch_op.create_index(batch_op.f('ix_contacts_merged_into_id'), ['merged_into_id'], unique=False)

    op.create_table('contact_merges',
    sa.Column('id', _ID, nullable=False),
    sa.Column('kept_contact_id', _ID, nullable=False),
    sa.Column('merged_contact_id', _ID, nullable=False),
    sa.Column('agent_id', _ID, nullable=True),
    sa.Column('merged_name', sa.String(length=200), nullable=True),
    sa.Column('merged_identities', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', inbox.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['kept_contact_id'], ['contacts.id'], name=op.f('fk_contact_merges_kept_contact_id_contacts')),
    sa.ForeignKeyConstraint(['merged_contact_id'], ['contacts.id'], name=op.f('fk_contact_merges_merged_contact_id_contacts')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_contact_merges_agent_id_agents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_merges')),
    sa.UniqueConstraint('merged_contact_id', name=op.f('uq_contact_merges_merged_contact_id'))
    )
    with op.batch_alter_table('contact_merges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_merges_kept_contact_id'), ['kept_contact_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('contact_merges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_merges_kept_contact_id'))
    op.drop_table('contact_merges')

    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_merged_into_id'))
        batch_op.drop_constraint(batch_op.f('fk_contacts_merged_into_id_contacts'), type_='foreignkey')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('notes')
