"""Connections to PostgreSQL: plain connection settings in, a bounded pool out.

The composition root (`wiring/stores.py`) turns the settings into a :class:`PgConnection`;
nothing here reads settings. Every connection gets a `statement_timeout` (and the same
`lock_timeout`), a connect timeout, TCP keepalives and an `application_name`; TLS is
`verify-full` against the given CA file, or off (loopback, or the operator's explicit
`sslmode=disable`).

The password never appears in an error: driver messages are passed through
:meth:`PgConnection.scrub` (which removes it) and carry only what libpq said, never the
connection string.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from auto_review.core.secrets import Secret
from auto_review.store.base import StoreBusy, StoreClosed, StoreError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
POOL_WAIT_SECONDS = 5.0  # a caller that finds no free connection in this time fails
FORWARDED_MAX_IDLE_SECONDS = 300.0  # below the egress proxy's idle timeout (600 s)
TRANSACTION_ATTEMPTS = 4  # a deadlock or serialization failure between replicas: again
T = TypeVar("T")


class DatabaseUnavailable(StoreError):
    """The database cannot be reached or refused the connection (wrong password, ...)."""


@dataclass(frozen=True, slots=True)
class PgConnection:
    """Where and how to connect; built from settings by the composition root."""

    host: str
    port: int
    dbname: str
    user: str
    password: Secret | None
    ca_file: Path | None  # set: TLS verify-full against it; None: no TLS
    pool_size: int = 10
    statement_timeout_seconds: float = 30.0
    application_name: str = "auto-review"
    pool_wait_seconds: float = POOL_WAIT_SECONDS
    # (address, port) to connect to instead of host:port, e.g. the embedded container's
    # forward to the database; `host` still names the server for TLS verification.
    via: tuple[str, int] | None = None

    def display(self) -> str:
        """Where the database is, for messages (never the password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}/{self.dbname}"

    def connect_kwargs(self) -> dict[str, Any]:
        timeout_ms = max(int(self.statement_timeout_seconds * 1000), 1)
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": self.application_name,
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}"
            f" -c idle_in_transaction_session_timeout={timeout_ms * 2}",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # Never a password from ~/.pgpass: only what the settings say.
            "passfile": "/dev/null",
        }
        if self.via is not None:
            kwargs["hostaddr"], kwargs["port"] = self.via
        if self.password is not None:
            kwargs["password"] = self.password.reveal()
        if self.ca_file is not None:
            kwargs["sslmode"] = "verify-full"
            kwargs["sslrootcert"] = str(self.ca_file)
        else:
            kwargs["sslmode"] = "disable"
        return kwargs

    def scrub(self, text: str) -> str:
        """``text`` without the password (defence in depth: libpq does not quote it)."""
        if self.password is not None and self.password.reveal():
            text = text.replace(self.password.reveal(), "***")
        return text

    def failure(self, what: str, exc: BaseException) -> DatabaseUnavailable:
        detail = self.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        suffix = f": {detail}" if detail else ""
        return DatabaseUnavailable(
            f"{what} the PostgreSQL database {self.display()} ({type(exc).__name__}{suffix})"
        )

    def connect(self, purpose: str = "") -> psycopg.Connection[Any]:
        """One connection, outside the pool (migrations, LISTEN); autocommit off. A
        `purpose` is appended to its application_name (seen in pg_stat_activity)."""
        kwargs = self.connect_kwargs()
        if purpose:
            kwargs["application_name"] = f"{self.application_name}-{purpose}"
        try:
            return psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            raise self.failure("cannot connect to", exc) from None

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """A bounded pool (one connection kept open, at most `pool_size`), opened."""
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            kwargs=self.connect_kwargs(),
            min_size=1,
            max_size=self.pool_size,
            timeout=self.pool_wait_seconds,
            name="auto-review",
            open=False,
            reconnect_timeout=CONNECT_TIMEOUT_SECONDS * 6,
            # Through the embedded container's forward, a tunnel idle for 10 minutes is
            # closed by the egress proxy: check each connection as it is handed out (one
            # round trip; a closed one is replaced) and close idle extras sooner.
            check=ConnectionPool.check_connection if self.via is not None else None,
            max_idle=FORWARDED_MAX_IDLE_SECONDS if self.via is not None else 600.0,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS + 5)
        except Exception as exc:
            pool.close()
            raise self.failure("cannot open a connection pool to", exc) from None
        return pool


def run_transaction(
    pool: ConnectionPool[Any],
    connection: PgConnection,
    operation: Callable[[psycopg.Connection[Any]], T],
    store: str,
) -> T:
    """``operation`` in one transaction on a pooled connection; retried on a deadlock or
    serialization failure (another replica); driver and pool errors as the store errors
    (``store`` names the store in their messages: "state", "review")."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            with pool.connection() as db, db.transaction():
                return operation(db)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == TRANSACTION_ATTEMPTS:
                raise StoreError(
                    f"the {store} database kept aborting the transaction (concurrent "
                    "replicas); try again"
                ) from None
        except PoolTimeout:
            raise StoreBusy(
                "no free database connection in time (AR_DATABASE_POOL_SIZE); retry later"
            ) from None
        except PoolClosed:
            raise StoreClosed(f"the {store} store is closed") from None
        except psycopg.Error as exc:
            raise connection.failure("could not use", exc) from None
    raise AssertionError("unreachable")
