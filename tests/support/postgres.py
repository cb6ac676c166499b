"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, started here.

`initdb` into a fresh temporary directory, `pg_ctl start -w` (it returns once the server
accepts connections: a positive signal, no sleep) listening on a Unix socket in that
directory and on a free loopback port, and at the end `pg_ctl stop -m fast` and the
directory removed. Nothing of the Debian-managed cluster (`/etc/postgresql`, the system
service) is used or started.

initdb and postgres refuse to run as root: as root, every server command runs as the
`postgres` system user that Debian's package creates (`runuser`), and the directory is
handed to that user. Missing binaries fail the test with the package to install, never a
skip: the store contract suite is meant to run against PostgreSQL.

The cluster is small (shared_buffers 16 MB, 40 connections) for a shared 2-core machine.
Local (socket) connections are trusted; TCP connections need a password (scram-sha-256),
so tests can check a wrong password for real.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

DEBIAN_PACKAGE = "postgresql"
SERVER_USER = "postgres"  # the system user Debian's package creates
SUPERUSER = "postgres"
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres", "psql", "pg_isready")
_START_TIMEOUT_SECONDS = 60
_SERVER_SETTINGS = {
    "shared_buffers": "16MB",
    "max_connections": "40",
    "max_wal_size": "64MB",
    "logging_collector": "off",
    # The failing paths of tests (wrong passwords, bad statements) need not fill the log.
    "log_min_messages": "warning",
    "dynamic_shared_memory_type": "posix",
}


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the cluster did not start; says what to do."""


def find_server_bindir(debian_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory of initdb/pg_ctl/postgres: Debian keeps them off PATH, per version."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).parent] if on_path else []
    candidates += sorted(
        debian_root.glob("*/bin"),
        key=lambda path: _version_key(path.parent.name),
        reverse=True,
    )
    for directory in candidates:
        if all((directory / name).is_file() for name in _SERVER_BINARIES):
            return directory
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install Debian's "
        f"'{DEBIAN_PACKAGE}' package (scripts/setup-dev.sh does, as root)"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running cluster: where it listens and the superuser's credentials."""

    bindir: Path
    base: Path
    socket_dir: Path
    port: int
    password: str  # the superuser's, for TCP connections
    options: str = ""  # the server settings pg_ctl passes on (-o)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def url(
        self,
        database: str = "postgres",
        *,
        user: str = SUPERUSER,
        password: str | None = None,
        host: str = "127.0.0.1",
    ) -> str:
        """A postgresql:// URL over TCP (the superuser's password unless one is given)."""
        secret = self.password if password is None else password
        return (
            f"postgresql://{quote(user, safe='')}:{quote(secret, safe='')}"
            f"@{host}:{self.port}/{quote(database, safe='')}"
        )

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; returns psql's unaligned output."""
        completed = subprocess.run(
            [
                str(self.bindir / "psql"),
                "--no-psqlrc",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"psql failed ({completed.returncode}): {completed.stderr.strip()}")
        return completed.stdout

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its name."""
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections are cut), keeping its data."""
        log = self.base / "server.log"
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            "pg_ctl stop",
            log,
        )

    def start(self) -> None:
        """Start the stopped server again on the same port and socket; returns when it
        accepts connections."""
        log = self.base / "server.log"
        _run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-o",
                self.options,
                "-w",
                "-t",
                str(_START_TIMEOUT_SECONDS),
                "start",
            ],
            "pg_ctl start",
            log,
        )

    def is_ready(self) -> bool:
        """pg_isready's verdict on the Unix socket."""
        return (
            subprocess.run(
                [
                    str(self.bindir / "pg_isready"),
                    "-q",
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.port),
                ],
                check=False,
                timeout=30,
            ).returncode
            == 0
        )


def _as_server_user(command: Sequence[str]) -> list[str]:
    """Run as the postgres system user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _server_uid_gid() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root needs the '{SERVER_USER}' system user that Debian's "
            f"'{DEBIAN_PACKAGE}' package creates"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: Sequence[str], what: str, log: Path | None = None) -> None:
    completed = subprocess.run(
        _as_server_user(command),
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_SECONDS + 30,
        check=False,
    )
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip()
        if log is not None and log.exists():
            detail += "\n--- server log ---\n" + log.read_text(errors="replace")[-4000:]
        raise PostgresUnavailable(f"{what} failed ({completed.returncode}): {detail}")


@contextlib.contextmanager
def running_cluster(*, attempts: int = 3) -> Iterator[PostgresServer]:
    """Start a fresh cluster; stop it and remove its directory on the way out."""
    bindir = find_server_bindir()
    owner = _server_uid_gid()
    base = Path(tempfile.mkdtemp(prefix="ar-pg-"))
    try:
        socket_dir = base / "sock"
        socket_dir.mkdir(mode=0o700)
        password = secrets.token_urlsafe(18)
        password_file = base / "superuser-password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        if owner is not None:
            for path in (base, socket_dir, password_file):
                os.chown(path, *owner)
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(base / "data"),
                "-U",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",  # a throwaway cluster: its files need not survive a power cut
            ],
            "initdb",
        )
        password_file.unlink()
        log = base / "server.log"
        server = _start(bindir, base, socket_dir, password, log, attempts)
        try:
            yield server
        finally:
            # (A test may have stopped it already: then there is no pid file.)
            if (base / "data" / "postmaster.pid").exists():
                server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _start(
    bindir: Path, base: Path, socket_dir: Path, password: str, log: Path, attempts: int
) -> PostgresServer:
    last: PostgresUnavailable | None = None
    for _ in range(attempts):
        port = _free_port()  # released before the server binds it: another taker is retried
        options = " ".join(
            f"-c {name}={value}"
            for name, value in {
                **_SERVER_SETTINGS,
                "listen_addresses": "127.0.0.1",
                "port": str(port),
                "unix_socket_directories": str(socket_dir),
            }.items()
        )
        try:
            _run(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(base / "data"),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",  # returns once the server accepts connections
                    "-t",
                    str(_START_TIMEOUT_SECONDS),
                    "start",
                ],
                "pg_ctl start",
                log,
            )
        except PostgresUnavailable as exc:
            last = exc
            continue
        server = PostgresServer(bindir, base, socket_dir, port, password, options)
        if not server.is_ready():
            raise PostgresUnavailable("pg_ctl reported the server started but pg_isready disagrees")
        return server
    assert last is not None
    raise last


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster for the run, started on first use, stopped and removed at the end, or a
    clear failure. A conftest imports this name to offer it to its directory."""
    try:
        with running_cluster() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
