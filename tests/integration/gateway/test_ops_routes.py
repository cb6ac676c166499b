"""/healthz, /readyz, /version, /info, /metrics on a real gateway; readiness while deps are down."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.gateway.conftest import (
    LLM_API_KEY,
    assert_no_canary,
    metric_value,
    post_forgejo,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import closed_port
from tests.support.reference import load_json, reference_path

from auto_review import __version__


class LoopbackLlm:
    """An OpenAI-compatible GET /v1/models that records the Authorization header it saw."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.authorizations.append(self.headers.get("Authorization"))
                ok = self.path == "/v1/models"
                body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]})
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm() -> Iterator[LoopbackLlm]:
    server = LoopbackLlm()
    yield server
    server.close()


def test_healthz_and_version(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/version").json() == {"name": "auto-review", "version": __version__}
    assert client.head("/healthz").status_code == 200


def test_info_shows_bare_posture_loudly_and_no_secret(client: httpx.Client) -> None:
    response = client.get("/info")
    assert response.status_code == 200
    info = response.json()
    assert info["isolation"]["mode"] == "bare"
    assert info["isolation"]["verified"] is False
    assert "no container boundary" in info["isolation"]["warning"].lower()
    settings = info["settings"]
    for name in ("webhook_secret", "github_webhook_secret", "ci_review_token", "forgejo_token"):
        assert settings[name] == "set"
    assert settings["llm_base_url"] is None and settings["llm_api_key"] == "set"
    assert settings["bot_login"] == "auto-review-bot"
    assert_no_canary(response.text, "/info")


def test_readyz_with_the_forge_up_and_no_llm_configured(client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"forgejo": "ok", "llm": "not-configured"}


def test_readyz_checks_the_llm_models_endpoint_with_its_key(gateway_with, llm: LoopbackLlm) -> None:
    _, http = gateway_with(AR_LLM_BASE_URL=llm.url)
    response = http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"forgejo": "ok", "llm": "ok"}
    assert llm.authorizations == [f"Bearer {LLM_API_KEY}"]


def test_gateway_queues_work_while_forge_and_llm_are_down(gateway_with) -> None:
    process, http = gateway_with(
        AR_FORGEJO_URL=f"http://127.0.0.1:{closed_port()}",
        AR_LLM_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1",
    )
    payload = load_json(reference_path("forge", "payloads", "gitea_pull_request_opened.json"))
    response = post_forgejo(http, payload, "pull_request")
    assert response.status_code == 202
    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert ready.json()["checks"] == {"forgejo": "unreachable", "llm": "unreachable"}
    assert http.get("/healthz").status_code == 200  # alive, just not ready
    assert_no_canary(ready.text, "/readyz")
    # /metrics carries the same answer, for the AutoReviewNotReady alert.
    exposition = http.get("/metrics").text
    assert "\nauto_review_ready 0.0\n" in exposition
    assert 'auto_review_readiness_check_ok{component="forgejo"} 0.0' in exposition
    assert 'auto_review_readiness_check_ok{component="llm"} 0.0' in exposition
    assert process.wait_for_jobs(1)


def test_metrics_exposition(client: httpx.Client) -> None:
    client.get("/healthz")
    client.get("/no-such-route")
    client.post("/webhooks/forgejo", content=b"{}", headers={"Content-Type": "application/json"})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    for name in (
        "auto_review_http_requests",
        "auto_review_signature_failures",
        "auto_review_payload_failures",
        "auto_review_dedup_hits",
        "auto_review_ignored_events",
        "auto_review_rate_limited_requests",
        "auto_review_queue_depth",
        "auto_review_jobs",
        "auto_review_job_duration_seconds",
    ):
        assert name in families, name
    assert (
        metric_value(client, "auto_review_http_requests_total", route="/healthz", status="200") >= 1
    )
    assert (
        metric_value(client, "auto_review_http_requests_total", route="unmatched", status="404")
        >= 1
    )
    assert (
        metric_value(
            client, "auto_review_http_requests_total", route="/webhooks/forgejo", status="401"
        )
        >= 1
    )
    assert "/no-such-route" not in response.text
    assert_no_canary(response.text, "/metrics")


def test_job_outcomes_and_durations_are_recorded(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    payload = load_json(reference_path("forge", "payloads", "gitea_pull_request_synchronized.json"))
    post_forgejo(client, payload, "pull_request")
    assert gateway.wait_for_jobs(1)
    for _ in range(100):
        if metric_value(client, "auto_review_jobs_total", outcome="succeeded") >= 1:
            break
        time.sleep(0.05)
    assert metric_value(client, "auto_review_jobs_total", outcome="succeeded") >= 1
    assert metric_value(client, "auto_review_job_duration_seconds_count") >= 1
