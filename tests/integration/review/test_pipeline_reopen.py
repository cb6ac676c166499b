"""A reopened pull request is reviewed again when its head's earlier review did not end in
a posted review (an `error`, or a skip because the PR was closed when the job ran), and
stays a duplicate when it did. A real gateway, the loopback Forgejo and a real
`reopened` delivery from Forgejo."""

from __future__ import annotations

import copy
from typing import Any

import httpx
from tests.integration.review.test_pipeline_forgejo import DOUBLE_DISCOUNT, World
from tests.integration.review.test_pipeline_forgejo import world as world
from tests.integration.review.test_pipeline_setup import (
    ModelScript,
    ServedRepo,
    _retarget,
    findings_answer,
    forgejo_pr_payload,
    post_forgejo,
    reasoning_requests,
    running_gateway,
    wait_for,
)
from tests.support.fake_llm import text_reply
from tests.support.gateway_process import GatewayProcess
from tests.support.reference import load_json, reference_path


def reopened_payload(repo: ServedRepo) -> dict[str, Any]:
    path = reference_path("forge", "payloads", "forgejo_pull_request_reopened.json")
    payload = copy.deepcopy(load_json(path))
    assert payload["action"] == "reopened"
    _retarget(payload, "acme", "shop")
    payload["number"] = payload["pull_request"]["number"] = repo.number
    payload["pull_request"]["head"]["sha"] = repo.head_sha
    payload["pull_request"]["base"]["sha"] = repo.base_sha
    payload["pull_request"]["user"]["login"] = "alice"
    return payload


def deliver(
    gateway: GatewayProcess, payload: dict[str, Any], *, status: int = 202
) -> dict[str, Any]:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        answer = post_forgejo(client, payload, "pull_request")
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert isinstance(body, dict)
    return body


def test_reopening_after_an_error_reviews_the_head_again(world: World) -> None:
    # The first review's model answers twice without the review's structure: `error`.
    not_json = text_reply("I would rather not answer in JSON.")
    world.llm.respond(ModelScript([not_json, not_json, findings_answer(DOUBLE_DISCOUNT)]))
    with running_gateway(world.tmp / "gateway", world.settings()) as gateway:
        deliver(gateway, forgejo_pr_payload(world.repo))
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="the error status")
        gateway.wait_until_idle(timeout=60)
        assert [s.state for s in world.final_statuses(world.repo.head_sha)] == ["error"]
        assert "duplicate" not in deliver(gateway, reopened_payload(world.repo))
        wait_for(
            lambda: len(world.final_statuses(world.repo.head_sha)) == 2, what="the second status"
        )
        rows = gateway.wait_until_idle(timeout=60)
    assert [s.state for s in world.final_statuses(world.repo.head_sha)] == ["error", "failure"]
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert [c.line for c in review.comments] == [5]
    assert [(row["status"], row["outcome"]) for row in rows] == [
        ("failed", "failed"),
        ("done", "succeeded"),
    ]
    assert rows[0]["dedup_key"].endswith(f"|redone-by-reopen:{rows[0]['id']}")


def test_reopening_a_pr_closed_before_its_review_ran_reviews_it(world: World) -> None:
    world.llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    world.publish_pr(state="closed")  # closed before the job ran: skipped, nothing posted
    with running_gateway(world.tmp / "gateway", world.settings()) as gateway:
        deliver(gateway, forgejo_pr_payload(world.repo))
        [skipped] = gateway.wait_until_idle(timeout=60)
        assert (skipped["status"], skipped["outcome"]) == ("done", "skipped")
        world.publish_pr(state="open")
        deliver(gateway, reopened_payload(world.repo))
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="the review's status")
        rows = gateway.wait_until_idle(timeout=60)
    assert [row["outcome"] for row in rows] == ["skipped", "succeeded"]
    assert len(world.forge.posted_reviews("acme", "shop", 1)) == 1


def test_reopening_after_a_posted_review_is_a_duplicate(world: World) -> None:
    world.llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    with running_gateway(world.tmp / "gateway", world.settings()) as gateway:
        deliver(gateway, forgejo_pr_payload(world.repo))
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="the review's status")
        gateway.wait_until_idle(timeout=60)
        answer = deliver(gateway, reopened_payload(world.repo), status=200)
        assert answer["duplicate"] == "job"
        rows = gateway.wait_until_idle(timeout=60)
    assert [row["outcome"] for row in rows] == ["succeeded"]
    assert len(reasoning_requests(world.llm)) == 1
    assert len(world.forge.posted_reviews("acme", "shop", 1)) == 1
