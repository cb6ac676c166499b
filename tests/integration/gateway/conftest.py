"""Shared fixtures: canary secrets, a loopback Forgejo, a real gateway subprocess.

Every secret the gateways in these tests run with is a canary: a distinctive value that
must never show up in a log line, an error body, /info or /metrics. The ``gateway``
fixture checks its whole log for them when it shuts down, so every test in every module
doubles as a leak check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess, forgejo_headers, start_gateway
from tests.support.prometheus_text import sample_value

WEBHOOK_SECRET = "CANARY-forgejo-hook-7Qm2Xv9Lk4Rt8Zp1Wd6Ns3Hy5Bc0Jf"
GITHUB_WEBHOOK_SECRET = "CANARY-github-hook-4Ga8Ue2Oi6Yq0Tn5Ml9Kr3Pw7Sx1Vz"
CI_TOKEN = "CANARY-ci-bearer-9Hd3Fs7Ja1Lk5Zx8Cv2Bn6Mq4Wr0Ety"
FORGEJO_TOKEN = "CANARY-forgejo-token-2Pk6Ro0Iu4Yt8Ee3Ww7Qq1Aa5Ss9Dd"
LLM_API_KEY = "CANARY-llm-key-5Tg9Yh3Uj7Ik1Ol6Pz0Xc4Vb8Nm2Qa"
CANARIES = (WEBHOOK_SECRET, GITHUB_WEBHOOK_SECRET, CI_TOKEN, FORGEJO_TOKEN, LLM_API_KEY)
BOT_LOGIN = "auto-review-bot"


def base_settings(forge_url: str) -> dict[str, str]:
    return {
        "AR_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AR_GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
        "AR_CI_REVIEW_TOKEN": CI_TOKEN,
        "AR_FORGEJO_URL": forge_url,
        "AR_FORGEJO_TOKEN": FORGEJO_TOKEN,
        "AR_LLM_API_KEY": LLM_API_KEY,
        "AR_BOT_LOGIN": BOT_LOGIN,
        "AR_READYZ_CACHE_SECONDS": "0",
        "AR_LOG_LEVEL": "debug",
        "AR_MAX_BODY_BYTES": "65536",
        # High enough for the fuzz run from one address; test_rate_limit lowers it.
        "AR_RATE_LIMIT_PER_MINUTE": "1000000",
        "AR_RATE_LIMIT_BURST": "100000",
    }


def assert_no_canary(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"a secret leaked into {where}"
        # Partial leaks count too: a long prefix of a secret is as bad as the secret.
        assert canary[:20] not in text, f"part of a secret leaked into {where}"


def stop_and_check(gateway: GatewayProcess) -> None:
    gateway.stop()
    assert_no_canary(gateway.logs(), "the gateway log")


@pytest.fixture(scope="module")
def forge() -> Iterator[FakeForgejo]:
    with FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, forge: FakeForgejo
) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gateway")
    process = start_gateway(workdir, base_settings(forge.url))
    try:
        yield process
    finally:
        stop_and_check(process)


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=30.0) as http:
        yield http


@pytest.fixture
def gateway_with(tmp_path: Path, forge: FakeForgejo) -> Iterator:
    """``start(**settings)`` runs one more gateway with these settings over the base ones,
    for tests that need a differently configured gateway; each is stopped and checked for
    leaked secrets at teardown."""
    started: list[GatewayProcess] = []

    def start(**settings: str) -> tuple[GatewayProcess, httpx.Client]:
        merged = {**base_settings(forge.url), **settings}
        process = start_gateway(tmp_path / f"gw{len(started)}", merged)
        started.append(process)
        return process, httpx.Client(base_url=process.base_url, timeout=30)

    yield start
    for process in started:
        stop_and_check(process)


def post_forgejo(
    client: httpx.Client, payload: object, event: str, *, delivery: str | None = None
) -> httpx.Response:
    """A delivery signed with WEBHOOK_SECRET to /webhooks/forgejo; bytes are sent as they
    are, anything else as its JSON."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = forgejo_headers(WEBHOOK_SECRET, body, event, delivery)
    return client.post("/webhooks/forgejo", content=body, headers=headers)


def metric_value(client: httpx.Client, name: str, **labels: str) -> float:
    """One sample of the gateway's /metrics (0.0 when the labelled series is absent)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return sample_value(response.text, name, **labels)
