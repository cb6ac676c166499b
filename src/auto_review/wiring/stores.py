"""The stores from the settings: PostgreSQL when ``AR_DATABASE_URL`` is set, else SQLite in
the state directory. Both the intake store (job queue) and the review store (history and
learnings) follow the one setting: a deployment never splits its state between backends.

This is the only place where the database settings become a connection: the URL is split
(``core/database_url.py``), the password read from the URL or ``AR_DATABASE_PASSWORD_FILE``
(and registered with the process's redactor), TLS decided (verify-full against
``AR_DATABASE_CA_FILE``, or off: loopback, or the URL's explicit ``sslmode=disable``), and
a plain :class:`~auto_review.store.pg_connect.PgConnection` handed to the store. psycopg is
imported only then: a SQLite deployment never loads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import closing as contextlib_closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_review.config import Settings
from auto_review.core.database_url import parse_database_url
from auto_review.core.secrets import Secret
from auto_review.store.base import ReviewHistoryStore, StoreError
from auto_review.store.sqlite_intake import SqliteIntakeStore
from auto_review.store.sqlite_review import ReviewStore
from auto_review.wiring.redaction import install_secrets

if TYPE_CHECKING:
    from auto_review.store.pg_connect import PgConnection
    from auto_review.store.pg_import import ImportReport
    from auto_review.store.pg_intake import PostgresIntakeStore
    from auto_review.store.pg_watermarks import PostgresWatermarkStore

MAX_PASSWORD_FILE_BYTES = 4096
# Set by the embedded container's inner entry (isolation/egress/database_forward.py).
DATABASE_FORWARD_ENV = "AUTO_REVIEW_DATABASE_FORWARD"


class DatabaseSettingsError(StoreError):
    """A database setting cannot be used (its file is unreadable, ...): a configuration
    error, named by its setting, never showing a value."""


def uses_postgres(settings: Settings) -> bool:
    return settings.database_url is not None


def database_connection(settings: Settings) -> PgConnection:
    """The connection the settings describe (AR_DATABASE_URL must be set)."""
    from auto_review.store.pg_connect import PgConnection

    assert settings.database_url is not None
    url = parse_database_url(settings.database_url.reveal())
    password = url.password
    if settings.database_password_file is not None:
        password = read_password_file(settings.database_password_file)
    if password is not None:
        install_secrets([password.reveal()])
    ca_file = settings.database_ca_file
    if ca_file is not None and not ca_file.is_file():
        raise DatabaseSettingsError(
            f"setting AR_DATABASE_CA_FILE: {ca_file} is not a readable file"
        )
    return PgConnection(
        via=database_forward(),
        host=url.host,
        port=url.port,
        dbname=url.dbname,
        user=url.user,
        password=password,
        ca_file=ca_file,
        pool_size=settings.database_pool_size,
        statement_timeout_seconds=settings.database_statement_timeout_seconds,
    )


def database_forward(environ: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
    """Where the embedded container's inner process reaches the database: the forward its
    entry started (``AUTO_REVIEW_DATABASE_FORWARD=127.0.0.1:PORT``), else None (direct)."""
    value = environ.get(DATABASE_FORWARD_ENV, "")
    address, _, port = value.rpartition(":")
    if not address or not port.isdigit():
        return None
    return address, int(port)


def read_password_file(path: Path) -> Secret:
    """The first line of the file, without its line end."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise DatabaseSettingsError(
            f"setting AR_DATABASE_PASSWORD_FILE: {path} cannot be read ({exc.strerror})"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DatabaseSettingsError(
            f"setting AR_DATABASE_PASSWORD_FILE: {path} is not UTF-8 text"
        ) from None
    password = text.splitlines()[0] if text else ""
    if not password or len(data) > MAX_PASSWORD_FILE_BYTES:
        raise DatabaseSettingsError(
            f"setting AR_DATABASE_PASSWORD_FILE: {path} must hold the password on its first line"
        )
    return Secret(password)


def open_intake_store(
    settings: Settings, *, housekeeping: bool = True, **options: Any
) -> SqliteIntakeStore | PostgresIntakeStore:
    """The intake store and job queue the settings select, schema migrated.

    Raises StoreError (a DatabaseUnavailable when PostgreSQL cannot be reached, SchemaTooNew
    for a newer release's schema) with a message that names the cause, never a password.
    """
    retention = settings.state_retention_days * 86400.0
    if not uses_postgres(settings):
        return SqliteIntakeStore.open(
            settings.state_dir,
            retention_seconds=retention,
            housekeeping=housekeeping,
            **options,
        )
    from auto_review.store.pg_intake import PostgresIntakeStore

    return PostgresIntakeStore(
        database_connection(settings),
        retention_seconds=retention,
        housekeeping=housekeeping,
        lease_seconds=settings.database_lease_seconds,
        **options,
    )


