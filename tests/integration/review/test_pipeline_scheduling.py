"""Scheduling through a real gateway process, the loopback Forgejo and LLM, real git.

While the only worker is busy, a burst of pushes to one pull request and a push to another
repository arrive: the older heads are superseded at accept time (no forge call for any of
them, listed by ``history jobs``), only the latest head is reviewed, and the other
repository's review is not made to wait behind the busy repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest
from tests.integration.review.test_pipeline_forgejo import CART_HEAD, DOUBLE_DISCOUNT, World
from tests.integration.review.test_pipeline_forgejo import world as world
from tests.integration.review.test_pipeline_setup import (
    ModelScript,
    ServedRepo,
    findings_answer,
    forgejo_pr_delivery,
    git,
    is_verification,
    post_forgejo,
    running_gateway,
)
from tests.support.fake_llm import Answer, RecordedRequest

BURST = 6  # heads pushed to PR 1 while the worker is busy


class HeldFirstReview:
    """The LLM's responder: the first review request waits until released, so the only
    worker stays busy (on another pull request) while the burst is accepted."""

    def __init__(self, script: ModelScript) -> None:
        self.script = script
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._held = False

    def __call__(self, request: RecordedRequest) -> Answer:
        if not is_verification(request):
            with self._lock:
                hold, self._held = not self._held, True
            if hold:
                self.entered.set()
                self.release.wait(120)
        return self.script(request)


def second_repository(world: World, owner: str, name: str) -> ServedRepo:
    """Another repository on the same loopback git server, its PR 1 at one pushed head."""
    work = world.tmp / f"work-{name}"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "shop").mkdir()
    (work / "shop" / "cart.py").write_text(
        "from decimal import Decimal\n\n\ndef total(prices):\n    return sum(prices, Decimal(0))\n"
    )
    git(work, "add", "-A")
    git(work, "commit", "-qm", "base")
    base = git(work, "rev-parse", "HEAD")
    git(work, "branch", "feature")
    bare = world.repo.bare.parent.parent / owner / f"{name}.git"
    bare.parent.mkdir(exist_ok=True)
    git(bare.parent, "clone", "-q", "--bare", str(work), str(bare))
    repo = ServedRepo(work, bare, world.repo.server, 1, base)
    repo.push({"shop/cart.py": CART_HEAD})
    world.forge.add_pull_request(
        owner,
        name,
        1,
        head_sha=repo.head_sha,
        base_sha=repo.base_sha,
        diff=repo.diff(),
        clone_url=repo.clone_url,
    )
    return repo


@pytest.fixture
def held_llm(world: World) -> Iterator[HeldFirstReview]:
    responder = HeldFirstReview(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    world.llm.respond(responder)
    yield responder
    responder.release.set()


def history_jobs(state_dir: str, state: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "auto_review.cli.main",
            "history",
            "jobs",
            "--state",
            state,
            "--state-dir",
            state_dir,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def ops_status(base_url: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "ops", "status", "--gateway-url", base_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def test_a_burst_of_heads_reviews_only_the_latest_and_starves_no_repository(
    world: World, held_llm: HeldFirstReview
) -> None:
    shop = world.repo
    # PR 2 of the same repository keeps the only worker busy (its review is held).
    git(shop.bare, "update-ref", "refs/pull/2/head", shop.head_sha)
    world.forge.add_pull_request(
        "acme",
        "shop",
        2,
        head_sha=shop.head_sha,
        base_sha=shop.base_sha,
        diff=shop.diff(),
        clone_url=shop.clone_url,
    )
    blocker_head = shop.head_sha
    # PR 1 gets BURST heads; the forge shows the last one as the PR's head.
    heads = [shop.head_sha]
    for n in range(1, BURST):
        heads.append(shop.push({"shop/cart.py": CART_HEAD + f"# revision {n}\n"}))
    world.publish_pr()
    other = second_repository(world, "acme", "other")

    settings = world.settings(AR_WORKERS="1", AR_LLM_TIMEOUT_SECONDS="120")
    with (
        running_gateway(world.tmp / "gateway", settings) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        blocker = forgejo_pr_delivery("acme", "shop", 2, blocker_head, shop.base_sha)
        assert post_forgejo(client, blocker, "pull_request").status_code == 202
        assert held_llm.entered.wait(60), "the first review never reached the LLM"

        for head in heads:  # oldest first, as the forge sends them
            delivery = forgejo_pr_delivery("acme", "shop", 1, head, shop.base_sha)
            assert post_forgejo(client, delivery, "pull_request").status_code == 202
        delivery = forgejo_pr_delivery("acme", "other", 1, other.head_sha, other.base_sha)
        assert post_forgejo(client, delivery, "pull_request").status_code == 202

        # Accepted and coalesced while the worker was busy: one review of PR 1 waits.
        pending = gateway.queued_jobs(status="pending")
        assert sorted((r["name"], r["pr_number"], r["head_sha"]) for r in pending) == [
            ("other", 1, other.head_sha),
            ("shop", 1, heads[-1]),
        ]
        info = client.get("/info").json()["jobs"]
        assert info["by_state"]["superseded"] == BURST - 1
        assert info["queue_by_lane"]["review"] == {"queued": 2, "waiting-retry": 0, "running": 1}
        metrics = client.get("/metrics").text
        assert f"auto_review_jobs_superseded_total {BURST - 1}.0" in metrics
        assert 'auto_review_queue_jobs{kind="review",state="queued"} 2.0' in metrics
        assert "superseded 5" in ops_status(gateway.base_url)

        held_llm.release.set()
        rows = gateway.wait_until_idle(timeout=180)

    by_target = {(r["name"], r["pr_number"], r["head_sha"]): r for r in rows}
    latest = by_target[("shop", 1, heads[-1])]
    other_job = by_target[("other", 1, other.head_sha)]
    # Fair: the other repository went before the repository just served (PR 2), although
    # PR 1's latest head was accepted first.
    assert other_job["claimed_at"] < latest["claimed_at"]
    assert {(r["status"], r["outcome"]) for r in (latest, other_job)} == {("done", "succeeded")}

    # Only the latest head of PR 1 was reviewed; the older heads cost no forge call.
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert review.commit_id == heads[-1]
    assert [c.line for c in review.comments] == [5]
    assert len(world.forge.posted_reviews("acme", "other", 1)) == 1
    assert len(world.forge.posted_reviews("acme", "shop", 2)) == 1
    for head in heads[:-1]:
        row = by_target[("shop", 1, head)]
        assert (row["status"], row["outcome"]) == ("done", "superseded")
        assert row["attempts"] == 0
    for head in heads[1:-1]:  # (the first is also PR 2's head, which was reviewed)
        assert world.forge.statuses(head) == []
    details = [
        e
        for e in world.forge.requests_to("/repos/acme/shop/pulls/1", "GET")
        if e.path.endswith("/repos/acme/shop/pulls/1")
    ]
    assert len(details) == 2  # the latest head's job: at its start and before posting

    listed = history_jobs(str(gateway.state_dir), "superseded")
    lines = [line for line in listed.splitlines() if "superseded by job" in line]
    assert len(lines) == BURST - 1
    for head in heads[:-1]:
        assert any(head[:12] in line for line in lines)
    assert f"superseded by job {latest['id']} (head {heads[-1][:12]})" in listed


def test_a_stale_delivery_after_a_push_does_not_leave_the_head_unreviewed(
    world: World, held_llm: HeldFirstReview
) -> None:
    """Coalescing goes by arrival: a late delivery for an older commit supersedes the
    queued review of the head the PR is at. Its job then finds the PR at that head, and
    queues a review of it (a follow-up), so the head is reviewed without another push."""
    shop = world.repo
    git(shop.bare, "update-ref", "refs/pull/2/head", shop.head_sha)
    world.forge.add_pull_request(
        "acme", "shop", 2, head_sha=shop.head_sha, base_sha=shop.base_sha,
        diff=shop.diff(), clone_url=shop.clone_url,
    )  # fmt: skip
    blocker_head = stale = shop.head_sha
    latest = shop.push({"shop/cart.py": CART_HEAD + "# revision 1\n"})
    world.publish_pr()

    settings = world.settings(AR_WORKERS="1", AR_LLM_TIMEOUT_SECONDS="120")
    with (
        running_gateway(world.tmp / "gateway", settings) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        blocker = forgejo_pr_delivery("acme", "shop", 2, blocker_head, shop.base_sha)
        assert post_forgejo(client, blocker, "pull_request").status_code == 202
        assert held_llm.entered.wait(60), "the first review never reached the LLM"
        for head in (latest, stale):  # the older commit's delivery arrives last
            delivery = forgejo_pr_delivery("acme", "shop", 1, head, shop.base_sha)
            assert post_forgejo(client, delivery, "pull_request").status_code == 202
        [queued] = [r for r in gateway.queued_jobs(status="pending") if r["pr_number"] == 1]
        assert queued["head_sha"] == stale  # the push's review was superseded

        held_llm.release.set()
        rows = gateway.wait_until_idle(timeout=180)

    pr1 = [r for r in rows if r["name"] == "shop" and r["pr_number"] == 1]
    outcomes = sorted((r["head_sha"] == latest, r["source"], r["outcome"]) for r in pr1)
    assert outcomes == [
        (False, "webhook", "skipped"),  # the stale head: the PR had moved on
        (True, "follow-up", "succeeded"),  # the head the PR is at, queued by that skip
        (True, "webhook", "superseded"),  # the push's own review, replaced on arrival
    ]
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert review.commit_id == latest
    assert world.forge.statuses(latest)[-1].state == "failure"  # the finding, posted
