"""The rough PromQL reader the deployment tests use finds metric names and only those."""

from __future__ import annotations

from tests.support.promql_names import metric_names


def test_names_inside_functions_aggregations_and_ranges() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, tier) "
        '(rate(auto_review_llm_request_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'
    )
    assert metric_names(expr) == {"auto_review_llm_request_seconds_bucket"}


def test_binary_operators_absent_and_durations() -> None:
    expr = 'up{job="auto-review"} == 0 or absent(up{job="auto-review"}) and x_total offset 5m'
    assert metric_names(expr) == {"up", "x_total"}


def test_label_names_in_matchers_and_groupings_are_not_metrics() -> None:
    expr = 'sum without (reason) (increase(a_total{source="github", reason!~"x|y"}[10m])) > 5'
    assert metric_names(expr) == {"a_total"}


def test_a_misspelt_name_is_kept() -> None:
    assert metric_names("auto_reveiw_queue_depth > 10") == {"auto_reveiw_queue_depth"}


def test_grafana_label_values_reads_its_metric_only() -> None:
    assert metric_names("label_values(auto_review_http_requests_total, instance)") == {
        "auto_review_http_requests_total"
    }
