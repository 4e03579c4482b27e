"""Faults that only the database produces, installed as triggers on a real SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine, text


@contextlib.contextmanager
def messages_rejected(engine: Engine, column: str, value: str) -> Iterator[None]:
    """Make the database reject each message inserted with ``column`` = ``value``, as a
    failing constraint would, until the block ends. ``column`` and ``value`` are trusted
    test literals."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text(
                "CREATE TRIGGER reject_message BEFORE INSERT ON messages "
                f"WHEN NEW.{column} = '{value}' "
                "BEGIN SELECT RAISE(ABORT, 'message rejected by trigger'); END"
            ))
        else:
            connection.execute(text(
                "CREATE FUNCTION reject_message() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.{column} = '{value}' THEN "
                "RAISE EXCEPTION 'message rejected by trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            ))
            connection.execute(text(
                "CREATE TRIGGER reject_message BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION reject_message()"
            ))
    try:
        yield
    finally:
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                connection.execute(text("DROP TRIGGER IF EXISTS reject_message"))
            else:
                connection.execute(text("DROP TRIGGER IF EXISTS reject_message ON messages"))
                connection.execute(text("DROP FUNCTION IF EXISTS reject_message()"))
