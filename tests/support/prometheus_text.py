"""Reading one sample out of a Prometheus text exposition (the gateway's /metrics)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample_value(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` whose labels include ``labels``; 0.0 when the labelled
    series is absent (a counter nobody has incremented yet is not exported)."""
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    return 0.0
