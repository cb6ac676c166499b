"""The isolation posture and readiness reports as /metrics series."""

from __future__ import annotations

from tests.support.prometheus_text import sample_value

from auto_review.gateway.metrics import GatewayMetrics


def test_a_verified_posture_with_degraded_controls() -> None:
    metrics = GatewayMetrics()
    metrics.record_posture(
        {"mode": "oci", "verified": True, "degraded": ["landlock", "cgroup-limits"]}
    )
    text = metrics.render().decode()
    assert sample_value(text, "auto_review_isolation_verified", mode="oci") == 1.0
    assert sample_value(text, "auto_review_isolation_degraded", check="landlock") == 1.0
    assert sample_value(text, "auto_review_isolation_degraded", check="cgroup-limits") == 1.0
    assert 'check="cgroup-namespace"' not in text


def test_bare_and_external_postures_are_not_verified() -> None:
    for mode in ("bare", "external"):
        metrics = GatewayMetrics()
        metrics.record_posture({"mode": mode, "verified": False})
        assert f'auto_review_isolation_verified{{mode="{mode}"}} 0.0' in metrics.render().decode()


def test_readiness_overall_and_per_component() -> None:
    metrics = GatewayMetrics()
    checks = {"forgejo": "auth-failed", "github": "ok", "llm": "not-configured"}
    metrics.record_readiness(False, checks)
    text = metrics.render().decode()
    assert "\nauto_review_ready 0.0\n" in text
    assert 'auto_review_readiness_check_ok{component="forgejo"} 0.0' in text
    assert 'auto_review_readiness_check_ok{component="github"} 1.0' in text
    # An LLM that is not configured does not make the gateway unready.
    assert 'auto_review_readiness_check_ok{component="llm"} 1.0' in text
    metrics.record_readiness(True, {"forgejo": "ok"})
    assert "\nauto_review_ready 1.0\n" in metrics.render().decode()
