"""One holder at a time across processes: a session-level PostgreSQL advisory lock held on
a dedicated connection (outside the pool).

The lock lives as long as the session: a holder that exits, is killed or loses its
connection gives it up, and the server frees it when it notices the session is gone. A
killed process's socket is closed by its kernel, so that is at once; a holder cut off by
the network is noticed by the server's TCP keepalives, which this connection sets to
about ``keepalive_seconds`` (the lease period), so another process can take over within it.
The holder checks its own session as often and stops leading as soon as it fails.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from auto_review.store.pg_connect import PgConnection

log = logging.getLogger(__name__)

# "auto-review chat-poller" as a 64-bit key, distinct from the migrations' key.
CHAT_POLLER_LOCK_KEY = 0x6172_2D63_6861_7470


class PostgresLeaderLock:
    """``try_acquire`` / ``still_held`` / ``release``: blocking calls, one thread at a time
    (the caller runs them off its event loop)."""

    def __init__(self, connection: PgConnection, key: int, *, keepalive_seconds: float) -> None:
        self.connection = connection
        self.key = key
        self.keepalive_seconds = max(keepalive_seconds, 3.0)
        self._session: psycopg.Connection[Any] | None = None
        self._guard = threading.Lock()

    def _connect(self) -> psycopg.Connection[Any]:
        kwargs = self.connection.connect_kwargs()
        # Both ends notice a dead peer within about the lease period: the client to stop
        # leading, the server to free the lock for another process.
        interval = max(int(self.keepalive_seconds / 3), 1)
        kwargs.update(keepalives_idle=interval, keepalives_interval=interval, keepalives_count=2)
        kwargs["options"] += (
            f" -c tcp_keepalives_idle={interval} -c tcp_keepalives_interval={interval}"
            " -c tcp_keepalives_count=2"
        )
        kwargs["application_name"] = f"{self.connection.application_name} leader"
        return psycopg.connect(autocommit=True, **kwargs)

    def try_acquire(self) -> bool:
        """True when this process holds the lock now (it may have held it already)."""
        with self._guard:
            if self._session is not None:
                return True
            try:
                session = self._connect()
            except psycopg.Error as exc:
                log.warning(str(self.connection.failure("leader lock: cannot connect to", exc)))
                return False
            try:
                row = session.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error as exc:
                session.close()
                log.warning(str(self.connection.failure("leader lock: cannot query", exc)))
                return False
            if not row or row[0] is not True:
                session.close()
                return False
            self._session = session
            return True

    def still_held(self) -> bool:
        """True while the session that holds the lock answers; on failure it is closed."""
        with self._guard:
            session = self._session
            if session is None:
                return False
            try:
                # The lock is ours as long as this session lives; ask the server anyway.
                row = session.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid()"
                    " AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (self.key,),
                ).fetchone()
                held = bool(row and row[0] == 1)
            except psycopg.Error as exc:
                log.warning(str(self.connection.failure("leader lock: lost the session to", exc)))
                held = False
            if not held:
                session.close()
                self._session = None
            return held

    def release(self) -> None:
        """Give the lock up (closing the session frees it)."""
        with self._guard:
            if self._session is not None:
                self._session.close()
                self._session = None
