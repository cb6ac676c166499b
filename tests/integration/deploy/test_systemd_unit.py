"""deploy/systemd/auto-review.service passes `systemd-analyze verify` and keeps the choices
the embedded container depends on.

This machine has no systemd as PID 1, so the unit is checked offline: `systemd-analyze
verify` (Debian's `systemd` package) parses every directive and checks that ExecStart's
executable exists, which the test provides in a temporary directory. The test fails with
that hint when systemd-analyze is missing, rather than skipping.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from auto_review.isolation.inner.entry import EXIT_BOUNDARY
from auto_review.isolation.outer.bundle import NAMESPACES

UNIT = Path(__file__).resolve().parents[3] / "deploy" / "systemd" / "auto-review.service"
INSTALLED_PATH = "/usr/local/bin/auto-review"
# systemd's names for the kinds the bundle asks for.
SYSTEMD_NAMESPACE_NAMES = {"network": "net", "mount": "mnt"}
# Options that break the container (see docs/DEPLOYMENT.md): they must stay off.
BREAKS_THE_CONTAINER = ("ProtectKernelTunables", "ProtectKernelLogs", "ProtectHostname")


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install Debian's `systemd` package")
    return path


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def staged_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at an executable that exists, as after install."""
    program = tmp_path / "auto-review"
    program.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    program.chmod(0o755)
    source = text if text is not None else UNIT.read_text(encoding="utf-8")
    assert INSTALLED_PATH in source
    unit = tmp_path / "auto-review.service"
    unit.write_text(source.replace(INSTALLED_PATH, str(program)), encoding="utf-8")
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=unit.parent,
    )


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = verify(staged_unit(tmp_path))
    # verify reports unknown or malformed directives as warnings with exit status 0.
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_verify_would_catch_a_bad_directive_and_a_missing_executable(tmp_path: Path) -> None:
    # Controls: the check above could fail.
    bad = staged_unit(
        tmp_path, UNIT.read_text(encoding="utf-8").replace("KillMode=mixed", "KillMode=gently")
    )
    assert "kill mode" in verify(bad).stderr.lower()
    (tmp_path / "auto-review").unlink()
    missing = verify(bad)
    assert missing.returncode != 0
    assert "is not executable" in missing.stderr


def test_the_unit_runs_the_embedded_container_not_bare() -> None:
    found = directives()
    (exec_start,) = found["ExecStart"]
    assert exec_start.split()[:2] == [INSTALLED_PATH, "gateway"]
    assert "--bare" not in exec_start and "--external-isolation" not in exec_start
    assert not any("AR_GATEWAY_BARE" in value for value in found.get("Environment", []))
    assert not any("AR_GATEWAY_EXTERNAL" in value for value in found.get("Environment", []))


def test_secrets_come_from_a_credential_not_the_environment() -> None:
    found = directives()
    (credential,) = found["LoadCredential"]
    name, _, source = credential.partition(":")
    assert source.startswith("/etc/")
    assert f"--env-file ${{CREDENTIALS_DIRECTORY}}/{name}" in found["ExecStart"][0]
    assert "EnvironmentFile" not in found
    assert not any(re.search(r"TOKEN|SECRET|KEY", v) for v in found.get("Environment", []))


def test_every_namespace_the_container_creates_is_allowed() -> None:
    (allowed,) = directives()["RestrictNamespaces"]
    needed = {SYSTEMD_NAMESPACE_NAMES.get(kind, kind) for kind in NAMESPACES}
    assert needed <= set(allowed.split())


def test_options_that_break_the_container_stay_off_and_kill_mode_is_mixed() -> None:
    found = directives()
    for option in BREAKS_THE_CONTAINER:
        assert found.get(option, ["no"]) == ["no"], option
    assert found["KillMode"] == ["mixed"]
    assert found["CapabilityBoundingSet"] == [""]
    assert str(EXIT_BOUNDARY) in found["RestartPreventExitStatus"][0].split()


def test_state_and_runtime_directories_match_the_launchers_expectations() -> None:
    found = directives()
    assert found["StateDirectory"] == ["auto-review"]
    assert "AR_STATE_DIR=/var/lib/auto-review" in found["Environment"]
    # A non-root launcher keeps bundles in $XDG_RUNTIME_DIR/auto-review.
    assert found["RuntimeDirectory"] == ["auto-review"]
    assert "XDG_RUNTIME_DIR=/run" in found["Environment"]
    assert found["StateDirectoryMode"] == ["0700"] and found["RuntimeDirectoryMode"] == ["0700"]


def test_offline_security_exposure_stays_low(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(staged_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    # 3.0 today; the options left off for the container keep it above ~2.
    assert float(match.group(1)) <= 3.5
