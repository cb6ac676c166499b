"""The chat poller on two replicas sharing PostgreSQL: exactly one polls (it holds the
advisory lock); when it is killed (SIGKILL), the other takes the lock over and polls."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from tests.integration.gateway.conftest import BOT_LOGIN, FORGEJO_TOKEN, base_settings, metric_value
from tests.integration.store.test_postgres_replicas import stop_all
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess, start_gateway
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

LEADING = "chat poller: this replica holds the leader lock"
FOLLOWING = "chat poller: another replica holds the leader lock"


def leader_gauge(gateway: GatewayProcess) -> float:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        return metric_value(client, "auto_review_poller_leader")


def test_one_replica_polls_and_another_takes_over_when_it_is_killed(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("poller_leader")
    with FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge:
        forge.add_pull_request("poll", "repo", 5, head_sha="5" * 40, base_sha="6" * 40)
        first_comment = forge.add_comment(
            "poll", "repo", 5, author="carol", body=f"@{BOT_LOGIN} help"
        )
        settings = {
            **base_settings(forge.url),
            "AR_DATABASE_URL": postgres_server.url(database),
            "AR_DATABASE_LEASE_SECONDS": "3",
            "AR_POLL_REPOS": "forgejo:poll/repo",
            "AR_POLL_INTERVAL_SECONDS": "0.3",
        }
        replicas = [
            start_gateway(tmp_path / "a", settings),
            start_gateway(tmp_path / "b", settings),
        ]
        try:
            # Positive signals from both: one says it leads, the other that it waits.
            wait_until(
                lambda: (
                    sum(LEADING in r.logs() for r in replicas) == 1
                    and sum(FOLLOWING in r.logs() for r in replicas) == 1
                ),
                timeout=60,
                what="one leader and one follower",
            )
            leader, follower = replicas if LEADING in replicas[0].logs() else replicas[::-1]
            assert (leader_gauge(leader), leader_gauge(follower)) == (1.0, 0.0)
            # The follower's retries keep failing while the leader lives: the lock is one.
            rounds = len(forge.requests_to("/issues/comments"))
            forge.wait_for_requests("/issues/comments", rounds + 3)
            assert leader_gauge(follower) == 0.0
            assert LEADING not in follower.logs()
            jobs = leader.wait_for_jobs(1)
            assert [(j["comment_id"], j["source"]) for j in jobs] == [(first_comment, "poller")]

            leader.process.send_signal(signal.SIGKILL)
            leader.process.wait()
            wait_until(
                lambda: LEADING in follower.logs(), timeout=30, what="the follower taking over"
            )
            assert leader_gauge(follower) == 1.0
            # It polls: a comment written after the kill becomes its job.
            second_comment = forge.add_comment(
                "poll", "repo", 5, author="dave", body=f"@{BOT_LOGIN} help"
            )
            wait_until(
                lambda: second_comment in [j["comment_id"] for j in follower.recorded_jobs()],
                timeout=30,
                what="the new leader's poll finding the new comment",
            )
        finally:
            stop_all(*(r for r in replicas if r.process.poll() is None))
    polled = [j["comment_id"] for r in replicas for j in r.recorded_jobs()]
    # Each comment became one job, on one replica (the job dedup is in the shared store).
    assert sorted(polled) == sorted({first_comment, second_comment})
