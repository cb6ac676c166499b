"""An accepted delivery survives a kill -9 of the gateway; a restart runs it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
from tests.integration.gateway.conftest import (
    base_settings,
    post_forgejo,
    stop_and_check,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import start_gateway
from tests.support.reference import load_json, reference_path


def test_job_accepted_before_a_crash_runs_after_restart(tmp_path: Path, forge: FakeForgejo) -> None:
    settings = base_settings(forge.url)
    payload = load_json(reference_path("forge", "payloads", "forgejo_pull_request_reopened.json"))
    body = json.dumps(payload).encode()
    delivery = "5f0c3a1e-0000-4000-8000-00000000beef"

    first = start_gateway(tmp_path, settings, runner="hang")
    with httpx.Client(base_url=first.base_url) as client:
        response = post_forgejo(client, body, "pull_request", delivery=delivery)
    assert response.status_code == 202
    [started] = first.wait_for_jobs(1)
    assert started["attempts"] == 1
    first.process.send_signal(signal.SIGKILL)  # mid-job, no shutdown of any kind
    first.process.wait()

    second = start_gateway(tmp_path, settings, runner="record")
    try:
        jobs = second.wait_for_jobs(2)
        assert len(jobs) == 2
        assert jobs[1]["id"] == started["id"] and jobs[1]["attempts"] == 2
        assert jobs[1]["head_sha"] == payload["pull_request"]["head"]["sha"]
        # The delivery id is remembered across the restart as well.
        with httpx.Client(base_url=second.base_url) as client:
            again = post_forgejo(client, body, "pull_request", delivery=delivery)
        assert again.status_code == 200 and again.json()["duplicate"] == "delivery"
        assert len(second.wait_until_idle()) == 1  # one job row, run to its end
        assert len(second.recorded_jobs()) == 2
    finally:
        stop_and_check(second)


def test_sigterm_is_a_clean_exit(tmp_path: Path, forge: FakeForgejo) -> None:
    process = start_gateway(tmp_path, base_settings(forge.url))
    assert process.stop() == 0
    assert "gateway stopped" in process.logs()
