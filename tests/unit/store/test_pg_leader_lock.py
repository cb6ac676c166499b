"""The chat poller's leader lock on a real PostgreSQL: one holder; a holder whose session
ends (terminated by the server, as when its network is cut) knows it lost the lock, and
another takes it."""

from __future__ import annotations

import psycopg
from tests.support.postgres import PostgresServer
from tests.unit.store.conftest import pg_connection

from auto_review.store.pg_leader import CHAT_POLLER_LOCK_KEY, PostgresLeaderLock


def lock_for(server: PostgresServer, database: str) -> PostgresLeaderLock:
    return PostgresLeaderLock(
        pg_connection(server, database), CHAT_POLLER_LOCK_KEY, keepalive_seconds=6
    )


def test_one_holder_until_its_session_ends(
    postgres_server: PostgresServer, pg_database: str
) -> None:
    first, second = lock_for(postgres_server, pg_database), lock_for(postgres_server, pg_database)
    try:
        assert first.try_acquire()
        assert first.try_acquire()  # already held: still true, same session
        assert not second.try_acquire()
        assert first.still_held()
        assert not second.still_held()
        with psycopg.connect(postgres_server.url(pg_database), autocommit=True) as admin:
            holders = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'auto-review leader'"
            ).fetchall()
            assert len(holders) == 1  # the follower's failed attempt left no session
            admin.execute("SELECT pg_terminate_backend(%s)", (holders[0][0],))
        assert not first.still_held()  # it notices, and stops leading
        assert second.try_acquire()
        assert not first.try_acquire()
        second.release()
        assert first.try_acquire()
    finally:
        first.release()
        second.release()


def test_an_unreachable_database_is_no_lock_and_names_no_password(
    postgres_server: PostgresServer, pg_database: str, caplog: object
) -> None:
    canary = "canary-leader-password-7781"
    from auto_review.core.secrets import Secret

    lock = PostgresLeaderLock(
        pg_connection(postgres_server, pg_database, password=Secret(canary)),
        CHAT_POLLER_LOCK_KEY,
        keepalive_seconds=6,
    )
    assert not lock.try_acquire()
    assert not lock.still_held()
    text = "\n".join(record.getMessage() for record in caplog.records)  # type: ignore[attr-defined]
    assert "leader lock: cannot connect to the PostgreSQL database" in text
    assert canary not in text
