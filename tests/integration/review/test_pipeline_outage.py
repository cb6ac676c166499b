"""Every accepted job ends with a visible outcome, however long the forge or the LLM is down.

A real gateway process against the loopback Forgejo and LLM: the outage outlasts what the
old three-attempt cap survived; the jobs accepted meanwhile wait durably (their next attempt
time in the state database, also across a SIGKILL and restart) and, once the service is
back, each is reviewed exactly once. Short retry delays stand in for the production ones;
the horizon is the default 24 h.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import httpx
import pytest
from tests.integration.review.test_pipeline_forgejo import DOUBLE_DISCOUNT, World
from tests.integration.review.test_pipeline_forgejo import world as world
from tests.integration.review.test_pipeline_setup import (
    ModelScript,
    findings_answer,
    forgejo_pr_payload,
    post_forgejo,
    running_gateway,
    wait_for,
)
from tests.support.fake_llm import Answer, RecordedRequest, server_error
from tests.support.gateway_process import GatewayProcess, start_gateway

FAST_RETRIES = {
    "AR_JOB_RETRY_BASE_SECONDS": "0.2",
    "AR_JOB_RETRY_MAX_DELAY_SECONDS": "0.5",
    "AR_LLM_MAX_RETRIES": "0",
}
PAST_THE_OLD_CAP = 4  # attempts: the old policy gave up after 3


class SwitchableLlm:
    """The loopback LLM's responder, with an outage switch: 503 to everything while down."""

    def __init__(self, script: ModelScript) -> None:
        self.script = script
        self.down = threading.Event()

    def __call__(self, request: RecordedRequest) -> Answer:
        if self.down.is_set():
            return server_error(503)
        return self.script(request)


def accept_review(gateway: GatewayProcess, world: World) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        answer = post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        assert answer.status_code == 202, answer.text
        # Another event for the same head while it waits: the same job, not a second one.
        again = post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        assert again.json()["duplicate"] == "job"


def wait_for_attempts(gateway: GatewayProcess, attempts: int) -> dict[str, object]:
    def waiting() -> dict[str, object] | None:
        rows = gateway.queued_jobs(status="pending")
        return rows[0] if rows and rows[0]["attempts"] >= attempts else None

    row = wait_for(waiting, timeout=120, what=f"a job waiting after {attempts} attempts")
    assert isinstance(row, dict)
    return row


def assert_reviewed_once(world: World, gateway: GatewayProcess) -> None:
    wait_for(lambda: world.final_statuses(world.repo.head_sha), timeout=120, what="the outcome")
    rows = gateway.wait_until_idle(timeout=60)
    assert [(row["status"], row["outcome"]) for row in rows] == [("done", "succeeded")]
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert [c.line for c in review.comments] == [5]
    finals = world.final_statuses(world.repo.head_sha)
    assert [s.state for s in finals] == ["failure"]  # one outcome: the high finding


@pytest.fixture
def settings(world: World) -> Iterator[dict[str, str]]:
    yield world.settings(**FAST_RETRIES)


def test_jobs_accepted_while_the_forge_is_down_are_reviewed_once_it_is_back(
    world: World,
    settings: dict[str, str],
) -> None:
    world.llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    world.forge.fail(503, times=10**9)  # down until the faults are cleared
    with running_gateway(world.tmp / "gateway", settings) as gateway:
        accept_review(gateway, world)
        row = wait_for_attempts(gateway, PAST_THE_OLD_CAP)
        assert "waiting to retry" in str(row["detail"])
        assert world.forge.posted_reviews("acme", "shop", 1) == []
        metrics = httpx.get(gateway.base_url + "/metrics", timeout=10).text
        assert 'auto_review_jobs_by_state{state="failed"} 0.0' in metrics
        assert "auto_review_oldest_waiting_job_age_seconds" in metrics
        assert 'auto_review_jobs_total{outcome="retrying"}' in metrics
        world.forge.clear_faults()  # the forge is back
        assert_reviewed_once(world, gateway)
    assert "HostUnavailable" in gateway.logs()


def test_jobs_accepted_while_the_llm_is_down_are_reviewed_once_it_is_back(
    world: World,
    settings: dict[str, str],
) -> None:
    llm = SwitchableLlm(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    llm.down.set()
    world.llm.respond(llm)
    with running_gateway(world.tmp / "gateway", settings) as gateway:
        accept_review(gateway, world)
        wait_for_attempts(gateway, PAST_THE_OLD_CAP)
        states = {s.state for s in world.forge.statuses(world.repo.head_sha)}
        assert states == {"pending"}  # waiting, visibly, and no error yet
        llm.down.clear()
        assert_reviewed_once(world, gateway)
    assert "LlmUnavailable" in gateway.logs()


def test_a_sigkill_during_the_outage_loses_nothing_and_repeats_nothing(
    world: World,
    settings: dict[str, str],
) -> None:
    world.llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    world.forge.fail(503, times=10**9)
    workdir = world.tmp / "gateway"
    first = start_gateway(workdir, settings, runner="none")
    try:
        accept_review(first, world)
        wait_for_attempts(first, 2)
    finally:
        first.process.send_signal(signal.SIGKILL)  # mid-outage, no shutdown
        first.process.wait()
    rows = first.queued_jobs()
    assert len(rows) == 1 and rows[0]["status"] in ("pending", "running")
    world.forge.clear_faults()
    with running_gateway(workdir, settings) as second:  # same state directory
        assert_reviewed_once(world, second)
