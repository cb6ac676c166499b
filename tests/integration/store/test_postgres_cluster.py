"""The tests' throwaway PostgreSQL cluster: started for real, reachable, stopped, removed."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from tests.support.postgres import (
    PostgresServer,
    PostgresUnavailable,
    find_server_bindir,
    running_cluster,
)


def _psql_tcp(server: PostgresServer, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(server.bindir / "psql"),
            "-X",
            "-At",
            "-d",
            server.url(password=password),
            "-c",
            "SELECT current_user",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )


def test_the_session_cluster_accepts_the_superuser_over_tcp_with_its_password(
    postgres_server: PostgresServer,
) -> None:
    assert postgres_server.is_ready()
    good = _psql_tcp(postgres_server, postgres_server.password)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "postgres"
    wrong = _psql_tcp(postgres_server, "not-the-password")
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr
    assert postgres_server.psql("SHOW shared_buffers").strip() == "16MB"


def test_databases_come_and_go(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database("cluster_test_db")
    listed = postgres_server.psql("SELECT datname FROM pg_database").split()
    assert name in listed
    postgres_server.drop_database(name)
    assert name not in postgres_server.psql("SELECT datname FROM pg_database").split()


def test_a_cluster_is_stopped_and_its_directory_removed_at_the_end() -> None:
    with running_cluster() as server:
        base, port = server.base, server.port
        assert server.data_dir.is_dir()
        assert (server.socket_dir / f".s.PGSQL.{port}").exists()
    assert not base.exists()
    # Nothing listens on its port any more.
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_missing_server_binaries_name_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match="install Debian's 'postgresql' package"):
        find_server_bindir(debian_root=tmp_path / "none")
