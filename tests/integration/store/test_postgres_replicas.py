"""Two gateway processes sharing one PostgreSQL queue: deliveries sent to both are accepted
once and every job runs once; a replica killed with jobs in flight loses none of them, the
other finishes them once their leases expire."""

from __future__ import annotations

import copy
import signal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from tests.integration.gateway.conftest import (
    BOT_LOGIN,
    FORGEJO_TOKEN,
    assert_no_canary,
    base_settings,
    post_forgejo,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess, start_gateway
from tests.support.postgres import PostgresServer
from tests.support.reference import load_json, reference_path
from tests.support.waiting import wait_until

PULL_REQUESTS = 60


def pull_request_event(number: int) -> dict[str, Any]:
    """The reference `reopened` delivery, for pull request `number` at its own head."""
    payload = copy.deepcopy(
        load_json(reference_path("forge", "payloads", "forgejo_pull_request_reopened.json"))
    )
    payload["number"] = number
    payload["pull_request"]["number"] = number
    payload["pull_request"]["head"]["sha"] = f"{number:040x}"
    return payload


def job_rows(server: PostgresServer, database: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.url(database), autocommit=True) as connection:
        return connection.execute(
            "SELECT id, status, outcome, attempts FROM jobs ORDER BY id"
        ).fetchall()


def settings_for(forge: FakeForgejo, server: PostgresServer, database: str) -> dict[str, str]:
    return {
        **base_settings(forge.url),
        "AR_DATABASE_URL": server.url(database),
        "AR_DATABASE_LEASE_SECONDS": "3",
        "AR_WORKERS": "2",
    }


def stop_all(*gateways: GatewayProcess) -> None:
    for gateway in gateways:
        gateway.stop()
        assert_no_canary(gateway.logs(), "a gateway log")


def test_deliveries_sent_to_both_replicas_run_each_job_once(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("replicas_dedup")
    with FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge:
        settings = settings_for(forge, postgres_server, database)
        # Each job takes half a second: both replicas' workers have work to claim.
        first = start_gateway(tmp_path / "a", settings, runner="slow")
        second = start_gateway(tmp_path / "b", settings, runner="slow")
        try:
            statuses: list[int] = []
            with (
                httpx.Client(base_url=first.base_url, timeout=30) as to_first,
                httpx.Client(base_url=second.base_url, timeout=30) as to_second,
            ):
                for number in range(1, PULL_REQUESTS + 1):
                    event = pull_request_event(number)
                    delivery = f"replica-{number}"
                    # The same delivery to both, then a redelivery under a new id.
                    statuses.append(
                        post_forgejo(to_first, event, "pull_request", delivery=delivery).status_code
                    )
                    statuses.append(
                        post_forgejo(
                            to_second, event, "pull_request", delivery=delivery
                        ).status_code
                    )
                    again = to_first if number % 2 else to_second
                    statuses.append(
                        post_forgejo(
                            again, event, "pull_request", delivery=f"{delivery}-b"
                        ).status_code
                    )
            assert statuses.count(202) == PULL_REQUESTS
            assert statuses.count(200) == 2 * PULL_REQUESTS  # duplicates, answered as such
            wait_until(
                lambda: (
                    [row[1] for row in job_rows(postgres_server, database)]
                    == ["done"] * PULL_REQUESTS
                ),
                timeout=120,
                what="every job done",
            )
        finally:
            stop_all(first, second)
    ran = [job["id"] for job in first.recorded_jobs() + second.recorded_jobs()]
    assert sorted(ran) == [row[0] for row in job_rows(postgres_server, database)]
    assert len(set(ran)) == len(ran) == PULL_REQUESTS  # each job ran once, on one replica
    assert first.recorded_jobs() and second.recorded_jobs()  # both took a share


def test_a_killed_replicas_jobs_are_finished_by_the_other_after_their_leases(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("replicas_kill")
    with FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge:
        settings = settings_for(forge, postgres_server, database)
        doomed = start_gateway(tmp_path / "a", settings, runner="hang")
        with httpx.Client(base_url=doomed.base_url, timeout=30) as client:
            for number in range(1, 6):
                response = post_forgejo(client, pull_request_event(number), "pull_request")
                assert response.status_code == 202
        in_flight = doomed.wait_for_jobs(2, timeout=60)
        assert len(in_flight) == 2  # both of its workers hold a job, hung
        survivor = start_gateway(tmp_path / "b", settings, runner="record")
        try:
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait()
            wait_until(
                lambda: [row[1] for row in job_rows(postgres_server, database)] == ["done"] * 5,
                timeout=120,
                what="every job done by the surviving replica",
            )
        finally:
            stop_all(survivor)
    ran = {job["id"]: job["attempts"] for job in survivor.recorded_jobs()}
    assert sorted(ran) == [row[0] for row in job_rows(postgres_server, database)]
    assert len(survivor.recorded_jobs()) == 5  # each once on the survivor
    for job in in_flight:
        assert ran[job["id"]] == 2  # the killed replica's attempt, then this one
    assert sum(attempts == 1 for attempts in ran.values()) == 3


def test_an_intake_only_replica_queues_and_another_runs_the_jobs(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("replicas_intake_only")
    with FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge:
        settings = settings_for(forge, postgres_server, database)
        intake = start_gateway(tmp_path / "a", {**settings, "AR_WORKERS": "0"})
        with httpx.Client(base_url=intake.base_url, timeout=30) as client:
            for number in range(1, 4):
                response = post_forgejo(client, pull_request_event(number), "pull_request")
                assert response.status_code == 202
        # Committed before the 202s: the rows are there, and nobody runs them yet.
        assert [row[1] for row in job_rows(postgres_server, database)] == ["pending"] * 3
        worker = start_gateway(tmp_path / "b", settings)
        try:
            wait_until(
                lambda: [row[1] for row in job_rows(postgres_server, database)] == ["done"] * 3,
                timeout=60,
                what="the other replica running the jobs",
            )
        finally:
            stop_all(intake, worker)
    assert intake.recorded_jobs() == []
    assert sorted(job["pr"] for job in worker.recorded_jobs()) == [1, 2, 3]
    assert "intake only (AR_WORKERS=0)" in intake.logs()
