"""deploy/prometheus/alerts.yml passes Prometheus's own checker and its rule unit tests.

`promtool` comes from Debian's `prometheus` package; a machine without it fails here with
that hint rather than skipping, since the rules would then ship unchecked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package (it provides promtool)"
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120
    )


def test_promtool_check_rules_accepts_the_alerts() -> None:
    result = run_promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_each_alert_fires_on_its_failure_and_none_on_a_healthy_gateway() -> None:
    result = run_promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # Control: the checker does look at the expressions.
    broken = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    broken = broken.replace("auto_review_queue_depth > 10", "auto_review_queue_depth > > 10")
    (tmp_path / "alerts.yml").write_text(broken, encoding="utf-8")
    result = subprocess.run(
        [promtool(), "check", "rules", "alerts.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
