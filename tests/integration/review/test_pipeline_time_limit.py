"""An attempt past AR_JOB_TIMEOUT_SECONDS never leaves the head `pending`: a real gateway
against the loopback Forgejo and a loopback LLM that answers later than the time limit.
Within the retry horizon the job runs again; on the final attempt the job ends with an
`error` status that says why."""

from __future__ import annotations

from tests.integration.review.test_pipeline_forgejo import DOUBLE_DISCOUNT, World
from tests.integration.review.test_pipeline_forgejo import world as world
from tests.integration.review.test_pipeline_outage import FAST_RETRIES, accept_review
from tests.integration.review.test_pipeline_setup import (
    ModelScript,
    findings_answer,
    reasoning_requests,
    running_gateway,
    wait_for,
)
from tests.support.fake_llm import slow

# Shorter than the LLM client's own 5 s request timeout, so the job's limit is what stops it.
TIME_LIMIT = {"AR_JOB_TIMEOUT_SECONDS": "1.5"}
LATE = 3.0


def test_a_final_attempt_past_the_time_limit_ends_with_an_error_status(world: World) -> None:
    world.llm.respond(ModelScript([slow(findings_answer(DOUBLE_DISCOUNT), LATE)]))
    settings = world.settings(**FAST_RETRIES, **TIME_LIMIT, AR_JOB_RETRY_HORIZON_SECONDS="0")
    with running_gateway(world.tmp / "gateway", settings) as gateway:
        accept_review(gateway, world)
        finals = wait_for(
            lambda: world.final_statuses(world.repo.head_sha), what="the final status"
        )
        rows = gateway.wait_until_idle(timeout=60)
    assert [s.state for s in world.forge.statuses(world.repo.head_sha)] == ["pending", "error"]
    assert finals[0].description == (
        "review failed: it ran past the time limit of 1.5 s (AR_JOB_TIMEOUT_SECONDS)"
    )
    assert [(row["status"], row["attempts"]) for row in rows] == [("failed", 1)]
    assert "JobTimedOut" in str(rows[0]["detail"])
    assert world.forge.posted_reviews("acme", "shop", 1) == []


def test_an_attempt_past_the_time_limit_is_retried_within_the_horizon(world: World) -> None:
    world.llm.respond(
        ModelScript(
            [slow(findings_answer(DOUBLE_DISCOUNT), LATE), findings_answer(DOUBLE_DISCOUNT)]
        )
    )
    with running_gateway(
        world.tmp / "gateway", world.settings(**FAST_RETRIES, **TIME_LIMIT)
    ) as gateway:
        accept_review(gateway, world)
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="the final status")
        rows = gateway.wait_until_idle(timeout=60)
    assert [(row["status"], row["outcome"], row["attempts"]) for row in rows] == [
        ("done", "succeeded", 2)
    ]
    assert len(reasoning_requests(world.llm)) == 2
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert [c.line for c in review.comments] == [5]
    assert [s.state for s in world.final_statuses(world.repo.head_sha)] == ["failure"]
