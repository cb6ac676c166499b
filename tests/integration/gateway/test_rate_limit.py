"""The per-client token bucket on a real gateway: 429 before any signature work."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.integration.gateway.conftest import base_settings, metric_value, stop_and_check
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess, start_gateway

BURST = 5


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, forge: FakeForgejo
) -> Iterator[GatewayProcess]:
    settings = {
        **base_settings(forge.url),
        "AR_RATE_LIMIT_PER_MINUTE": "6",  # one token every ten seconds
        "AR_RATE_LIMIT_BURST": str(BURST),
    }
    process = start_gateway(tmp_path_factory.mktemp("limited"), settings)
    yield process
    stop_and_check(process)


def test_burst_then_429_with_retry_after(limited: GatewayProcess) -> None:
    with httpx.Client(base_url=limited.base_url) as client:
        statuses = [
            client.post(
                "/webhooks/forgejo", content=b"{}", headers={"Content-Type": "application/json"}
            ).status_code
            for _ in range(BURST + 3)
        ]
        assert statuses[:BURST] == [401] * BURST  # unsigned: refused, but counted by the bucket
        assert statuses[BURST:] == [429] * 3
        refused = client.post("/webhooks/github", content=b"{}")
        assert refused.status_code == 429  # one bucket per client across routes
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        # Probes are never limited.
        assert client.get("/healthz").status_code == 200
        assert (
            metric_value(
                client, "auto_review_rate_limited_requests_total", route="/webhooks/forgejo"
            )
            == 3
        )
        assert (
            metric_value(
                client, "auto_review_rate_limited_requests_total", route="/webhooks/github"
            )
            == 1
        )
