"""The composition root turns the database settings into a connection, or a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer, postgres_server

from auto_review.config import Settings, SettingsError
from auto_review.store.sqlite_intake import SqliteIntakeStore
from auto_review.store.sqlite_review import REVIEW_FILE_NAME, ReviewStore
from auto_review.wiring.redaction import redact
from auto_review.wiring.stores import (
    DatabaseSettingsError,
    database_connection,
    open_intake_store,
    open_review_store,
    store_description,
)

__all__ = ["postgres_server"]

PASSWORD = "CANARY-wiring-db-Pw-1Qa9Zs8Xd7Cf"


def test_without_a_database_url_the_store_is_sqlite_in_the_state_directory(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=str(tmp_path / "state"))
    store = open_intake_store(settings, housekeeping=False)
    try:
        assert isinstance(store, SqliteIntakeStore)
        assert store.path.parent == tmp_path / "state"
    finally:
        store.close()
    assert store_description(settings) == f"sqlite:{tmp_path / 'state'}"


def test_the_url_becomes_a_connection_and_its_password_a_redacted_secret(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"postgresql://app:{PASSWORD}@127.0.0.1:6543/reviews",
        database_pool_size="4",
        database_statement_timeout_seconds="5",
    )
    connection = database_connection(settings)
    assert (connection.host, connection.port, connection.dbname, connection.user) == (
        "127.0.0.1",
        6543,
        "reviews",
        "app",
    )
    assert connection.password is not None and connection.password.reveal() == PASSWORD
    assert connection.ca_file is None
    kwargs = connection.connect_kwargs()
    assert kwargs["sslmode"] == "disable"  # loopback
    assert "statement_timeout=5000" in kwargs["options"]
    assert PASSWORD not in repr(connection) and PASSWORD not in connection.display()
    assert PASSWORD not in redact(f"a message quoting {PASSWORD}")
    assert store_description(settings) == "postgresql://app@127.0.0.1:6543/reviews"


def test_a_ca_file_means_verify_full(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings(
        database_url="postgresql://app@db.internal/reviews", database_ca_file=str(ca)
    )
    kwargs = database_connection(settings).connect_kwargs()
    assert (kwargs["sslmode"], kwargs["sslrootcert"]) == ("verify-full", str(ca))


def test_a_remote_host_in_clear_needs_an_explicit_sslmode() -> None:
    with pytest.raises(SettingsError, match=r"AR_DATABASE_URL.*not on loopback"):
        Settings(database_url=f"postgresql://app:{PASSWORD}@db.internal/reviews")
    explicit = Settings(database_url="postgresql://app@db.internal/reviews?sslmode=disable")
    assert database_connection(explicit).connect_kwargs()["sslmode"] == "disable"


def test_database_side_settings_need_the_url() -> None:
    with pytest.raises(SettingsError, match=r"AR_DATABASE_CA_FILE.*needs AR_DATABASE_URL"):
        Settings(database_ca_file="/etc/ca.pem")


def test_the_password_file_gives_the_password(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\nignored\n")
    settings = Settings(
        database_url="postgresql://app@127.0.0.1/reviews", database_password_file=str(path)
    )
    password = database_connection(settings).password
    assert password is not None and password.reveal() == PASSWORD


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe" + PASSWORD.encode()])
def test_an_unusable_password_file_is_named_never_shown(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_bytes(content)
    settings = Settings(
        database_url="postgresql://app@127.0.0.1/reviews", database_password_file=str(path)
    )
    with pytest.raises(DatabaseSettingsError, match="AR_DATABASE_PASSWORD_FILE") as caught:
        database_connection(settings)
    assert PASSWORD not in str(caught.value)


def test_an_intake_only_replica_needs_a_shared_database() -> None:
    with pytest.raises(SettingsError, match=r"AR_WORKERS \(--workers\) is 0 \(intake only\)"):
        Settings(workers="0")
    assert Settings(workers="0", database_url="postgresql://app@127.0.0.1/db").workers == 0


def test_the_review_store_follows_the_same_setting(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """SQLite's review.sqlite3 without AR_DATABASE_URL; with it, PostgreSQL, and nothing
    in the state directory."""
    state = tmp_path / "state"
    local = open_review_store(Settings(state_dir=str(state)))
    try:
        assert isinstance(local, ReviewStore) and local.path == state / REVIEW_FILE_NAME
    finally:
        local.close()
    from auto_review.store.pg_review import PostgresReviewStore

    database = postgres_server.create_database("wiring_review_store")
    shared_state = tmp_path / "shared"
    settings = Settings(state_dir=str(shared_state), database_url=postgres_server.url(database))
    try:
        first, second = open_review_store(settings), open_review_store(settings)
        try:
            assert isinstance(first, PostgresReviewStore)
            first.add_learning("forgejo|acme/widget", "we use tabs", "alice")
            assert [i.text for i in second.learnings("forgejo|acme/widget")] == ["we use tabs"]
        finally:
            first.close()
            second.close()
        assert not (shared_state / REVIEW_FILE_NAME).exists()
    finally:
        postgres_server.drop_database(database)
