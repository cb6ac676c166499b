"""The egress proxy's counters as Prometheus metrics in the gateway's ``/metrics``.

:class:`EgressMetricsCollector` is a custom prometheus_client collector: at each scrape it
asks the proxy for a snapshot (through the mounted socket) and yields counter families
with every known label value, zeros included. When the proxy cannot be asked, only
``auto_review_egress_proxy_up 0`` is reported: no invented counts.

Register it in the gateway's private registry::

    metrics = GatewayMetrics()
    metrics.registry.register(EgressMetricsCollector.for_socket(CONTAINER_SOCKET))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from auto_review.isolation.egress.bridge import (
    CONTAINER_SOCKET,
    EgressBridgeError,
    fetch_egress_stats,
)
from auto_review.isolation.egress.stats import EgressStats

log = logging.getLogger("auto_review.isolation.egress")

StatsSource = Callable[[], EgressStats]


class EgressMetricsCollector(Collector):
    """Reads the proxy's stats at scrape time; ``source`` raises EgressBridgeError when down."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    @classmethod
    def for_socket(
        cls, socket_path: Path = CONTAINER_SOCKET, timeout: float = 1.0
    ) -> EgressMetricsCollector:
        return cls(lambda: fetch_egress_stats(socket_path, timeout))

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering never contacts the proxy.
        yield from _families(None, describing=True)

    def collect(self) -> Iterator[Metric]:
        try:
            stats: EgressStats | None = self._source()
        except EgressBridgeError as exc:
            log.warning("egress metrics unavailable: %s", exc)
            stats = None
        yield from _families(stats)


def _families(stats: EgressStats | None, *, describing: bool = False) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "auto_review_egress_proxy_up",
        "1 when the egress proxy answered the stats request of this scrape, else 0.",
    )
    up.add_metric([], 1.0 if stats is not None else 0.0)
    yield up
    allowed = CounterMetricFamily(
        "auto_review_egress_allowed",
        "Egress requests the proxy let through, by kind (connect, forward).",
        labels=["kind"],
    )
    refused = CounterMetricFamily(
        "auto_review_egress_refused",
        "Egress requests the proxy refused, by reason.",
        labels=["reason"],
    )
    failed = CounterMetricFamily(
        "auto_review_egress_failed",
        "Allowed egress requests that failed (resolution, connect, timeouts), by reason.",
        labels=["reason"],
    )
    transferred = CounterMetricFamily(
        "auto_review_egress_bytes",
        "Bytes relayed by the egress proxy, by direction (upstream, downstream).",
        labels=["direction"],
    )
    active = GaugeMetricFamily(
        "auto_review_egress_active_connections",
        "Connections open at the egress proxy.",
    )
    if stats is not None:
        for family, table in (
            (allowed, stats.allowed),
            (refused, stats.refused),
            (failed, stats.failed),
            (transferred, stats.transferred),
        ):
            for label, value in table.items():
                family.add_metric([label], float(value))
        active.add_metric([], float(stats.active))
    if stats is not None or describing:
        yield from (allowed, refused, failed, transferred, active)
