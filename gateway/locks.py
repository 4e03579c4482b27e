"""PostgreSQL session-level advisory locks, each held on a connection of its own.

A process that holds such a lock keeps it until it releases it or its connection ends,
so when the process dies PostgreSQL frees the lock for a standby. The proactive scheduler's
leader election and the mailbox readers' leases use them.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock on a connection of its own.

    ``key`` is a non-negative bigint, and ``name`` names the lock in log lines.
    """

    def __init__(self, engine: Engine, key: int, name: str):
        # NullPool: closing the connection really closes it, so a lock never stays behind
        # on a pooled connection.
        self._engine = create_engine(engine.url, poolclass=NullPool)
        self.key = key
        self.name = name
        self._connection: Connection | None = None
        # Threads may share the one connection (the scheduler's election thread and its sweep job).
        self._guard = threading.RLock()

    @property
    def held(self) -> bool:
        return self._connection is not None

    def try_acquire(self) -> bool:
        """Take the lock unless another session has it. Returns whether this session has it now."""
        with self._guard:
            return self._try_acquire()

    def _try_acquire(self) -> bool:
        if self._connection is not None:
            return True
        try:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as error:
            log.warning("%s: cannot connect to the database: %s", self.name, error)
            return False
        try:
            # Keepalives let the server notice a vanished holder within about a minute, not
            # Linux's default two hours, and free the lock. A Unix socket ignores them.
            connection.execute(text(
                "SELECT set_config('tcp_keepalives_idle', '30', false),"
                " set_config('tcp_keepalives_interval', '10', false),"
                " set_config('tcp_keepalives_count', '3', false)"
            ))
            acquired = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar())
        except DBAPIError as error:
            log.warning("%s: acquiring failed: %s", self.name, error)
            connection.close()
            return False
        if not acquired:
            connection.close()
            return False
        self._connection = connection
        return True

    def still_held(self) -> bool:
        """Return whether the lock's connection is alive and still holds the lock."""
        with self._guard:
            return self._still_held()

    def _still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            held = self._connection.execute(
                # pg_locks shows a bigint key as two 32-bit halves, with objsubid 1.
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND classid::bigint = :high AND objid::bigint = :low "
                    "AND objsubid = 1"
                ),
                {"high": self.key >> 32, "low": self.key & 0xFFFFFFFF},
            ).scalar()
        except DBAPIError as error:
            log.warning("%s lost with its connection: %s", self.name, error)
            self._drop()
            return False
        if not held:
            self._drop()
        return bool(held)

    def release(self) -> None:
        with self._guard:
            self._release()

    def _release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        except DBAPIError as error:
            log.warning("%s: unlock failed, closing its connection instead: %s", self.name, error)
        self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except DBAPIError:
                pass  # the connection is gone already, and with it the lock

    def dispose(self) -> None:
        self.release()
        self._engine.dispose()
