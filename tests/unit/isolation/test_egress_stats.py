"""Egress counters, their JSON form, the metrics collector and the proxy environment."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import generate_latest

from auto_review.gateway.metrics import GatewayMetrics
from auto_review.isolation.egress.bridge import EgressBridgeError, proxy_env
from auto_review.isolation.egress.metrics import EgressMetricsCollector
from auto_review.isolation.egress.stats import (
    FAILURE_REASONS,
    REFUSAL_REASONS,
    EgressCounters,
    EgressStats,
)


def test_counters_and_json_round_trip() -> None:
    counters = EgressCounters()
    counters.allowed("connect")
    counters.refused("host-not-allowed")
    counters.refused("host-not-allowed")
    counters.failed("connect-failed")
    counters.transferred("upstream", 10)
    counters.connection_opened()
    snapshot = counters.snapshot()
    assert snapshot.refused["host-not-allowed"] == 2 and snapshot.refused_total == 2
    assert snapshot.allowed_total == 1 and snapshot.active == 1
    assert EgressStats.from_json(snapshot.to_json()) == snapshot
    assert set(snapshot.refused) == set(REFUSAL_REASONS)
    assert set(snapshot.failed) == set(FAILURE_REASONS)


def test_unknown_counter_key_is_a_bug_not_a_series() -> None:
    with pytest.raises(KeyError):
        EgressCounters().refused("made-up")


def test_counters_are_thread_safe() -> None:
    counters = EgressCounters()

    def bump() -> None:
        for _ in range(10_000):
            counters.refused("malformed")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.snapshot().refused["malformed"] == 40_000


def test_from_json_keeps_only_known_integer_counts() -> None:
    stats = EgressStats.from_json(
        b'{"refused": {"malformed": 3, "evil\\"} 1": 9, "bad-port": -1, "userinfo": true},'
        b' "allowed": [], "active": "x"}'
    )
    assert stats.refused["malformed"] == 3
    assert stats.refused["bad-port"] == 0 and stats.refused["userinfo"] == 0
    assert 'evil"} 1' not in stats.refused
    assert stats.allowed_total == 0 and stats.active == 0
    with pytest.raises(ValueError):
        EgressStats.from_json(b"not json")


def test_collector_in_the_gateway_registry() -> None:
    counters = EgressCounters()
    counters.refused("port-not-allowed")
    counters.allowed("forward")
    calls: list[int] = []

    def source() -> EgressStats:
        calls.append(1)
        return counters.snapshot()

    metrics = GatewayMetrics()
    metrics.registry.register(EgressMetricsCollector(source))
    assert calls == []  # registering describes; it does not ask the proxy
    text = metrics.render().decode()
    assert calls == [1]
    assert 'auto_review_egress_refused_total{reason="port-not-allowed"} 1.0' in text
    assert 'auto_review_egress_refused_total{reason="host-not-allowed"} 0.0' in text
    assert 'auto_review_egress_allowed_total{kind="forward"} 1.0' in text
    assert "auto_review_egress_proxy_up 1.0" in text
    assert "# TYPE auto_review_http_requests_total counter" in text  # the gateway's own, alongside


def test_collector_when_the_proxy_cannot_be_asked() -> None:
    def source() -> EgressStats:
        raise EgressBridgeError("egress proxy stats unavailable: refused")

    metrics = GatewayMetrics()
    metrics.registry.register(EgressMetricsCollector(source))
    text = generate_latest(metrics.registry).decode()
    assert "auto_review_egress_proxy_up 0.0" in text
    assert "auto_review_egress_refused_total{" not in text


def test_proxy_env_sends_everything_through_the_bridge() -> None:
    env = proxy_env("http://127.0.0.1:41234")
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        assert env[name] == env[name.lower()] == "http://127.0.0.1:41234"
    # One httpx transport (and TLS trust store) per proxy variable: no catch-all one.
    assert "ALL_PROXY" not in env and "all_proxy" not in env
    # Nothing is exempt: a loopback forge on the host is not the container's loopback.
    assert env["NO_PROXY"] == env["no_proxy"] == ""
