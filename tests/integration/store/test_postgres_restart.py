"""The database restarted under a running gateway: while it is down the gateway answers 503
(never 202), nothing it acknowledged is lost, and it recovers by itself."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
from tests.integration.gateway.conftest import (
    BOT_LOGIN,
    FORGEJO_TOKEN,
    assert_no_canary,
    base_settings,
    post_forgejo,
)
from tests.integration.store.test_postgres_replicas import pull_request_event
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import start_gateway
from tests.support.postgres import running_cluster
from tests.support.waiting import wait_until


def test_a_database_restart_answers_503_loses_nothing_and_recovers(tmp_path: Path) -> None:
    # A cluster of its own: this test stops it.
    with running_cluster() as server, FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge:
        server.create_database("restart")
        settings = {
            **base_settings(forge.url),
            "AR_DATABASE_URL": server.url("restart"),
            "AR_DATABASE_STATEMENT_TIMEOUT_SECONDS": "5",
        }
        gateway = start_gateway(tmp_path, settings)
        try:
            with httpx.Client(base_url=gateway.base_url, timeout=60) as client:
                before = [
                    post_forgejo(client, pull_request_event(n), "pull_request", delivery=f"b-{n}")
                    for n in range(1, 4)
                ]
                assert [response.status_code for response in before] == [202] * 3
                server.stop()
                while_down = [
                    post_forgejo(client, pull_request_event(n), "pull_request", delivery=f"d-{n}")
                    for n in range(4, 7)
                ]
                assert [response.status_code for response in while_down] == [503] * 3
                assert all(response.headers.get("Retry-After") for response in while_down)
                # The store's reads run off the event loop: the rest of the gateway answers.
                assert client.get("/metrics").status_code == 200
                assert client.get("/info").json()["jobs"] == "unavailable"
                assert client.get("/healthz").status_code == 200
                server.start()

                # The forge redelivers what was refused; the gateway takes it once it can.
                def redelivered() -> bool:
                    return all(
                        post_forgejo(
                            client, pull_request_event(n), "pull_request", delivery=f"d-{n}"
                        ).status_code
                        in (200, 202)
                        for n in range(4, 7)
                    )

                wait_until(redelivered, timeout=90, what="the gateway accepting again")
                with psycopg.connect(server.url("restart"), autocommit=True) as connection:

                    def all_done() -> bool:
                        rows = connection.execute("SELECT status FROM jobs").fetchall()
                        return rows == [("done",)] * 6

                    wait_until(all_done, timeout=90, what="the six jobs done")
                    deliveries = connection.execute(
                        "SELECT delivery_id FROM deliveries ORDER BY 1"
                    ).fetchall()
            assert [d for (d,) in deliveries] == ["b-1", "b-2", "b-3", "d-4", "d-5", "d-6"]
        finally:
            gateway.stop()
    ran = sorted(job["pr"] for job in gateway.recorded_jobs())
    assert ran == [1, 2, 3, 4, 5, 6]  # each once: none lost, none twice
    assert_no_canary(gateway.logs(), "the gateway log")
    assert server.password not in gateway.logs()
