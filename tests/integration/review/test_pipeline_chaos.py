"""Chaos: random forge and LLM failures on 10 % of the calls, over 200 reviews.

A real gateway process reviews 200 pull requests (one repository served by real git over
HTTPS, one head each) against the loopback Forgejo and LLM, both failing a random 10 % of
their requests (5xx, connection resets, stalls past the client's timeout, 429 with
Retry-After; tests/support/chaos.py) from a fixed seed. Every job must end with exactly one
posted outcome: one final commit status and one review with its one comment per head, no
comment twice, nothing left pending, every job row done. The figures (faults by kind, job
retries, outcomes) are printed: run with ``pytest -s`` to see them.

A second test loses the answer of a third of the forge writes after the forge applied them
(the ambiguous case a retry must not turn into a duplicate).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.review.test_pipeline_forgejo import CART_BASE, CART_HEAD, DOUBLE_DISCOUNT
from tests.integration.review.test_pipeline_setup import (
    BOT,
    CHEAP_MODEL,
    FORGE_TOKEN,
    LLM_KEY,
    REASONING_MODEL,
    ModelScript,
    ServedRepo,
    add_pull_request_heads,
    findings_answer,
    forgejo_pr_delivery,
    pipeline_settings,
    post_forgejo,
    publish_heads,
    running_gateway,
    serve_repo,
)
from tests.support.chaos import LOST_REPLY, RandomFaults
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import FakeLlm
from tests.support.gateway_process import GatewayProcess
from tests.support.prometheus_text import sample_value
from tests.support.waiting import wait_until

PULL_REQUESTS = 200
LOST_REPLY_PULL_REQUESTS = 40
FAULT_RATE = 0.1
SEED = 14
# Seconds, forge and LLM. A stall outlasts it; a real answer, even on a loaded machine, never
# comes near it (a write answered too late would be repeated: the second test's case).
CLIENT_TIMEOUT = "2"
STALL_SECONDS = 2.5
CHAOS_SETTINGS = {
    # Most of a job's time is spent waiting out faults (stalls, Retry-After, backoff):
    # more workers than cores overlap the waits.
    "AR_WORKERS": "8",
    "AR_HTTP_TIMEOUT_SECONDS": CLIENT_TIMEOUT,
    "AR_LLM_TIMEOUT_SECONDS": CLIENT_TIMEOUT,
    "AR_JOB_RETRY_BASE_SECONDS": "0.2",
    "AR_JOB_RETRY_MAX_DELAY_SECONDS": "1",
    "AR_LOG_LEVEL": "warning",  # thousands of info lines would only slow the run
}


def deliver_all(gateway: GatewayProcess, repo: ServedRepo, heads: dict[int, str]) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for number, head in heads.items():
            payload = forgejo_pr_delivery("acme", "shop", number, head, repo.base_sha)
            answer = post_forgejo(client, payload, "pull_request")
            assert answer.status_code == 202, answer.text
            if number % 10 == 0:  # the forge sends the same event again: the same job
                again = post_forgejo(client, payload, "pull_request")
                assert again.json()["duplicate"] == "job"


@dataclass
class ChaosRun:
    forge: FakeForgejo
    llm: FakeLlm
    heads: dict[int, str]
    rows: list[dict[str, Any]]
    metrics: str
    elapsed: float


def run_chaos(
    tmp_path: Path, count: int, forge_faults: RandomFaults, llm_faults: RandomFaults | None
) -> ChaosRun:
    """``count`` PRs through a gateway while the fakes fail as told; until all are idle."""
    repo = serve_repo(
        tmp_path, {"shop/cart.py": CART_BASE, "README.md": "shop\n"}, username=BOT,
        token=FORGE_TOKEN,
    )  # fmt: skip
    forge = FakeForgejo(FORGE_TOKEN, bot_login=BOT).start()
    llm = FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    try:
        heads = add_pull_request_heads(repo, count, CART_HEAD)
        publish_heads(forge, repo, heads)
        llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
        forge.chaos, llm.chaos = forge_faults, llm_faults
        settings = pipeline_settings(
            llm=llm, cert=repo.server.cert, forgejo_url=forge.url, extra=CHAOS_SETTINGS
        )
        started = time.monotonic()
        with running_gateway(tmp_path / "gateway", settings) as gateway:
            deliver_all(gateway, repo, heads)
            wanted = set(heads.values())
            wait_until(
                lambda: wanted <= {s.sha for s in forge.status_list if s.state != "pending"},
                timeout=360, what="a final status on every head",
            )  # fmt: skip
            rows = gateway.wait_until_idle(timeout=60)
            metrics = httpx.get(gateway.base_url + "/metrics", timeout=10).text
        elapsed = time.monotonic() - started
    finally:
        forge.stop()
        llm.stop()
        repo.server.close()
    return ChaosRun(forge, llm, heads, rows, metrics, elapsed)


def assert_one_review_each(run: ChaosRun) -> None:
    """Every job done; on every head one review with its one comment, no comment twice,
    and the head's last status final."""
    assert len(run.rows) == len(run.heads)  # one job per head, the repeated events included
    assert Counter((row["status"], row["outcome"]) for row in run.rows) == {
        ("done", "succeeded"): len(run.heads)
    }
    for number, head in run.heads.items():
        assert run.forge.statuses(head)[-1].state == "failure", f"PR {number}: left pending"
        [review] = run.forge.posted_reviews("acme", "shop", number)
        assert review.commit_id == head
        assert [(c.path, c.line) for c in review.comments] == [("shop/cart.py", 5)]
        bodies = [c.body for c in run.forge.issue_comments("acme", "shop", number)]
        assert len(bodies) == len(set(bodies)), f"PR {number}: a comment posted twice"


