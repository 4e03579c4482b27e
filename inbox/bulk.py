"""Multi-row inserts that return the new ids in the order of their rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` and return their ids, in the order of ``rows``.

    PostgreSQL takes one INSERT ... RETURNING per page of rows. SQLite does not promise the
    order of RETURNING rows, so SQLAlchemy would send one statement per row there. Instead,
    the ids are numbered from the table's highest id, as SQLite itself numbers them. That
    is safe because every SQLite transaction here holds the write lock from its first
    statement on (``BEGIN IMMEDIATE``, see ``inbox.db``), so nobody inserts in between.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name == "sqlite":
        start = session.execute(select(func.max(table.c.id))).scalar() or 0
        ids = list(range(start + 1, start + 1 + len(rows)))
        session.execute(insert(table), [{**row, "id": id_} for row, id_ in zip(rows, ids)])
        return ids
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(session.execute(statement, rows).scalars())