def open_review_store(settings: Settings) -> ReviewHistoryStore:
    """The review history and learnings the settings select, schema migrated: the
    PostgreSQL database of AR_DATABASE_URL, else ``review.sqlite3`` in the state directory.
    Raises StoreError as open_intake_store does."""
    if not uses_postgres(settings):
        return ReviewStore.open(settings.state_dir)
    from auto_review.store.pg_review import PostgresReviewStore

    return PostgresReviewStore(database_connection(settings))


def open_watermark_store(settings: Settings) -> PostgresWatermarkStore | None:
    """The chat poller's shared watermarks with AR_DATABASE_URL (schema migrated); None
    without it (the gateway then keeps them in a file of its state directory)."""
    if not uses_postgres(settings):
        return None
    from auto_review.store.pg_watermarks import PostgresWatermarkStore

    return PostgresWatermarkStore(database_connection(settings))


def copy_sqlite_state(
    settings: Settings, source: Path, *, into_non_empty: bool = False
) -> ImportReport:
    """`ops migrate-state`: the SQLite state directory `source` copied into the database
    of AR_DATABASE_URL (which must be set)."""
    if not uses_postgres(settings):
        raise DatabaseSettingsError(
            "setting AR_DATABASE_URL: migrate-state copies into PostgreSQL; set it first"
        )
    from auto_review.store import pg_import

    return pg_import.copy_sqlite_state(
        source, database_connection(settings), into_non_empty=into_non_empty
    )


def store_description(settings: Settings) -> str:
    """Where the state is, for messages and /info: never a password."""
    if settings.database_url is None:
        return f"sqlite:{settings.state_dir}"
    return parse_database_url(settings.database_url.reveal()).display()


@dataclass(frozen=True, slots=True)
class MigrationReport:
    where: str  # store_description(): never a password
    before: int  # schema version found (0: none yet)
    after: int  # schema version now (the latest this release knows)


def migrate_schema(settings: Settings) -> MigrationReport:
    """Bring the selected database's schema to this release's version, now (what
    `auto-review ops migrate` runs; the gateway does the same when it opens the store).

    PostgreSQL: under the migrations' advisory lock, so it is safe beside running
    replicas of the same release. Raises StoreError (SchemaTooNew for a newer schema).
    """
    where = store_description(settings)
    if not uses_postgres(settings):
        from auto_review.store import schema
        from auto_review.store.sqlite_intake import STATE_FILE_NAME

        before = _sqlite_version(settings.state_dir / STATE_FILE_NAME)
        open_intake_store(settings, housekeeping=False).close()
        return MigrationReport(where, before, schema.LATEST_VERSION)
    import psycopg

    from auto_review.store import pg_schema

    connection = database_connection(settings)
    with contextlib_closing(connection.connect()) as database:
        try:
            before = pg_schema.current_version(database)
            pg_schema.migrate(database)
        except psycopg.Error as exc:
            raise connection.failure("cannot migrate the schema of", exc) from None
    return MigrationReport(where, before, pg_schema.LATEST_VERSION)


def _sqlite_version(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    try:
        with contextlib_closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as database:
            row = database.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            found = row.fetchone()
    except sqlite3.Error:
        return 0
    return int(found[0]) if found else 0


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """What `ops doctor` reports of AR_DATABASE_URL: reachable, schema, TLS."""

    where: str
    version: int  # -1: not reached
    latest: int
    tls: str
    error: str = ""


def database_status(settings: Settings) -> DatabaseStatus:
    """Connect once and read the schema version (nothing is written)."""
    import psycopg

    from auto_review.store import pg_schema

    connection = database_connection(settings)
    url = parse_database_url(settings.database_url.reveal()) if settings.database_url else None
    if connection.ca_file is not None:
        tls = f"TLS verify-full against {connection.ca_file}"
    elif url is not None and url.sslmode == "disable":
        tls = "no TLS (sslmode=disable in the URL)"
    else:
        tls = "no TLS (loopback)"
    where = store_description(settings)
    try:
        with contextlib_closing(connection.connect("doctor")) as database:
            version = pg_schema.current_version(database)
    except StoreError as exc:
        return DatabaseStatus(where, -1, pg_schema.LATEST_VERSION, tls, str(exc))
    except psycopg.Error as exc:
        failure = connection.failure("cannot read the schema of", exc)
        return DatabaseStatus(where, -1, pg_schema.LATEST_VERSION, tls, str(failure))
    return DatabaseStatus(where, version, pg_schema.LATEST_VERSION, tls)
