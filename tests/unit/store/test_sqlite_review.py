"""What only the SQLite review store has: its file (0600 in a 0700 directory, WAL), its own
schema version and errors; the behaviour both backends share is in
test_review_store_contract.py."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from auto_review.store.base import SchemaTooNew, StoreError
from auto_review.store.review_rules import check_repo_key, make_repo_key
from auto_review.store.sqlite_review import REVIEW_FILE_NAME, ReviewStore

REPO = "forgejo|acme/widget"
OTHER = "github|acme/widget"
SHA1 = "a" * 40
SHA2 = "b" * 40
FP1 = "0123456789abcdef"
FP2 = "fedcba9876543210"


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with ReviewStore.open(state) as store:
        assert store.path == state / REVIEW_FILE_NAME
        assert store.last_reviewed_sha(REPO, 7) is None
        assert store.posted_fingerprints(REPO, 7) == set()
        store.record_review(REPO, 7, SHA1, [FP1])
        store.record_review(REPO, 7, SHA2.upper(), [FP1, FP2])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / REVIEW_FILE_NAME).stat().st_mode) == 0o600
    with ReviewStore.open(state / REVIEW_FILE_NAME) as reopened:
        assert reopened.last_reviewed_sha(REPO, 7) == SHA2
        assert reopened.posted_fingerprints(REPO, 7) == {FP1, FP2}
        # scoped by repository (host included) and PR
        assert reopened.last_reviewed_sha(OTHER, 7) is None
        assert reopened.posted_fingerprints(REPO, 8) == set()
    journal = sqlite3.connect(state / REVIEW_FILE_NAME).execute("PRAGMA journal_mode")
    assert journal.fetchone()[0] == "wal"


def test_repo_keys() -> None:
    assert make_repo_key("github", "Acme", ".github") == "github|Acme/.github"
    assert check_repo_key("forgejo|acme/widget") == "forgejo|acme/widget"
    for bad in ("forgejo|acme", "forgejo|acme/wid/get", "x|a/b", "forgejo|-a/b", ""):
        with pytest.raises(ValueError):
            check_repo_key(bad)


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    ReviewStore.open(tmp_path).close()
    path = tmp_path / REVIEW_FILE_NAME
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    with pytest.raises(SchemaTooNew):
        ReviewStore.open(path)


def test_an_unusable_file_is_a_store_error_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / REVIEW_FILE_NAME
    path.write_bytes(b"not a database, secret-ish content " * 200)
    with pytest.raises(StoreError) as caught:
        ReviewStore.open(path)
    assert "secret-ish" not in str(caught.value)
