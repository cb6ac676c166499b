"""The chat poller's watermarks in a real PostgreSQL: shared by replicas, upserted, errors
without the password."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from tests.support.ports import closed_port
from tests.unit.store.conftest import pg_connection

from auto_review.store.base import StoreError
from auto_review.store.pg_watermarks import PostgresWatermarkStore

KEY = "forgejo:acme/widget"


def test_a_new_leader_reads_the_last_leaders_watermark(postgres_server, pg_database) -> None:
    old_leader = PostgresWatermarkStore(pg_connection(postgres_server, pg_database))
    new_leader = PostgresWatermarkStore(pg_connection(postgres_server, pg_database))
    first = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)

    async def scenario() -> None:
        assert await new_leader.get(KEY) is None
        await old_leader.set(KEY, first)
        await old_leader.set("github:acme/widget", first - timedelta(hours=1))
        assert await new_leader.get(KEY) == first
        await new_leader.set(KEY, first + timedelta(minutes=5))
        assert await old_leader.get(KEY) == first + timedelta(minutes=5)
        assert await old_leader.get("github:acme/widget") == first - timedelta(hours=1)

    asyncio.run(scenario())
    with psycopg.connect(postgres_server.url(pg_database), autocommit=True) as db:
        assert db.execute("SELECT COUNT(*) FROM poller_watermarks").fetchone() == (2,)
        db.execute("UPDATE poller_watermarks SET value = 'not a time' WHERE key = %s", (KEY,))
    # an unreadable value: the catch-up window, as for an unreadable file
    assert asyncio.run(new_leader.get(KEY)) is None
    with pytest.raises(ValueError):
        asyncio.run(new_leader.set("", first))


def test_an_unreachable_database_is_a_store_error_without_the_password(
    postgres_server, pg_database
) -> None:
    with pytest.raises(StoreError) as caught:
        PostgresWatermarkStore(pg_connection(postgres_server, pg_database, port=closed_port()))
    assert postgres_server.password not in str(caught.value)
    assert "PostgreSQL" in str(caught.value)
