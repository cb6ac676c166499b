"""Behind a reverse proxy: the gateway keys its rate limit on the TCP peer and ignores the
headers a proxy adds (docs/DEPLOYMENT.md, "Behind a reverse proxy")."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.integration.gateway.conftest import FORGEJO_TOKEN, base_settings, stop_and_check
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess, start_gateway

BURST = 3
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with FakeForgejo(FORGEJO_TOKEN) as forge:
        settings = {
            **base_settings(forge.url),
            "AR_RATE_LIMIT_PER_MINUTE": "1",  # no refill within the test
            "AR_RATE_LIMIT_BURST": str(BURST),
        }
        process = start_gateway(tmp_path_factory.mktemp("proxied"), settings)
        try:
            yield process
        finally:
            stop_and_check(process)


def test_forwarded_headers_do_not_give_a_client_a_bucket_of_its_own(
    limited: GatewayProcess,
) -> None:
    with httpx.Client(base_url=limited.base_url) as client:
        for n in range(BURST):
            # What a proxy in front would send for BURST different clients.
            forwarded = {
                **JSON,
                "X-Forwarded-For": f"203.0.113.{n + 1}",
                "X-Real-IP": f"203.0.113.{n + 1}",
                "Forwarded": f"for=203.0.113.{n + 1}",
            }
            response = client.post("/webhooks/forgejo", content=b"{}", headers=forwarded)
            assert response.status_code == 401  # unsigned, but counted by the peer's bucket
        another_client = {**JSON, "X-Forwarded-For": "198.51.100.7"}
        refused = client.post("/webhooks/forgejo", content=b"{}", headers=another_client)
        assert refused.status_code == 429
        # Every refusal in the log names the TCP peer, never a forwarded address.
        logs = limited.logs()
        assert '"client": "127.0.0.1"' in logs
        assert "203.0.113." not in logs and "198.51.100.7" not in logs
