"""Fixtures for the intake store tests: real SQLite files in temporary state directories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auto_review.core.jobs import JobKind, JobRequest
from auto_review.core.refs import HostKind, RepoRef
from auto_review.store.sqlite_intake import SqliteIntakeStore

RequestFactory = Callable[..., JobRequest]
StoreFactory = Callable[..., SqliteIntakeStore]


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
def open_store(state_dir: Path) -> Iterator[StoreFactory]:
    """Opens stores on the same state directory (a reopen is a restart); closes them all."""
    opened: list[SqliteIntakeStore] = []

    def factory(**options: object) -> SqliteIntakeStore:
        store = SqliteIntakeStore.open(state_dir, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
