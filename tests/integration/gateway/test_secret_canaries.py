"""Canary secrets never surface: logs, error bodies, /info, /metrics, across failure paths.

One gateway runs with a crashing job runner whose exception message quotes every
configured secret, with a forge client holding a token the forge refuses, and is driven
through bad signatures, malformed bodies, CI requests while the forge refuses or is
unreachable. Everything the gateway said (its whole log, every response body, /info,
/metrics) is then searched for the canaries.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.integration.gateway.conftest import (
    CANARIES,
    CI_TOKEN,
    FORGEJO_TOKEN,
    WEBHOOK_SECRET,
    assert_no_canary,
    base_settings,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import forgejo_headers, gateway_env, start_gateway
from tests.support.ports import closed_port
from tests.support.reference import load_json, reference_path

WRONG_FORGE_TOKEN = "CANARY-refused-token-8Lq3Wm7Nb2Vc6Xz0Pk4Jh9Gf5Ds1A"
CI_AUTH = {"Authorization": f"Bearer {CI_TOKEN}"}


def pr_body() -> bytes:
    payload = load_json(reference_path("forge", "payloads", "gitea_pull_request_opened.json"))
    return json.dumps(payload).encode()


def drive_failure_paths(client: httpx.Client) -> list[str]:
    """Hit every failure path once; return every response text."""
    texts = []
    body = pr_body()
    headers = forgejo_headers(WEBHOOK_SECRET, body, "pull_request")
    bad_signature = {**headers, "X-Forgejo-Signature": "f" * 64, "X-Gitea-Signature": "f" * 64}
    for request in (
        client.build_request("POST", "/webhooks/forgejo", content=body, headers=bad_signature),
        client.build_request(
            "POST", "/webhooks/forgejo", content=body, headers={"Content-Type": "application/json"}
        ),
        client.build_request(
            "POST",
            "/webhooks/forgejo",
            content=b"{",
            headers=forgejo_headers(WEBHOOK_SECRET, b"{", "x"),
        ),
        client.build_request(
            "POST",
            "/reviews/ci",
            json={"host": "forgejo"},
            headers={"Authorization": "Bearer nope"},
        ),
        client.build_request(
            "POST",
            "/reviews/ci",
            json={"host": "forgejo", "owner": "a", "repo": "b", "pr": 1, "head_sha": "a" * 40},
            headers=CI_AUTH,
        ),
        client.build_request("POST", "/webhooks/forgejo", content=body, headers=headers),
    ):
        texts.append(client.send(request).text)
    texts.append(client.get("/readyz").text)
    return texts


def test_no_canary_with_a_refused_forge_token_and_a_crashing_runner(
    tmp_path: Path, forge: FakeForgejo
) -> None:
    settings = {**base_settings(forge.url), "AR_FORGEJO_TOKEN": WRONG_FORGE_TOKEN}
    process = start_gateway(tmp_path / "gw", settings, runner="crash")
    try:
        with httpx.Client(base_url=process.base_url, timeout=30) as client:
            texts = drive_failure_paths(client)
            process.wait_for_jobs(1)
            # The crashing job is retried with backoff; its first crash is enough here.
            deadline = time.monotonic() + 10
            while "job failed" not in process.logs() and time.monotonic() < deadline:
                time.sleep(0.05)
            texts.append(client.get("/info").text)
            texts.append(client.get("/metrics").text)
    finally:
        process.stop()
    logs = process.logs()
    assert "job failed" in logs  # the crash happened and was logged
    assert process.recorded_jobs(), "the crashing runner was never called"
    for text in [*texts, logs]:
        assert_no_canary(text, "gateway output")
        assert WRONG_FORGE_TOKEN not in text and WRONG_FORGE_TOKEN[:20] not in text
    # The forge really refused the token (the 502 path was taken, not skipped).
    assert any("forge refused" in text for text in texts)


def test_no_canary_with_the_forge_unreachable(tmp_path: Path, forge: FakeForgejo) -> None:
    settings = {**base_settings(forge.url), "AR_FORGEJO_URL": f"http://127.0.0.1:{closed_port()}"}
    process = start_gateway(tmp_path / "gw", settings, runner="crash")
    try:
        with httpx.Client(base_url=process.base_url, timeout=30) as client:
            texts = drive_failure_paths(client)
            texts.append(client.get("/info").text)
            texts.append(client.get("/metrics").text)
    finally:
        process.stop()
    assert any("forge unreachable" in text for text in texts)
    for text in [*texts, process.logs()]:
        assert_no_canary(text, "gateway output")


def test_malformed_settings_fail_naming_the_setting_not_the_value(tmp_path: Path) -> None:
    short_secret = "CANARY-too-short-xyz"  # under 32 characters
    url_with_credentials = f"https://bot:{FORGEJO_TOKEN}@forge.example"
    for bad, setting in (
        ({"AR_WEBHOOK_SECRET": short_secret}, "AR_WEBHOOK_SECRET"),
        ({"AR_FORGEJO_URL": url_with_credentials}, "AR_FORGEJO_URL"),
        ({"AR_CI_REVIEW_TOKEN": short_secret + "-ci"}, "AR_CI_REVIEW_TOKEN"),
    ):
        env = gateway_env(tmp_path / "state", {**base_settings("http://127.0.0.1:9"), **bad})
        env.update({"GATEWAY_TEST_FD": "0", "GATEWAY_TEST_JOBS": str(tmp_path / "jobs")})
        script = Path(__file__).resolve().parents[2] / "support" / "gateway_process.py"
        result = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert setting in output
        assert short_secret not in output and FORGEJO_TOKEN not in output
        for canary in CANARIES:
            assert canary not in output


def test_a_bind_failure_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = gateway_env(
            tmp_path / "state",
            {**base_settings("http://127.0.0.1:9"), "AR_GATEWAY_BIND": f"127.0.0.1:{port}"},
        )
        code = (
            "import sys\n"
            "from auto_review.config import load_settings\n"
            "from auto_review.gateway.service import serve\n"
            "sys.exit(serve(load_settings()))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert f"AR_GATEWAY_BIND 127.0.0.1:{port}" in result.stderr
    assert "in use" in result.stderr.lower()
