"""SIGKILL right after a burst of 202s: every accepted job is processed exactly once.

The first gateway runs jobs slowly, so at the kill some jobs are finished, one or two are
half-way and most are still queued. The second gateway, on the same state directory, must
finish every accepted job, and no job may be finished twice across both lives.
"""

from __future__ import annotations

import copy
import hashlib
import json
import signal
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.integration.gateway.conftest import WEBHOOK_SECRET, base_settings, stop_and_check
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import forgejo_headers, start_gateway
from tests.support.reference import load_json, reference_path

BURST = 60


def signed_deliveries(count: int) -> list[tuple[str, bytes, dict[str, str]]]:
    template = load_json(reference_path("forge", "payloads", "gitea_pull_request_opened.json"))
    deliveries = []
    for index in range(count):
        payload = copy.deepcopy(template)
        head = hashlib.sha1(f"burst-{index}-{uuid.uuid4()}".encode()).hexdigest()  # noqa: S324
        payload["pull_request"]["head"]["sha"] = head
        # One pull request each: heads of one pull request would coalesce into one job.
        payload["number"] = payload["pull_request"]["number"] = index + 1
        body = json.dumps(payload).encode()
        deliveries.append((head, body, forgejo_headers(WEBHOOK_SECRET, body, "pull_request")))
    return deliveries


def post_all(base_url: str, deliveries: list[tuple[str, bytes, dict[str, str]]]) -> list[int]:
    def post(item: tuple[str, bytes, dict[str, str]]) -> int:
        _, body, headers = item
        with httpx.Client(base_url=base_url, timeout=30) as client:
            return client.post("/webhooks/forgejo", content=body, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(post, deliveries))


def test_sigkill_after_burst_processes_each_accepted_job_once(
    tmp_path: Path, forge: FakeForgejo
) -> None:
    settings = {**base_settings(forge.url), "AR_WORKERS": "2"}
    deliveries = signed_deliveries(BURST)

    first = start_gateway(tmp_path, settings, runner="slow")
    statuses = post_all(first.base_url, deliveries)
    first.process.send_signal(signal.SIGKILL)  # right after the last 202, no shutdown
    first.process.wait()
    assert statuses == [202] * BURST
    finished_before = {job["head_sha"] for job in first.finished_jobs()}
    assert len(finished_before) < BURST, "the kill came too late to interrupt anything"

    second = start_gateway(tmp_path, settings, runner="record")
    try:
        deadline = time.monotonic() + 60
        while len(second.finished_jobs()) < BURST and time.monotonic() < deadline:
            time.sleep(0.1)
        second.wait_until_idle()  # no job left to run: anything run twice shows now
        finished = Counter(job["head_sha"] for job in second.finished_jobs())
    finally:
        stop_and_check(second)
    accepted = {head for head, _, _ in deliveries}
    assert set(finished) == accepted
    assert max(finished.values()) == 1


def test_without_a_runner_jobs_wait_in_the_queue_and_run_later(
    tmp_path: Path, forge: FakeForgejo
) -> None:
    settings = base_settings(forge.url)
    deliveries = signed_deliveries(3)
    waiting = start_gateway(tmp_path, settings, runner="none")
    try:
        assert post_all(waiting.base_url, deliveries) == [202] * 3
        with httpx.Client(base_url=waiting.base_url) as client:
            info = client.get("/info").json()
            metrics = client.get("/metrics").text
        assert info["review_pipeline"].startswith("not available")
        assert "auto_review_queue_depth 3.0" in metrics
    finally:
        stop_and_check(waiting)
    assert waiting.recorded_jobs() == []

    later = start_gateway(tmp_path, settings, runner="record")
    try:
        deadline = time.monotonic() + 30
        while len(later.finished_jobs()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {job["head_sha"] for job in later.finished_jobs()} == {h for h, _, _ in deliveries}
    finally:
        stop_and_check(later)
