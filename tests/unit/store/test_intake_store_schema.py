"""Schema versioning, durability settings and file permissions of the state database."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from auto_review.store.base import SchemaTooNew, StoreError
from auto_review.store.schema import LATEST_VERSION, MIGRATIONS
from auto_review.store.sqlite_intake import STATE_FILE_NAME, SqliteIntakeStore


def _versions(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as connection:
        return list(connection.execute("SELECT version, name FROM schema_migrations ORDER BY 1"))


def test_a_new_database_gets_every_migration_once(open_sqlite_store, state_dir: Path) -> None:
    open_sqlite_store().close()
    open_sqlite_store().close()  # reopening applies nothing twice
    assert _versions(state_dir / STATE_FILE_NAME) == [(m.version, m.name) for m in MIGRATIONS]


def test_a_database_from_a_newer_release_is_refused(open_sqlite_store, state_dir: Path) -> None:
    open_sqlite_store().close()
    with sqlite3.connect(state_dir / STATE_FILE_NAME) as connection:
        connection.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST_VERSION + 1}"):
        open_sqlite_store()


def test_the_database_is_wal_with_full_sync(open_sqlite_store, state_dir: Path) -> None:
    store = open_sqlite_store()
    assert store.durability() == {"journal_mode": "wal", "synchronous": "FULL"}
    relaxed = open_sqlite_store(synchronous="NORMAL")
    assert relaxed.durability()["synchronous"] == "NORMAL"
    with sqlite3.connect(state_dir / STATE_FILE_NAME) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_state_files_are_private(open_sqlite_store, make_request, state_dir: Path) -> None:
    store = open_sqlite_store()
    asyncio.run(store.accept(None, [make_request()]))
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for name in (STATE_FILE_NAME, STATE_FILE_NAME + "-wal"):
        assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600, name


def test_an_unusable_state_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the state directory"):
        SqliteIntakeStore.open(blocker / "state")


def test_unknown_synchronous_levels_are_refused(state_dir: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteIntakeStore.open(state_dir, synchronous="OFF")
