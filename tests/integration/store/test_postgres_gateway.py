"""AR_DATABASE_URL end to end, on the run's real PostgreSQL: a bare gateway keeps its queue
there, `auto-review ops migrate` applies the schema, and the password never shows, on the
paths that work and on those that fail (wrong password, unreachable host, bad URL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from tests.integration.gateway.conftest import (
    BOT_LOGIN,
    FORGEJO_TOKEN,
    assert_no_canary,
    base_settings,
    post_forgejo,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import start_gateway
from tests.support.ports import closed_port
from tests.support.postgres import PostgresServer
from tests.support.reference import load_json, reference_path

from auto_review.store.pg_schema import LATEST_VERSION

PASSWORD = "CANARY-db-password-3Xr8Lq1Nw6Tz9Pk4Hs2Vd7Mc5Jb0Gy"


@pytest.fixture
def app_database(postgres_server: PostgresServer, tmp_path: Path) -> str:
    """A database owned by a role that logs in with PASSWORD; its name is returned."""
    name = f"app_{tmp_path.name[-12:].replace('-', '_').lower()}_{os.getpid()}"
    postgres_server.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN"
        f" CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'; END IF; END $$"
    )
    postgres_server.psql(f'CREATE DATABASE "{name}" OWNER app TEMPLATE template0')
    return name


def app_url(server: PostgresServer, database: str, password: str | None = PASSWORD) -> str:
    secret = f":{password}" if password is not None else ""
    return f"postgresql://app{secret}@127.0.0.1:{server.port}/{database}"


def rows(server: PostgresServer, database: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.url(database), autocommit=True) as connection:
        return connection.execute(query).fetchall()  # type: ignore[arg-type]


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AR_")}
    clean["AR_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


def test_a_gateway_on_postgres_accepts_deduplicates_and_runs_each_job_once(
    tmp_path: Path, postgres_server: PostgresServer, app_database: str
) -> None:
    payload = load_json(reference_path("forge", "payloads", "forgejo_pull_request_reopened.json"))
    with FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge:
        settings = {
            **base_settings(forge.url),
            "AR_DATABASE_URL": app_url(postgres_server, app_database),
        }
        gateway = start_gateway(tmp_path, settings, runner="record")
        try:
            with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
                first = post_forgejo(client, payload, "pull_request", delivery="pg-1")
                again = post_forgejo(client, payload, "pull_request", delivery="pg-1")
                other = post_forgejo(client, payload, "pull_request", delivery="pg-2")
                info = client.get("/info")
            assert first.status_code == 202
            assert again.status_code == 200 and again.json()["duplicate"] == "delivery"
            assert other.status_code == 200
            [job] = gateway.wait_for_jobs(1)
            assert job["head_sha"] == payload["pull_request"]["head"]["sha"]
            assert info.json()["settings"]["database_url"] == "set"
            assert PASSWORD not in info.text
        finally:
            gateway.stop()
    from tests.support.waiting import wait_until

    wait_until(
        lambda: rows(postgres_server, app_database, "SELECT status FROM jobs") == [("done",)],
        timeout=30,
        what="the job row done in PostgreSQL",
    )
    deliveries = rows(postgres_server, app_database, "SELECT delivery_id FROM deliveries")
    assert sorted(deliveries) == [("pg-1",), ("pg-2",)]
    assert not (gateway.state_dir / "state.sqlite3").exists()  # nothing went to SQLite
    assert len(gateway.recorded_jobs()) == 1
    assert_no_canary(gateway.logs(), "the gateway log")
    assert PASSWORD not in gateway.logs()


def test_ops_migrate_applies_the_schema_once_with_a_password_file(
    tmp_path: Path, postgres_server: PostgresServer, app_database: str
) -> None:
    password_file = tmp_path / "db-password"
    password_file.write_text(PASSWORD + "\n")
    env = {
        "AR_DATABASE_URL": app_url(postgres_server, app_database, password=None),
        "AR_DATABASE_PASSWORD_FILE": str(password_file),
    }
    first = run_cli(tmp_path, "ops", "migrate", **env)
    assert first.returncode == 0, first.stderr
    where = f"postgresql://app@127.0.0.1:{postgres_server.port}/{app_database}"
    assert first.stdout.strip() == f"{where}: schema migrated from version 0 to 3"
    second = run_cli(tmp_path, "ops", "migrate", **env)
    assert second.stdout.strip() == f"{where}: schema at version 3, nothing to apply"
    versions = rows(postgres_server, app_database, "SELECT version FROM schema_migrations")
    assert sorted(versions) == [(1,), (2,), (3,)]
    for output in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert PASSWORD not in output


def test_ops_migrate_works_on_sqlite_too(tmp_path: Path) -> None:
    first = run_cli(tmp_path, "ops", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("schema migrated from version 0 to 3")
    again = run_cli(tmp_path, "ops", "migrate")
    assert again.stdout.strip().endswith("schema at version 3, nothing to apply")


@pytest.mark.parametrize("failure", ["wrong password", "unreachable host"])
def test_database_failures_are_clear_and_never_show_the_password(
    tmp_path: Path, postgres_server: PostgresServer, app_database: str, failure: str
) -> None:
    wrong = "CANARY-wrong-password-8Jd2Kq6Lx0Vn4Bz7Mw1Rt5Yp9Hc3"
    if failure == "wrong password":
        url = app_url(postgres_server, app_database, password=wrong)
        expected = "password authentication failed"
    else:
        url = f"postgresql://app:{wrong}@127.0.0.1:{closed_port()}/{app_database}"
        expected = "refused"
    process = run_cli(tmp_path, "ops", "migrate", AR_DATABASE_URL=url)
    assert process.returncode == 1
    assert expected in process.stderr
    assert "postgresql" in process.stderr.lower() and "app@127.0.0.1" in process.stderr
    assert wrong not in process.stderr + process.stdout
    # The gateway stops at start-up the same way (exit 2), naming the cause.
    with FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge:
        settings = {**base_settings(forge.url), "AR_DATABASE_URL": url}
        gateway = start_gateway(tmp_path / "gw", settings, wait=False)
        assert gateway.process.wait(timeout=120) == 2
    assert expected in gateway.logs()
    assert wrong not in gateway.logs()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://app:{pw}@127.0.0.1/db", "must start with postgresql://"),
        ("postgresql://app:{pw}@/db", "must name the database host"),
        ("postgresql://app:{pw}@127.0.0.1:99999/db", "not a valid URL"),
        ("postgresql://app:{pw}@127.0.0.1", "must name the database"),
        ("postgresql://:{pw}@127.0.0.1/db", "must name the database user"),
        ("postgresql://app:{pw}@db.internal/db", "not on loopback"),
        ("postgresql://app:{pw}@127.0.0.1/db?sslmode=prefer", "sslmode"),
        ("postgresql://app:{pw}@127.0.0.1/db?password={pw}", "only have the query parameter"),
    ],
)
def test_a_bad_database_url_is_a_config_error_naming_the_setting(
    tmp_path: Path, url: str, problem: str
) -> None:
    secret = "CANARY-url-password-6Fh1Sd5Gj9Kl3Zx7Cv0Bn4Mq8Wr2"
    process = run_cli(tmp_path, "ops", "migrate", AR_DATABASE_URL=url.format(pw=secret))
    assert process.returncode == 2
    assert "AR_DATABASE_URL" in process.stderr and problem in process.stderr
    assert secret not in process.stderr + process.stdout


def test_password_in_the_url_and_a_password_file_is_refused(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("x\n")
    process = run_cli(
        tmp_path,
        "ops",
        "migrate",
        AR_DATABASE_URL=f"postgresql://app:{PASSWORD}@127.0.0.1:{postgres_server.port}/db",
        AR_DATABASE_PASSWORD_FILE=str(password_file),
    )
    assert process.returncode == 2
    assert "AR_DATABASE_PASSWORD_FILE" in process.stderr and "keep one" in process.stderr
    assert PASSWORD not in process.stderr


def doctor_line(process: subprocess.CompletedProcess[str]) -> str:
    [line] = [line for line in process.stdout.splitlines() if " database: " in line]
    return line


def test_ops_doctor_reports_the_database_and_its_schema(
    tmp_path: Path, postgres_server: PostgresServer, app_database: str
) -> None:
    url = app_url(postgres_server, app_database)
    where = f"postgresql://app@127.0.0.1:{postgres_server.port}/{app_database} (no TLS (loopback))"
    before = run_cli(tmp_path, "ops", "doctor", AR_DATABASE_URL=url)
    assert doctor_line(before) == (
        f"[warn] database: {where}: reachable, no schema yet; the gateway or "
        f"`auto-review ops migrate` brings it to version {LATEST_VERSION}"
    )
    assert run_cli(tmp_path, "ops", "migrate", AR_DATABASE_URL=url).returncode == 0
    after = run_cli(tmp_path, "ops", "doctor", AR_DATABASE_URL=url)
    assert doctor_line(after) == (
        f"[ok] database: {where}: reachable, schema version {LATEST_VERSION}"
    )
    wrong = "CANARY-doctor-wrong-2Hs7Kd1Lq9Zp4Xv6Bn3Mc8Jt0Wr5"
    failed = run_cli(
        tmp_path, "ops", "doctor", AR_DATABASE_URL=app_url(postgres_server, app_database, wrong)
    )
    assert doctor_line(failed).startswith("[fail] database: cannot connect to the PostgreSQL")
    assert "password authentication failed" in doctor_line(failed)
    for output in (before, after, failed):
        assert PASSWORD not in output.stdout + output.stderr
    assert wrong not in failed.stdout + failed.stderr
