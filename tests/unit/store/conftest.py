"""Fixtures for the intake store tests: real SQLite files in temporary state directories,
and real PostgreSQL databases in the run's throwaway cluster (tests/support/postgres.py).

`open_store` (the intake store) and `open_review_store` (review history and learnings) are
parametrised over both backends: a test that takes one is a contract test, run against
SQLite and PostgreSQL with the same body. `open_sqlite_store` and
`open_pg_store` are for what only one backend has (SQLite's group commit and files,
PostgreSQL's leases and replicas).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.postgres import PostgresServer, postgres_server

from auto_review.core.jobs import JobKind, JobRequest
from auto_review.core.refs import HostKind, RepoRef
from auto_review.core.secrets import Secret
from auto_review.store.sqlite_intake import SqliteIntakeStore

__all__ = ["postgres_server"]

RequestFactory = Callable[..., JobRequest]
StoreFactory = Callable[..., Any]
BACKENDS = ("sqlite", "postgresql")
_database_numbers = itertools.count(1)


def build_request(
    pr: int = 1,
    sha: str = "a" * 40,
    kind: JobKind = JobKind.REVIEW,
    host: HostKind = HostKind.FORGEJO,
    owner: str = "acme",
    name: str = "widget",
    comment_id: int | None = None,
    argument: str = "",
    source: str = "webhook",
) -> JobRequest:
    return JobRequest(
        kind=kind,
        repo=RepoRef(host=host, owner=owner, name=name),
        pr_number=pr,
        head_sha=sha,
        comment_id=comment_id,
        argument=argument,
        requested_by="alice",
        source=source,
    )


@pytest.fixture
def make_request() -> RequestFactory:
    return build_request


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def open_sqlite_store(state_dir: Path) -> Iterator[StoreFactory]:
    """Opens stores on the same state directory (a reopen is a restart); closes them all."""
    opened: list[SqliteIntakeStore] = []

    def factory(**options: object) -> SqliteIntakeStore:
        store = SqliteIntakeStore.open(state_dir, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def pg_connection(server: PostgresServer, database: str, **overrides: Any) -> Any:
    from auto_review.store.pg_connect import PgConnection

    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "dbname": database,
        "user": "postgres",
        "password": Secret(server.password),
        "ca_file": None,
        "pool_size": 4,
        "statement_timeout_seconds": 30.0,
    }
    options.update(overrides)
    return PgConnection(**options)


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test, dropped after it."""
    name = postgres_server.create_database(f"store_{os.getpid()}_{next(_database_numbers)}")
    yield name
    postgres_server.drop_database(name)


@pytest.fixture
def open_pg_store(postgres_server: PostgresServer, pg_database: str) -> Iterator[StoreFactory]:
    """Opens stores on the same database (a second one is a restart, or another replica);
    closes them all. Leases are checked at every claim unless a test says otherwise."""
    from auto_review.store.pg_intake import PostgresIntakeStore

    opened: list[PostgresIntakeStore] = []

    def factory(**options: Any) -> PostgresIntakeStore:
        options.setdefault("lease_check_interval_seconds", 0.0)
        store = PostgresIntakeStore(pg_connection(postgres_server, pg_database), **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_store(backend: str, request: pytest.FixtureRequest) -> StoreFactory:
    """The contract tests' store: SQLite or PostgreSQL, the same behaviour expected."""
    if backend == "sqlite":
        return request.getfixturevalue("open_sqlite_store")  # type: ignore[no-any-return]
    return request.getfixturevalue("open_pg_store")  # type: ignore[no-any-return]


@pytest.fixture
def open_sqlite_review_store(tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens review stores on one state directory (a second one is a restart)."""
    from auto_review.store.sqlite_review import ReviewStore

    opened: list[Any] = []

    def factory(**options: Any) -> Any:
        store = ReviewStore.open(tmp_path / "state", **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def open_pg_review_store(
    postgres_server: PostgresServer, pg_database: str
) -> Iterator[StoreFactory]:
    """Opens review stores on one database (a second one is a restart, or a replica)."""
    from auto_review.store.pg_review import PostgresReviewStore

    opened: list[Any] = []

    def factory(**options: Any) -> Any:
        store = PostgresReviewStore(pg_connection(postgres_server, pg_database), **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def open_review_store(backend: str, request: pytest.FixtureRequest) -> StoreFactory:
    """The review-history contract tests' store: SQLite or PostgreSQL, same behaviour."""
    if backend == "sqlite":
        return request.getfixturevalue("open_sqlite_review_store")  # type: ignore[no-any-return]
    return request.getfixturevalue("open_pg_review_store")  # type: ignore[no-any-return]
