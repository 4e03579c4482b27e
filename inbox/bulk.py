"""Statements over many rows at once: inserts that return the ids in the order of their
rows, and conditions on a set of values."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, String, Table, any_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` and return their ids, in the order of ``rows``.

    On PostgreSQL every column's values go in as one array parameter, and ``unnest`` turns
    the arrays back into rows (see ``_unnest_insert``). SQLite does not promise the order of
    RETURNING rows, so SQLAlchemy would send one statement per row there. Instead, the ids
    are numbered from the table's highest id, as SQLite itself numbers them. That is safe
    because every SQLite transaction here holds the write lock from its first statement on
    (``BEGIN IMMEDIATE``, see ``inbox.db``), so nobody inserts in between.
    """
    if not rows:
        return []
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        start = session.execute(select(func.max(table.c.id))).scalar() or 0
        ids = list(range(start + 1, start + 1 + len(rows)))
        session.execute(insert(table), [{**row, "id": id_} for row, id_ in zip(rows, ids)])
        return ids
    if dialect.name == "postgresql":
        return _unnest_insert(session, dialect, table, rows)
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(session.execute(statement, rows).scalars())


def _unnest_insert(session: Session, dialect: Dialect, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows with one statement whose text depends only on the table and columns.

    SQLAlchemy's multi-row INSERT renders a placeholder per value, so its text grows with the
    batch and differs between batch sizes. psycopg caches its parsing of a statement's text
    only up to 4,096 characters and 50 parameters, and PostgreSQL parses and plans each text
    anew, so a batch of a hundred webhooks paid both for every table it wrote. Here the text
    contains one array parameter per column: psycopg parses it once, and after a few executions
    it becomes a prepared statement. The arrays go in binary format, which spares psycopg the
    quoting of every text value that the text format of an array needs.

    PostgreSQL draws the ids from the sequence in the order of the SELECT's ORDER BY, so
    sorting the returned ids gives the ids of the rows in order.
    """
    named = tuple(rows[0])
    if any(len(row) != len(named) for row in rows):
        raise ValueError(
            f"invalid rows for {table.name}: each row must name the columns of the first, {', '.join(named)}"
        )
    # The Python-side defaults that SQLAlchemy's own INSERT would fill in, once per row. Those
    # of the models take no argument, and SQLAlchemy wraps them to take its context.
    defaults = [
        column for column in table.columns
        if column.name not in rows[0] and column.default is not None and not column.default.is_sequence
    ]
    names = named + tuple(column.name for column in defaults)
    statement, processors = _unnest_statement(dialect, table, names)
    columns = [[row[name] for row in rows] for name in named]
    for column in defaults:
        default = column.default
        columns.append([default.arg(None) for _ in rows] if default.is_callable else [default.arg] * len(rows))
    columns = [
        [process(value) for value in values] if process else values
        for values, process in zip(columns, processors)
    ]
    ids = session.connection().exec_driver_sql(statement, tuple(columns)).scalars().all()
    return sorted(ids)


@cache
def _unnest_statement(
    dialect: Dialect, table: Table, names: tuple[str, ...]
) -> tuple[str, list[Callable[[Any], Any] | None]]:
    """Return the INSERT ... SELECT FROM unnest statement for these columns, and each column's
    bind processor (None when the driver takes the Python value as it is)."""
    quote = dialect.identifier_preparer.quote
    columns = [table.c[name] for name in names]
    arrays = ", ".join(f"%b::{_unbounded(column.type).compile(dialect=dialect)}[]" for column in columns)
    listed = ", ".join(quote(name) for name in names)
    statement = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({listed}) "
        f"SELECT {listed} FROM unnest({arrays}) WITH ORDINALITY AS batch({listed}, batch_position) "
        f"ORDER BY batch_position RETURNING {quote('id')}"
    )
    processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
    return statement, processors


def one_of(session: Session, column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """Return the condition that ``column`` equals one of ``values``.

    On PostgreSQL it is ``column = ANY(array)`` with one parameter, so that its statement's
    text stays the same for any number of values (see ``_unnest_insert`` for why that
    matters). Elsewhere it is ``column IN (...)``.
    """
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(_unbounded(column.type))))
    return column.in_(values)


def _unbounded(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    """Return ``type_`` without its length limit, for the element type of an array parameter.

    PostgreSQL cuts a value that is too long when it is cast to ``VARCHAR(n)`` explicitly,
    without an error. With the column's own type, an over-long value would be stored cut
    instead of rejected, and ``one_of`` would match a stored value that is only its prefix.
    """
    if isinstance(type_, String) and type_.length is not None:
        type_ = type_.copy()
        type_.length = None
    return type_
