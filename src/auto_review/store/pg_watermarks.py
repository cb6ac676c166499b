"""The chat poller's watermarks in PostgreSQL, shared by the replicas: the replica that
takes over the poller's leader lock resumes where the last leader's successful round
ended, not from its own older position.

One row per key (``host:owner/name``), upserted. The poller writes once per repository per
round (every `AR_POLL_INTERVAL_SECONDS`), so each call opens one short connection (with
the statement timeout of `pg_connect`) instead of keeping a pool: nothing to close, at most
one connection at a time. Errors are StoreError without the password; the poller then
keeps its round's position and tries again next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from auto_review.store.pg_connect import PgConnection
from auto_review.store.pg_schema import migrate

T = TypeVar("T")
MAX_KEY_CHARS = 300


class PostgresWatermarkStore:
    def __init__(self, connection: PgConnection, *, clock: Callable[[], float] = time.time):
        """Migrate the schema (under its advisory lock)."""
        self._connection = connection
        self._clock = clock
        self._lock = threading.Lock()
        self._run(migrate)

    async def get(self, key: str) -> datetime | None:
        row = await asyncio.to_thread(
            self._run,
            lambda db: db.execute(
                "SELECT value FROM poller_watermarks WHERE key = %s", (_check_key(key),)
            ).fetchone(),
        )
        if row is None:
            return None
        try:
            return datetime.fromisoformat(str(row[0]))
        except ValueError:
            return None  # the catch-up window, as for an unreadable file

    async def set(self, key: str, value: datetime) -> None:
        checked, text, now = _check_key(key), value.isoformat(), self._clock()

        def upsert(db: psycopg.Connection[Any]) -> None:
            with db.transaction():
                db.execute(
                    "INSERT INTO poller_watermarks (key, value, updated_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,"
                    " updated_at = EXCLUDED.updated_at",
                    (checked, text, now),
                )

        await asyncio.to_thread(self._run, upsert)

    def _run(self, operation: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._lock, contextlib.closing(self._connection.connect("poller")) as db:
            try:
                return operation(db)
            except psycopg.Error as exc:
                raise self._connection.failure("could not use", exc) from None


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a watermark key is 1..{MAX_KEY_CHARS} characters")
    return key
