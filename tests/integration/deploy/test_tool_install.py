"""The second way to install (README "Run it", docs/DEPLOYMENT.md): auto-review's wheel
installed as a tool with ``uv tool install`` and with ``pipx install``, each into its own
virtual environment, the way an operator does it, then the installed ``auto-review`` command
run as the operator would run it (no PYTHONPATH: only the tool's environment is imported).

The install is offline (no package index) from a wheelhouse of the release lock's wheels
whose hashes were checked against the lock (:mod:`tests.support.tool_install`): the
environment holds exactly the locked versions. The container
review with this command as the launcher is in
tests/integration/isolation/test_e2e_review_job.py (``*-tool-install``).
"""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.tool_install import (
    INSTALLERS,
    LOCK,
    ToolInstall,
    clean_env,
    normalize,
    wheel_under_test,
)

import auto_review

CANARY_SECRET = "canary-tool-webhook-secret-8e1f3a5c7b9d1f3e5a7c9b1d"
RUN_TIMEOUT = 120


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheel_under_test(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module", params=sorted(INSTALLERS))
def tool(
    request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ToolInstall]:
    base = tmp_path_factory.mktemp(f"tool-{request.param}")
    yield INSTALLERS[request.param](base, wheel)


def run(tool: ToolInstall, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool.command), *args], capture_output=True, text=True, env=clean_env(),
        stdin=subprocess.DEVNULL, cwd=cwd, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip


def locked_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line and line[0] not in " #":
            name, _, rest = line.partition("==")
            pins[normalize(name)] = rest.split()[0].rstrip(";\\")
    return pins


def test_the_tool_environment_holds_the_locked_versions(tool: ToolInstall) -> None:
    installed = tool.installed_versions()
    assert installed.pop("auto-review") == auto_review.__version__
    # pipx's environment is seeded with the interpreter's own pip (ensurepip); uv's has none.
    for seeded in ("pip", "setuptools"):
        installed.pop(seeded, None)
    pins = locked_pins()
    assert {name: pins.get(name) for name in installed} == installed
    # The runtime dependencies, not the build tools the lock also pins.
    assert {"starlette", "uvicorn", "httpx", "cryptography", "uvloop"} <= set(installed)
    assert not {"pyinstaller", "altgraph", "wheel"} & set(installed)
    # The command is a link into the tool's own environment, whose interpreter runs it.
    assert tool.command.resolve() == tool.environment / "bin" / "auto-review"
    first = tool.command.resolve().read_text().splitlines()[0]
    assert first == f"#!{tool.environment}/bin/python"


def test_help_and_version_name_the_installed_package(tool: ToolInstall) -> None:
    helped = run(tool, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: auto-review")
    assert "gateway" in helped.stdout

    version = run(tool, "version", "--verbose")
    assert version.returncode == 0, version.stderr
    lines = version.stdout.splitlines()
    assert lines[0] == f"auto-review {auto_review.__version__}"
    site = next((tool.environment / "lib").glob("python3*/site-packages"))
    installer = "uv" if "/tools/" in str(tool.environment) else "pip"  # pipx runs pip
    assert lines[-1] == f"runs as: installed package ({site}), installed by {installer}"
    assert f"({tool.environment}/bin/python)" in lines[-2]
    with zipfile.ZipFile(tool.wheel) as wheel:
        recorded = "auto_review/build_info.json" in wheel.namelist()
    # A release wheel names its commit; one built from the tree here records none.
    assert lines[1].endswith("(recorded at build)") if recorded else lines[1] == "commit: unknown"


def test_the_gateway_stops_naming_the_setting_that_is_missing(
    tool: ToolInstall, tmp_path: Path
) -> None:
    env_file = tmp_path / "my.env"
    env_file.write_text(
        "AR_FORGEJO_URL=https://git.acme.internal\n"
        f"AR_WEBHOOK_SECRET={CANARY_SECRET}\nAR_STATE_DIR={tmp_path}/state\n"
    )
    env_file.chmod(0o600)
    stopped = run(tool, "gateway", "--env-file", str(env_file), cwd=tmp_path)
    assert stopped.returncode == 2, stopped.stderr
    assert [line for line in stopped.stderr.splitlines() if "AR_FORGEJO_TOKEN" in line]
    assert CANARY_SECRET not in stopped.stderr + stopped.stdout
    assert not (tmp_path / "state").exists()  # refused before anything was made


pytestmark = pytest.mark.timeout(300)
