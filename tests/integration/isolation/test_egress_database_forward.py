"""The database's path out of the container, on the host: the database forward asks the
real egress proxy for CONNECT to the one database of the policy; psycopg connects through
it (TLS name checks would use the URL's host, the forward is only ``hostaddr``). Another
port of the same host, or an HTTP request to the database, is refused and counted."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.waiting import wait_until

from auto_review.config import Settings
from auto_review.core.secrets import Secret
from auto_review.isolation.egress.database_forward import FORWARD_ENV, DatabaseForwardThread
from auto_review.isolation.egress.policy import EgressPolicy
from auto_review.isolation.egress.proxy import EgressProxyThread, ProxyLimits
from auto_review.store.pg_connect import PgConnection
from auto_review.wiring.stores import database_forward

__all__ = ["postgres_server"]


@pytest.fixture
def socket_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="egress-db-") as directory:
        yield Path(directory) / "proxy.sock"


def policy_for(server: PostgresServer, tmp_path: Path) -> EgressPolicy:
    settings = Settings(  # type: ignore[arg-type]
        state_dir=tmp_path, database_url=Secret(server.url("postgres"))
    )
    return EgressPolicy.from_settings(settings)


def test_psycopg_reaches_exactly_the_policy_database_through_the_proxy(
    postgres_server: PostgresServer, socket_path: Path, tmp_path: Path
) -> None:
    policy = policy_for(postgres_server, tmp_path)
    assert policy.describe() == [f"postgresql://127.0.0.1:{postgres_server.port} (database)"]
    with EgressProxyThread(policy, socket_path) as proxy:
        forward = DatabaseForwardThread(f"127.0.0.1:{postgres_server.port}", socket_path)
        forward.start()
        try:
            via = database_forward(forward.environment())
            assert via is not None and via[0] == "127.0.0.1" and via[1] != postgres_server.port
            connection = PgConnection(
                host="127.0.0.1",
                port=postgres_server.port,
                dbname="postgres",
                user="postgres",
                password=Secret(postgres_server.password),
                ca_file=None,
                via=via,
            )
            with connection.connect() as database:
                row = database.execute("SELECT inet_server_port()").fetchone()
            assert row == (postgres_server.port,)
            assert proxy.stats.refused_total == 0
            assert proxy.stats.allowed_total >= 1
        finally:
            forward.stop()

        # The same forward aimed at another port of the host: the proxy refuses the CONNECT.
        wrong = DatabaseForwardThread(f"127.0.0.1:{postgres_server.port + 1}", socket_path)
        wrong.start()
        try:
            via = database_forward(wrong.environment())
            assert via is not None
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(
                    hostaddr=via[0],
                    host="127.0.0.1",
                    port=via[1],
                    user="postgres",
                    dbname="postgres",
                    password=postgres_server.password,
                    connect_timeout=5,
                )
        finally:
            wrong.stop()
        assert proxy.stats.refused["port-not-allowed"] == 1

        # An HTTP request in absolute form to the database target: a tunnel only.
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(10)
            raw.connect(str(socket_path))
            raw.sendall(
                f"GET http://127.0.0.1:{postgres_server.port}/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{postgres_server.port}\r\n\r\n".encode()
            )
            assert raw.recv(64).startswith(b"HTTP/1.1 403")
        assert proxy.stats.refused["scheme-not-allowed"] == 1


def test_the_pool_replaces_a_tunnel_the_proxy_closed_for_idleness(
    postgres_server: PostgresServer, socket_path: Path, tmp_path: Path
) -> None:
    policy = policy_for(postgres_server, tmp_path)
    limits = ProxyLimits(idle_timeout=1.0)
    with EgressProxyThread(policy, socket_path, limits=limits) as proxy:
        forward = DatabaseForwardThread(f"127.0.0.1:{postgres_server.port}", socket_path)
        forward.start()
        try:
            connection = PgConnection(
                host="127.0.0.1",
                port=postgres_server.port,
                dbname="postgres",
                user="postgres",
                password=Secret(postgres_server.password),
                ca_file=None,
                pool_size=1,
                via=database_forward(forward.environment()),
            )
            pool = connection.pool()
            try:
                with pool.connection() as database:
                    first = database.execute("SELECT pg_backend_pid()").fetchone()
                wait_until(
                    lambda: proxy.stats.failed["idle-timeout"] >= 1,
                    timeout=30,
                    what="the proxy closing the idle tunnel",
                )
                with pool.connection() as database:
                    second = database.execute("SELECT pg_backend_pid()").fetchone()
            finally:
                pool.close()
        finally:
            forward.stop()
    assert first != second  # a new session, not an error: the closed one was replaced


def test_no_forward_variable_means_a_direct_connection() -> None:
    assert database_forward({}) is None
    assert database_forward({FORWARD_ENV: "garbage"}) is None
