"""Every metric the alert rules and the Grafana dashboard read is one a real gateway exports.

A gateway with the review pipeline wired (an LLM configured, so the LLM and review series
are registered) runs on loopback; its /metrics exposition is compared with the metric names
found in deploy/prometheus/alerts.yml and deploy/grafana/auto-review.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.gateway.conftest import FORGEJO_TOKEN, base_settings, stop_and_check
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import FakeLlm
from tests.support.gateway_process import GatewayProcess, start_gateway
from tests.support.prometheus_text import sample_value
from tests.support.promql_names import metric_names

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
# Series Prometheus writes itself for every scrape target.
PROMETHEUS_OWN = frozenset({"up"})
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}


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


def exported_names(text: str) -> set[str]:
    """Every series name the exposition declares, with the suffixes its type implies."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    board: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "auto-review.json").read_text(encoding="utf-8")
    )
    found: dict[str, str] = {}
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found[f"variable {variable['name']}"] = query["query"]
    return found


def unknown_names(expressions: dict[str, str], exported: set[str]) -> dict[str, set[str]]:
    missing = {}
    for where, expr in expressions.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric name found in {expr!r}"
        unknown = names - exported - PROMETHEUS_OWN
        if unknown:
            missing[where] = unknown
    return missing


def test_every_metric_the_alert_rules_read_is_exported(exposition: str) -> None:
    expressions = alert_expressions()
    assert len(expressions) == 7
    assert unknown_names(expressions, exported_names(exposition)) == {}


def test_every_metric_the_dashboard_reads_is_exported(exposition: str) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    assert unknown_names(expressions, exported_names(exposition)) == {}


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
