"""Never reuse update template ids on SQLite

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 22:00:00.000000

The update log keeps a deleted template's id without a foreign key. SQLite gave the highest
id again to the next template after that one was deleted, so the log showed old rows under
the new template, and an update held for quiet hours went out with the new template's text.
SQLite's AUTOINCREMENT never hands out an id again, so the table is rebuilt with it.
PostgreSQL's sequence never reuses an id, so nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "update_templates", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
