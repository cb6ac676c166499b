"""A forge outage of real minutes, with the production retry delays.

The other outage tests (test_pipeline_outage.py) shorten the delays; this one does not: the
forge answers 503 to everything for 150 s of real time (the old policy gave up three
attempts, about 23 s, after the webhook), with the default first delay (5 s, doubling) and
the default HTTP timeout and client retries. Only the cap on one delay is lowered from
600 s to 30 s, so the test waits at most that long once the forge is back. Jobs are
accepted at the start of the outage, after the first one has outlived the old cap, and
later still; once the forge is back each is reviewed exactly once.

A timer restores the forge after the outage's real duration: that duration is what this
test is about. Everything else waits on the gateway's state database or the forge's log.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

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
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import FakeLlm
from tests.support.gateway_process import GatewayProcess
from tests.support.waiting import wait_until

OUTAGE_SECONDS = 150.0
OLD_RETRY_WINDOW_SECONDS = 23.0
OLD_ATTEMPT_CAP = 3
PRODUCTION_LIKE_RETRIES = {
    "AR_JOB_RETRY_BASE_SECONDS": "5",  # the default
    "AR_JOB_RETRY_MAX_DELAY_SECONDS": "30",  # default 600: the wait after the forge is back
    "AR_HTTP_TIMEOUT_SECONDS": "10",  # the default
}


def accept(gateway: GatewayProcess, repo: ServedRepo, number: int, head: str) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        payload = forgejo_pr_delivery("acme", "shop", number, head, repo.base_sha)
        answer = post_forgejo(client, payload, "pull_request")
        assert answer.status_code == 202, answer.text


def job_attempts(gateway: GatewayProcess, number: int) -> int:
    rows = gateway.queued_jobs(pr_number=number)
    return int(rows[0]["attempts"]) if rows else 0


@pytest.mark.timeout(600)
def test_jobs_accepted_during_minutes_of_forge_outage_are_reviewed_once(tmp_path: Path) -> None:
    repo = serve_repo(
        tmp_path, {"shop/cart.py": CART_BASE, "README.md": "shop\n"}, username=BOT,
        token=FORGE_TOKEN,
    )  # fmt: skip
    forge = FakeForgejo(FORGE_TOKEN, bot_login=BOT).start()
    llm = FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    heads = add_pull_request_heads(repo, 3, CART_HEAD)
    publish_heads(forge, repo, heads)
    llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    settings = pipeline_settings(
        llm=llm, cert=repo.server.cert, forgejo_url=forge.url, extra=PRODUCTION_LIKE_RETRIES
    )
    back = threading.Event()

    def forge_back() -> None:
        forge.clear_faults()
        back.set()

    restore = threading.Timer(OUTAGE_SECONDS, forge_back)
    try:
        with running_gateway(tmp_path / "gateway", settings) as gateway:
            forge.fail(503, times=10**9)  # down until the timer clears the faults
            outage_started = time.monotonic()
            restore.start()
            accept(gateway, repo, 1, heads[1])
            # PR 2 arrives once PR 1's job has outlived the old cap, PR 3 two attempts later.
            wait_until(
                lambda: job_attempts(gateway, 1) > OLD_ATTEMPT_CAP, timeout=OUTAGE_SECONDS,
                what="PR 1's job past the old attempt cap",
            )  # fmt: skip
            accept(gateway, repo, 2, heads[2])
            wait_until(
                lambda: job_attempts(gateway, 1) > OLD_ATTEMPT_CAP + 2, timeout=OUTAGE_SECONDS,
                what="PR 1's job two attempts further",
            )  # fmt: skip
            accept(gateway, repo, 3, heads[3])
            assert not back.is_set(), "the outage ended before the last job was accepted"
            assert forge.status_list == [] and forge.reviews == []  # nothing got through
            back.wait(timeout=OUTAGE_SECONDS + 10)
            outage = time.monotonic() - outage_started
            wanted = set(heads.values())
            wait_until(
                lambda: wanted <= {s.sha for s in forge.status_list if s.state != "pending"},
                timeout=120, what="a final status on every head once the forge is back",
            )  # fmt: skip
            rows = gateway.wait_until_idle(timeout=60)
    finally:
        restore.cancel()
        forge.stop()
        llm.stop()
        repo.server.close()

    first = rows[0]
    print(
        f"\nlong outage: forge down {outage:.0f} s; job attempts "
        f"{[row['attempts'] for row in rows]}; PR 1 accepted to done in "
        f"{first['finished_at'] - first['enqueued_at']:.0f} s; "
        f"{len(forge.requests_to('/api/v1/'))} forge requests"
    )
    assert outage >= OUTAGE_SECONDS
    assert [(row["pr_number"], row["status"], row["outcome"]) for row in rows] == [
        (1, "done", "succeeded"), (2, "done", "succeeded"), (3, "done", "succeeded"),
    ]  # fmt: skip
    # PR 1's job lived through the whole outage, far past the old window.
    assert first["finished_at"] - first["enqueued_at"] >= OLD_RETRY_WINDOW_SECONDS + 120
    assert int(first["attempts"]) > OLD_ATTEMPT_CAP + 2
    for number, head in heads.items():
        finals = [s.state for s in forge.statuses(head) if s.state != "pending"]
        assert finals == ["failure"], f"PR {number}: {finals}"
        [review] = forge.posted_reviews("acme", "shop", number)
        assert [(c.path, c.line) for c in review.comments] == [("shop/cart.py", 5)]
        assert forge.issue_comments("acme", "shop", number) == []
