"""Every metric the alert rules and the Grafana dashboard read is one a real gateway exports.

A gateway with the review pipeline wired (an LLM configured, so the LLM and review series
are registered) runs on loopback; its /metrics exposition is compared with the metric names
found in deploy/prometheus/alerts.yml and deploy/grafana/auto-review.json.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.integration.gateway.conftest import FORGEJO_TOKEN, base_settings, stop_and_check
from tests.support.deploy_metrics import (
    CONTAINER_ONLY_PREFIX,
    alert_expressions,
    dashboard_expressions,
    exported_names,
    unknown_names,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import FakeLlm
from tests.support.gateway_process import GatewayProcess, start_gateway
from tests.support.prometheus_text import sample_value
from tests.support.promql_names import metric_names


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with FakeForgejo(FORGEJO_TOKEN) as forge, FakeLlm(models=["reasoner", "cheap"]) as llm:
        settings = {
            **base_settings(forge.url),
            "AR_LLM_BASE_URL": llm.url,
            "AR_LLM_REASONING_MODEL": "reasoner",
            "AR_LLM_CHEAP_MODEL": "cheap",
        }
        # runner "none": the gateway builds its own review pipeline from the settings.
        process = start_gateway(tmp_path_factory.mktemp("deploy"), settings, runner="none")
        try:
            yield process
        finally:
            stop_and_check(process)


@pytest.fixture(scope="module")
def exposition(gateway: GatewayProcess) -> str:
    with httpx.Client(base_url=gateway.base_url, timeout=30.0) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_every_metric_the_alert_rules_read_is_exported(exposition: str) -> None:
    expressions = alert_expressions()
    assert len(expressions) == 8
    # The egress series come from the container's inner gateway only: checked on its real
    # scrape by integration/isolation/test_e2e_launcher.py.
    exported = exported_names(exposition)
    assert unknown_names(expressions, exported, ignore_prefix=CONTAINER_ONLY_PREFIX) == {}


def test_every_metric_the_dashboard_reads_is_exported(exposition: str) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    # The egress series come from the container's inner gateway only: checked on its real
    # scrape by integration/isolation/test_e2e_launcher.py.
    exported = exported_names(exposition)
    assert unknown_names(expressions, exported, ignore_prefix=CONTAINER_ONLY_PREFIX) == {}


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    read = set().union(*(metric_names(e) for e in dashboard_expressions().values()))
    for name in (
        "auto_review_http_requests_total",
        "auto_review_signature_failures_total",
        "auto_review_jobs_by_state",
        "auto_review_queue_depth",
        "auto_review_oldest_waiting_job_age_seconds",
        "auto_review_llm_tokens_total",
        "auto_review_llm_cost_usd_total",
        "auto_review_jobs_total",
        "auto_review_ready",
        "auto_review_isolation_verified",
        "auto_review_queue_jobs",
        "auto_review_oldest_waiting_job_age_by_kind_seconds",
    ):
        assert name in read, name


def test_a_name_the_gateway_does_not_export_is_reported(exposition: str) -> None:
    # Control for the comparison itself.
    exported = exported_names(exposition)
    assert unknown_names({"typo": "rate(auto_review_signature_failure_total[5m])"}, exported) == {
        "typo": {"auto_review_signature_failure_total"}
    }


def test_readiness_and_isolation_series_carry_the_gateways_state(exposition: str) -> None:
    # Forge and LLM both answer: ready, each check passing. Bare mode: not verified.
    assert sample_value(exposition, "auto_review_ready") == 1.0
    assert sample_value(exposition, "auto_review_readiness_check_ok", component="forgejo") == 1.0
    assert sample_value(exposition, "auto_review_readiness_check_ok", component="llm") == 1.0
    assert 'auto_review_isolation_verified{mode="bare"} 0.0' in exposition
