"""The group-commit writer on its own, over a plain SQLite table."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from auto_review.store.base import StoreBusy, StoreClosed, StoreError
from auto_review.store.group_commit import GroupCommitWriter, Housekeeping


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "writer.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.execute(
            "CREATE TABLE item (value TEXT PRIMARY KEY, parent INTEGER"
            " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    return path


@pytest.fixture
def writer(database: Path) -> Iterator[GroupCommitWriter]:
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA foreign_keys = ON")
    started = GroupCommitWriter(connection, max_pending=1000)
    yield started
    started.close()
    connection.close()


def rows(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [value for (value,) in connection.execute("SELECT value FROM item ORDER BY value")]


def insert(value: str, parent: int | None = None):
    def operation(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO item (value, parent) VALUES (?, ?)", (value, parent))
        return value

    return operation


def test_each_caller_gets_its_own_result(writer: GroupCommitWriter, database: Path) -> None:
    async def scenario() -> list[str]:
        return await asyncio.gather(*(writer.submit(insert(f"v{n:03}")) for n in range(200)))

    assert asyncio.run(scenario()) == [f"v{n:03}" for n in range(200)]
    assert rows(database) == [f"v{n:03}" for n in range(200)]


def test_a_failing_operation_is_undone_alone(writer: GroupCommitWriter, database: Path) -> None:
    def half_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO item (value) VALUES ('half')")
        raise ValueError("operation bug")

    async def scenario() -> list[object]:
        return await asyncio.gather(
            writer.submit(insert("before")),
            writer.submit(half_then_fail),
            writer.submit(insert("before")),  # duplicate key: an SQLite error
            writer.submit(insert("after")),
            return_exceptions=True,
        )

    before, failed, duplicate, after = asyncio.run(scenario())
    assert (before, after) == ("before", "after")
    assert isinstance(failed, ValueError)
    assert isinstance(duplicate, StoreError)
    assert "UNIQUE" in str(duplicate)
    assert rows(database) == ["after", "before"]


def test_a_failed_commit_fails_every_caller_of_the_batch(
    writer: GroupCommitWriter, database: Path
) -> None:
    # A deferred foreign key is only checked at COMMIT: the whole transaction is refused.
    async def scenario() -> list[object]:
        # Submitted in one loop iteration: one batch, one transaction.
        batch = [
            writer.submit(insert("fine-1")),
            writer.submit(insert("orphan", parent=42)),
            writer.submit(insert("fine-2")),
        ]
        return await asyncio.gather(*batch, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(result, StoreError) for result in results)
    assert "could not commit" in str(results[0])
    assert rows(database) == []
    assert asyncio.run(_submit(writer, insert("later"))) == "later"  # the writer goes on


async def _submit(writer: GroupCommitWriter, operation) -> object:
    return await writer.submit(operation)


def stall_with_a_blocking_call(
    writer: GroupCommitWriter,
) -> tuple[threading.Event, threading.Event]:
    """A blocking call() on another thread holds the connection until `release` is set."""
    holding = threading.Event()
    release = threading.Event()

    def hold(connection: sqlite3.Connection) -> None:
        holding.set()
        release.wait(10)

    threading.Thread(target=writer.call, args=(hold,), daemon=True).start()
    assert holding.wait(10)
    return holding, release


def test_bounded_submissions_fail_fast_when_full(database: Path) -> None:
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    writer = GroupCommitWriter(connection, max_pending=2)

    async def scenario() -> list[object]:
        _, release = stall_with_a_blocking_call(writer)
        queued = [writer.submit(insert("a")), writer.submit(insert("b"))]
        with pytest.raises(StoreBusy):
            writer.submit(insert("c"))
        unbounded = writer.submit(insert("d"), bounded=False)  # worker bookkeeping still gets in
        await asyncio.sleep(0.05)
        assert writer.pending == 3  # nothing written while the connection is held
        release.set()
        return await asyncio.gather(*queued, unbounded)

    try:
        assert asyncio.run(scenario()) == ["a", "b", "d"]
    finally:
        writer.close()
        connection.close()
    assert rows(database) == ["a", "b", "d"]


def test_statements_run_on_the_loop_thread_and_only_commit_elsewhere(
    writer: GroupCommitWriter,
) -> None:
    # The design point: no GIL hand-over per statement, only one per COMMIT.
    seen: list[str] = []

    def where(connection: sqlite3.Connection) -> None:
        seen.append(threading.current_thread().name)

    async def scenario() -> str:
        await writer.submit(where)
        return threading.current_thread().name

    loop_thread = asyncio.run(scenario())
    assert seen == [loop_thread]


def test_blocking_calls_from_plain_threads(writer: GroupCommitWriter, database: Path) -> None:
    assert writer.call(insert("sync")) == "sync"
    with pytest.raises(StoreError):
        writer.call(insert("sync"))
    assert rows(database) == ["sync"]


def test_after_close_nothing_is_accepted(writer: GroupCommitWriter) -> None:
    writer.close()
    with pytest.raises(StoreClosed):
        writer.call(insert("late"))


def test_housekeeping_runs_in_its_own_transactions(database: Path) -> None:
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    ran = threading.Event()

    def sweep(connection: sqlite3.Connection) -> None:
        connection.execute("DELETE FROM item WHERE value LIKE 'tmp-%'")
        ran.set()

    writer = GroupCommitWriter(
        connection, max_pending=10, housekeeping=Housekeeping(sweep, interval_seconds=0.05)
    )
    try:
        writer.call(insert("tmp-1"))
        writer.call(insert("keep"))
        ran.clear()
        assert ran.wait(5)
    finally:
        writer.close()
        connection.close()
    assert rows(database) == ["keep"]


def test_housekeeping_due_while_a_batch_awaits_its_commit_does_not_wedge_the_writer(
    database: Path,
) -> None:
    """A batch holds the connection from BEGIN until the commit thread runs its COMMIT; a
    housekeeping round falling due in between must not wait for that lock on the commit
    thread (it would wait forever). Housekeeping due all the time makes that overlap
    happen on nearly every batch; every submission must still finish."""
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    sweeps = 0

    def sweep(connection: sqlite3.Connection) -> None:
        nonlocal sweeps
        sweeps += 1

    writer = GroupCommitWriter(
        connection, max_pending=10, housekeeping=Housekeeping(sweep, interval_seconds=0.001)
    )

    async def scenario() -> None:
        for n in range(300):
            await asyncio.wait_for(writer.submit(insert(f"v{n:03}")), timeout=30)

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
        connection.close()
    assert rows(database) == [f"v{n:03}" for n in range(300)]
    assert sweeps > 0


def test_housekeeping_with_more_to_do_runs_again_without_waiting_its_interval(
    database: Path,
) -> None:
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    for n in range(5):
        connection.execute("INSERT INTO item (value) VALUES (?)", (f"tmp-{n}",))
    steps: list[int] = []
    finished = threading.Event()

    def one_at_a_time(connection: sqlite3.Connection) -> bool:
        deleted = connection.execute(
            "DELETE FROM item WHERE rowid = (SELECT MIN(rowid) FROM item WHERE value LIKE 'tmp-%')"
        ).rowcount
        steps.append(deleted)
        if not deleted:
            finished.set()
        return deleted > 0

    # The interval is an hour: only the "more to do" answer can bring the next steps.
    writer = GroupCommitWriter(
        connection, max_pending=10, housekeeping=Housekeeping(one_at_a_time, interval_seconds=3600)
    )
    try:
        assert finished.wait(10)
        # Between two steps the writer still commits other work.
        writer.call(insert("keep"))
    finally:
        writer.close()
        connection.close()
    assert steps == [1, 1, 1, 1, 1, 0]
    assert rows(database) == ["keep"]


def test_a_write_lock_held_elsewhere_fails_with_a_clear_error(database: Path) -> None:
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    writer = GroupCommitWriter(connection, max_pending=10, lock_wait_seconds=0.2)
    other_process = sqlite3.connect(database, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            asyncio.run(_submit(writer, insert("blocked")))
        with pytest.raises(StoreError, match="locked by another process"):
            writer.call(insert("blocked"))
        other_process.execute("ROLLBACK")
        assert asyncio.run(_submit(writer, insert("free"))) == "free"
    finally:
        other_process.close()
        writer.close()
        connection.close()
    assert rows(database) == ["free"]


def test_a_caller_that_gives_up_does_not_undo_or_break_the_batch(
    writer: GroupCommitWriter, database: Path
) -> None:
    async def scenario() -> str:
        abandoned = writer.submit(insert("abandoned"))
        kept = writer.submit(insert("kept"))
        abandoned.cancel()  # e.g. the HTTP client hung up
        return await kept

    assert asyncio.run(scenario()) == "kept"
    # The write was already queued: it stands (a redelivery is deduplicated later).
    assert rows(database) == ["abandoned", "kept"]