def final_states(run: ChaosRun, head: str) -> list[str]:
    return [s.state for s in run.forge.statuses(head) if s.state != "pending"]


@pytest.mark.timeout(420)
def test_random_forge_and_llm_failures_end_every_job_with_one_outcome(tmp_path: Path) -> None:
    run = run_chaos(
        tmp_path,
        PULL_REQUESTS,
        RandomFaults(seed=SEED, rate=FAULT_RATE, stall_seconds=STALL_SECONDS),
        RandomFaults(seed=SEED + 1, rate=FAULT_RATE, stall_seconds=STALL_SECONDS),
    )
    report(run)
    assert_one_review_each(run)
    for number, head in run.heads.items():
        assert final_states(run, head) == ["failure"], f"PR {number}: {final_states(run, head)}"
    # The faults really happened, on both sides, of every kind.
    for faults in (run.forge.chaos, run.llm.chaos):
        assert faults is not None and set(faults.injected) == {"5xx", "reset", "timeout", "429"}
    assert sum(int(row["attempts"]) > 1 for row in run.rows) > 0  # some needed a job retry


@pytest.mark.timeout(300)
def test_writes_the_forge_did_but_never_answered_are_not_repeated(tmp_path: Path) -> None:
    """A third of the forge writes take effect, then their answer is lost (the client times
    out). The job is retried; the rerun finds its review and comments already there and
    posts none twice. Only the commit status may be posted again, with the same state:
    the forge keeps the latest per context, so the head still shows one outcome."""
    lost = RandomFaults(
        seed=SEED, rate=1 / 3, kinds=(LOST_REPLY,), methods=("POST",),
        stall_seconds=STALL_SECONDS,
    )  # fmt: skip
    run = run_chaos(tmp_path, LOST_REPLY_PULL_REQUESTS, lost, None)
    lost_reviews = [
        e for e in run.forge.exchanges
        if e.chaos == LOST_REPLY and e.path.endswith("/reviews") and e.status == 200
    ]  # fmt: skip
    repeated = sum(len(final_states(run, head)) > 1 for head in run.heads.values())
    print(
        f"\nlost replies: {len(run.rows)} jobs in {run.elapsed:.1f} s; forge writes "
        f"{lost.summary()}; review posts whose answer was lost {len(lost_reviews)}; heads "
        f"with their final status posted again {repeated}; job attempts "
        f"{dict(sorted(Counter(int(row['attempts']) for row in run.rows).items()))}"
    )
    assert lost_reviews, "no review post lost its answer: the case was not exercised"
    assert_one_review_each(run)
    for number, head in run.heads.items():
        assert set(final_states(run, head)) == {"failure"}, f"PR {number}"


def report(run: ChaosRun) -> None:
    forge, llm, rows = run.forge.chaos, run.llm.chaos, run.rows
    assert forge is not None and llm is not None
    attempts = Counter(int(str(row["attempts"])) for row in rows)
    retried_jobs = sum(n for a, n in attempts.items() if a > 1)
    job_retries = sum((a - 1) * n for a, n in attempts.items())
    outcomes = Counter(str(row["outcome"]) for row in rows)
    retrying = sample_value(run.metrics, "auto_review_jobs_total", outcome="retrying")
    statuses = Counter(s.state for s in run.forge.status_list if s.state != "pending")
    reviews = sum(r.via_api for r in run.forge.reviews)
    print(
        f"\nchaos: {len(rows)} jobs in {run.elapsed:.1f} s\n"
        f"  forge faults: {forge.summary()}\n"
        f"  LLM faults:   {llm.summary()}\n"
        f"  job attempts: {dict(sorted(attempts.items()))} "
        f"({retried_jobs} jobs retried, {job_retries} job retries; metric retrying "
        f"{retrying:g})\n"
        f"  outcomes:     {dict(outcomes)}; final statuses {dict(statuses)}; reviews {reviews}"
    )
