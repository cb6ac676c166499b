"""The metric names deploy/ reads (alert rules, Grafana dashboard) and the names a /metrics
exposition exports, for the tests that compare them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.promql_names import metric_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Series Prometheus writes itself for every scrape target.
PROMETHEUS_OWN = frozenset({"up"})
# Exported only by the inner gateway of the container mode (the egress proxy's counters).
CONTAINER_ONLY_PREFIX = "auto_review_egress_"
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}


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


def names_read() -> set[str]:
    """Every metric name the rules and the dashboard read."""
    expressions = {**alert_expressions(), **dashboard_expressions()}
    return set().union(*(metric_names(expr) for expr in expressions.values()))


def unknown_names(
    expressions: dict[str, str], exported: set[str], *, ignore_prefix: str | None = None
) -> dict[str, set[str]]:
    """Per expression, the names it reads that ``exported`` lacks."""
    missing = {}
    for where, expr in expressions.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric name found in {expr!r}"
        unknown = {
            name
            for name in names - exported - PROMETHEUS_OWN
            if ignore_prefix is None or not name.startswith(ignore_prefix)
        }
        if unknown:
            missing[where] = unknown
    return missing
