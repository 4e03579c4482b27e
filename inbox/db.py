"""Engine and session setup."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Up to this much of the database file is read through a memory map, which all connections
# share with the operating system's page cache. Without it, each page is read with a system
# call and copied into the connection's own 2 MB cache. At a million messages, looking up the
# conversations of 1,000 search matches took 1.3 ms that way and 0.5 ms through the map.
SQLITE_MMAP_BYTES = 1 << 30


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine. SQLite gets WAL mode, a busy timeout and enforced foreign keys."""
    if url.startswith("sqlite"):
        connect_args = kwargs.pop("connect_args", {})
        # Workers and web handlers share the engine across threads.
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _configure_sqlite)
        # pysqlite's own transaction handling defers BEGIN, which lets two writers both read
        # and then fail to upgrade their lock; BEGIN IMMEDIATE takes the write lock up front.
        # Every transaction, reads included, then holds that lock until it ends, so sessions
        # must stay short and end before slow I/O (network calls, IMAP, SMTP).
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" listener issues BEGIN.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
