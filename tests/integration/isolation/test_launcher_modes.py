"""Explicit opt-outs and diagnostics through the command line: bare (flag and setting),
the operator's container marker, `ops doctor` and `ops status`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support
from tests.support.fake_forgejo import FakeForgejo

from auto_review.core.posture import BARE_WARNING


@pytest.fixture
def services() -> Iterator[support.LoopbackHttp]:
    support.require_root()
    server = support.LoopbackHttp()
    yield server
    server.close()


def settings_for(tmp_path: Path, server: support.LoopbackHttp, **extra: str) -> dict[str, str]:
    values = support.gateway_settings(
        server.url, server.url, tmp_path / "state", support.free_port()
    )
    values.update(extra)
    return values


def ops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "ops", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env=support.root_run_as().env(),
    )  # fmt: skip


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_bare_is_explicit_loud_and_unisolated(
    how: str, tmp_path: Path, services: support.LoopbackHttp
):
    extra = {"AR_GATEWAY_BARE": "true"} if how == "setting" else {}
    args = ["--bare"] if how == "flag" else []
    settings = settings_for(tmp_path, services, **extra)
    launcher = support.start_launcher(tmp_path, support.root_run_as(), settings, *args)
    try:
        with launcher.client() as client:
            posture = client.get("/info").json()["runtime_isolation"]
        assert support.descendants(launcher.pid) == []  # no container, no inner process
        assert launcher.bundles() == []
        status = ops("status", "--gateway-url", launcher.base_url)
    finally:
        assert launcher.stop() == 0
    assert posture["mode"] == "bare"
    assert posture["verified"] is False
    assert BARE_WARNING in launcher.logs()
    assert "isolation: bare" in status.stdout
    for canary in support.CANARIES:
        assert canary not in launcher.logs()


def test_operator_container_marker_runs_in_process(tmp_path: Path, services: support.LoopbackHttp):
    settings = settings_for(tmp_path, services, AR_GATEWAY_EXTERNAL_ISOLATION="container")
    launcher = support.start_launcher(tmp_path, support.root_run_as(), settings)
    try:
        with launcher.client() as client:
            posture = client.get("/info").json()["runtime_isolation"]
        assert support.descendants(launcher.pid) == []
    finally:
        assert launcher.stop() == 0
    assert posture["mode"] == "external"
    assert posture["verified"] is False
    assert "BARE" not in launcher.logs()


def test_doctor_reports_decision_host_checks_and_the_live_posture(
    tmp_path: Path, services: support.LoopbackHttp
):
    support.require_root()
    forge = FakeForgejo(support.CANARY_TOKEN).start()
    settings = settings_for(tmp_path, services, AR_FORGEJO_URL=forge.url)
    launcher = support.start_launcher(tmp_path, support.root_run_as(), settings)
    try:
        doctor = ops("doctor", "--json", "--gateway-url", launcher.base_url)
        text = ops("doctor", "--gateway-url", launcher.base_url)
        status = ops("status", "--gateway-url", launcher.base_url)
    finally:
        launcher.stop()
        forge.stop()
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["decision"]["mode"] == "oci"
    checks = report["host_checks"]
    assert checks["user-namespaces"]["ok"] is True
    assert checks["seccomp"]["ok"] is True
    assert "embedded" in checks["runtimes"]["detail"]
    posture = report["gateway_posture"]
    assert posture["verified"] is True
    assert posture["runtime"] == "embedded"
    assert "[ok] gateway: mode oci embedded verified" in text.stdout
    assert "[ok] seccomp: Seccomp=2" in text.stdout
    assert status.returncode == 0, status.stdout
    assert "isolation: oci embedded verified" in status.stdout
    assert "forgejo: ok" in status.stdout


def test_doctor_fails_for_an_unusable_runtime_and_says_bare_when_bare():
    bad = ops("doctor", "--json", "--oci-runtime", "/nonexistent/runc")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["host_checks"]["runtimes"]["ok"] is False
    bare = ops("doctor", "--bare")
    assert bare.returncode == 0
    assert "[warn] isolation: bare" in bare.stdout
    assert "WARNING" in bare.stdout


def test_status_of_a_gateway_that_is_not_there():
    completed = ops("status", "--gateway-url", f"http://127.0.0.1:{support.free_port()}")
    assert completed.returncode == 1
    assert "cannot reach the gateway" in completed.stdout


@pytest.mark.parametrize("mode", ["oci", "bare"])
def test_secrets_given_in_the_environment_are_scrubbed_from_proc(
    mode: str, tmp_path: Path, services: support.LoopbackHttp
):
    """Secrets passed as AR_* variables (not an env file) vanish from /proc/PID/environ."""
    settings = settings_for(tmp_path, services)
    secret_names = ("AR_FORGEJO_TOKEN", "AR_WEBHOOK_SECRET", "AR_CI_REVIEW_TOKEN",
                    "AR_LLM_API_KEY")  # fmt: skip
    in_environment = {name: settings.pop(name) for name in secret_names}
    run_as = support.root_run_as()
    original_env = run_as.env

    class EnvRunAs(support.RunAs):
        def env(self) -> dict[str, str]:
            return {**original_env(), **in_environment}

    launcher = support.start_launcher(
        tmp_path, EnvRunAs(0, 0, run_as.python, run_as.runtime_dir, None), settings,
        *(["--bare"] if mode == "bare" else []),
    )  # fmt: skip
    try:
        hits = {canary: support.processes_holding(canary) for canary in support.CANARIES}
        with launcher.client() as client:
            body, headers = support.signed_forgejo_delivery()
            answer = client.post("/webhooks/forgejo", content=body, headers=headers)
    finally:
        assert launcher.stop() == 0
    assert answer.status_code == 202  # the secret still works: the gateway has it
    assert hits == {canary: [] for canary in support.CANARIES}
    assert "prefer --env-file" not in launcher.logs()
