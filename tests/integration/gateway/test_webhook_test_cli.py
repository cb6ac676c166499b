"""`auto-review webhook test` against a real gateway process and the loopback Forgejo.

The command builds its pull request event from the forge's objects for the pull request
it is given and signs both deliveries with AR_WEBHOOK_SECRET; what it prints must match
what the gateway did (the job row in its store, its /metrics), and no secret may show on
stdout or stderr, whatever fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.integration.gateway.conftest import (
    CANARIES,
    FORGEJO_TOKEN,
    WEBHOOK_SECRET,
    assert_no_canary,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess
from tests.support.openapi_check import ApiSpec

from auto_review.cli.main import main

HEAD = "4f7c1e9a2b3d5f6a7c8e9d0b1a2c3e4f5a6b7c8d"
BASE = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"


@pytest.fixture
def settings(forge: FakeForgejo, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in [k for k in os.environ if k.startswith("AR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AR_FORGEJO_URL", forge.url)
    monkeypatch.setenv("AR_FORGEJO_TOKEN", FORGEJO_TOKEN)
    monkeypatch.setenv("AR_WEBHOOK_SECRET", WEBHOOK_SECRET)
    yield


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["webhook", "test", *argv])
    out = capsys.readouterr()
    assert_no_canary(out.out + out.err, "the command's output")
    return code, out.out, out.err


def test_ping_and_pull_request_event_are_accepted_then_a_duplicate(
    forge: FakeForgejo,
    gateway: GatewayProcess,
    settings: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    forge.add_pull_request("ops", "hooked", 12, head_sha=HEAD, base_sha=BASE, author="dana")
    args = ("--repo", "ops/hooked", "--pr", "12", "--gateway-url", gateway.base_url)
    code, out, err = run(capsys, *args)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == (
        "ping: HTTP 202 ignored (unsupported-event): forgejo event 'ping' is not handled"
    )
    assert lines[1] == (
        f"pull_request ops/hooked#12 at {HEAD[:12]}: HTTP 202 accepted, 1 job(s) queued"
    )
    assert lines[2].startswith("metrics: ")
    assert 'auto_review_jobs_accepted_total{source="webhook"} +1' in lines[2]
    ignored = 'auto_review_ignored_events_total{reason="unsupported-event",source="forgejo"}'
    assert f"{ignored} +1" in lines[2]
    (job,) = gateway.queued_jobs(owner="ops", name="hooked", pr_number=12)
    assert job["head_sha"] == HEAD
    # The forge's redelivery of the same head is what a second run is.
    code, out, _ = run(capsys, *args)
    assert code == 0
    assert f"#12 at {HEAD[:12]}: HTTP 200 duplicate" in out
    assert 'auto_review_dedup_hits_total{kind="' in out
    assert len(gateway.queued_jobs(owner="ops", name="hooked", pr_number=12)) == 1
    ApiSpec.gitea().assert_conforms(forge.exchanges)


def test_an_ignored_event_is_exit_1(
    forge: FakeForgejo, gateway: GatewayProcess, settings: None, capsys: pytest.CaptureFixture[str]
) -> None:
    forge.add_pull_request("ops", "hooked", 13, head_sha=HEAD, base_sha=BASE, draft=True)
    code, out, _ = run(capsys, "--repo", "ops/hooked", "--pr", "13",
                       "--gateway-url", gateway.base_url)  # fmt: skip
    assert code == 1 and "HTTP 202 ignored (draft)" in out
    assert gateway.queued_jobs(owner="ops", name="hooked", pr_number=13) == []


def test_a_different_secret_an_absent_gateway_or_pull_request_fail_without_secrets(
    forge: FakeForgejo,
    gateway: GatewayProcess,
    settings: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forge.add_pull_request("ops", "hooked", 14, head_sha=HEAD, base_sha=BASE)
    args = ["--repo", "ops/hooked", "--pr", "14", "--gateway-url", gateway.base_url]
    monkeypatch.setenv("AR_WEBHOOK_SECRET", "CANARY-another-secret-1Az9Sx8Dc7Fv6Gb5Hn4")
    code, out, err = run(capsys, *args)
    assert code == 3
    assert out == "ping: HTTP 401 refused: signature mismatch\n"
    assert "AR_WEBHOOK_SECRET is not this one" in err and "CANARY-another" not in out + err
    assert gateway.queued_jobs(owner="ops", name="hooked", pr_number=14) == []
    monkeypatch.setenv("AR_WEBHOOK_SECRET", WEBHOOK_SECRET)
    code, out, err = run(capsys, *args[:4], "--gateway-url", "http://127.0.0.1:9")
    assert code == 3 and out == ""
    assert err == "auto-review webhook test: cannot reach the gateway: ConnectError\n"
    code, out, err = run(capsys, *args[:2], "--pr", "999", *args[4:])
    assert code == 3 and "the forge refused or failed" in err and "404" in err
    for canary in CANARIES:
        assert canary not in gateway.logs()
