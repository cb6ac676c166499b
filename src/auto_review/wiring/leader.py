"""The leader lock for a one-replica-at-a-time service, from the settings: a PostgreSQL
advisory lock when ``AR_DATABASE_URL`` is set; None with SQLite, where only one process
uses the state directory and so always leads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auto_review.config import Settings
from auto_review.wiring.stores import database_connection, uses_postgres

if TYPE_CHECKING:
    from auto_review.store.pg_leader import PostgresLeaderLock


def chat_poller_lock(settings: Settings) -> PostgresLeaderLock | None:
    if not uses_postgres(settings):
        return None
    from auto_review.store.pg_leader import CHAT_POLLER_LOCK_KEY, PostgresLeaderLock

    return PostgresLeaderLock(
        database_connection(settings),
        CHAT_POLLER_LOCK_KEY,
        keepalive_seconds=settings.database_lease_seconds,
    )
