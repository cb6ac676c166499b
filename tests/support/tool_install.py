"""auto-review's wheel installed as a tool, as an operator does: ``uv tool install`` or
``pipx install`` into its own virtual environment, with the command linked into a bin
directory.

The wheel is ``WHEEL_UNDER_TEST`` when set (.ci/run names the one ``scripts/build-release``
put in dist/), else one built here from this tree's sources (a copy, so the tree gets no
``build/``). The dependencies come from a wheelhouse of ``requirements/release.lock``'s wheels
(``scripts/wheelhouse.py``, every file's sha256 checked against the lock; kept in
``.cache/wheelhouse`` and reused): only filling it needs the package index, the install
itself runs ``--offline --no-index`` (pipx: pip with ``--no-index --find-links``; the
wheelhouse holds only the locked versions, so those are what pip can take). The interpreter
is Debian's ``/usr/bin/python3``, which an operator's host has and the rootless user can
read. Standard library only: bench scripts import it too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.rootless import DEBIAN_PYTHON

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements" / "release.lock"
WHEELHOUSE = REPO_ROOT / ".cache" / "wheelhouse"
TOOL_NAME = "auto-review"
RUN_TIMEOUT = 300
# As docs/DEPLOYMENT.md has the operator install it: readable by the service (rootless) user.
INSTALL_UMASK = 0o022


class ToolInstallError(RuntimeError):
    pass


@dataclass(frozen=True)
class ToolInstall:
    command: Path  # the `auto-review` link in the tool bin directory
    environment: Path  # the tool's virtual environment
    wheel: Path

    @property
    def python(self) -> Path:
        return self.environment / "bin" / "python"

    def installed_versions(self) -> dict[str, str]:
        """Every distribution in the tool's environment: normalised name -> version."""
        listing = subprocess.run(
            [str(self.python), "-c", "import importlib.metadata as m, json; print(json.dumps("
             "{d.metadata['Name']: d.version for d in m.distributions()}))"],
            capture_output=True, text=True, check=True, env=clean_env(), timeout=RUN_TIMEOUT,
        )  # fmt: skip
        return {normalize(name): version for name, version in json.loads(listing.stdout).items()}


def normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def clean_env(**extra: str) -> dict[str, str]:
    """What an operator's shell gives the command: no PYTHONPATH, no test settings."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root", **extra}


def find_uv() -> str:
    """uv from the dev environment (requirements/dev.lock), else from PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if not found:
        raise ToolInstallError(
            "uv not found beside the interpreter or on PATH: it is in requirements/dev.lock; "
            "run scripts/setup-dev.sh"
        )
    return found


def find_pipx() -> str:
    found = shutil.which("pipx", path="/usr/bin:/bin")
    if not found:
        raise ToolInstallError("pipx not found: install Debian's pipx (scripts/setup-dev.sh does)")
    return found


def build_wheel(out: Path) -> Path:
    """auto-review's wheel from a copy of this tree's sources, built as build-release does."""
    with tempfile.TemporaryDirectory(prefix="auto-review-wheel-src-") as work:
        source = Path(work)
        shutil.copytree(REPO_ROOT / "src" / "auto_review", source / "src" / "auto_review",
                        ignore=shutil.ignore_patterns("__pycache__", "build_info.json"))
        console = source / "scripts" / "console"
        console.mkdir(parents=True)
        shutil.copy2(REPO_ROOT / "scripts" / "console" / "auto-review", console)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO_ROOT / name, source / name)
        completed = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
             "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(source)],
            capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
            env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        )  # fmt: skip
    if completed.returncode != 0:
        raise ToolInstallError(f"pip wheel failed: {completed.stderr.strip()[-500:]}")
    [wheel] = out.glob("auto_review-*-py3-none-any.whl")
    return wheel


def wheel_under_test(out: Path) -> Path:
    given = os.environ.get("WHEEL_UNDER_TEST")
    if given:
        return Path(given).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return build_wheel(out)


def ensure_wheelhouse(python: str = DEBIAN_PYTHON) -> Path:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "wheelhouse.py"), str(WHEELHOUSE),
         "--python", python],
        capture_output=True, text=True, timeout=RUN_TIMEOUT + 60, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        raise ToolInstallError(
            f"the wheelhouse {WHEELHOUSE} is incomplete and could not be filled "
            f"(scripts/wheelhouse.py needs the package index once): {completed.stderr.strip()}"
        )
    return WHEELHOUSE


def uv_tool_install(base: Path, wheel: Path, python: str = DEBIAN_PYTHON) -> ToolInstall:
    """``uv tool install`` of ``wheel`` into ``base``/tools, its command in ``base``/bin."""
    tools, bin_dir = base / "tools", base / "bin"
    env = clean_env(
        UV_TOOL_DIR=str(tools), UV_TOOL_BIN_DIR=str(bin_dir), UV_CACHE_DIR=str(base / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never", UV_NO_CONFIG="1", HOME=str(base),
    )  # fmt: skip
    completed = subprocess.run(
        [find_uv(), "tool", "install", "--offline", "--no-index", "--find-links",
         str(ensure_wheelhouse(python)), "--constraints", str(LOCK), "--python", python,
         "--compile-bytecode", str(wheel)],
        capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False,
        umask=INSTALL_UMASK,
    )  # fmt: skip
    if completed.returncode != 0:
        raise ToolInstallError(f"uv tool install failed: {completed.stderr.strip()[-1000:]}")
    shutil.rmtree(base / "uv-cache", ignore_errors=True)
    return ToolInstall(bin_dir / TOOL_NAME, tools / TOOL_NAME, wheel)


def pipx_install(base: Path, wheel: Path, python: str = DEBIAN_PYTHON) -> ToolInstall:
    """``pipx install`` of ``wheel`` with ``PIPX_HOME`` ``base``/pipx, its command in
    ``base``/bin. pipx's own attempt to upgrade its shared pip fails without the index and is
    not fatal: the environment's pip from ensurepip installs the wheel."""
    home, bin_dir = base / "pipx", base / "bin"
    env = clean_env(
        PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir), HOME=str(base),
        PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(ensure_wheelhouse(python)), PIP_DISABLE_PIP_VERSION_CHECK="1",
    )  # fmt: skip
    completed = subprocess.run(
        [find_pipx(), "install", "--python", python, str(wheel)],
        capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False,
        umask=INSTALL_UMASK,
    )  # fmt: skip
    if completed.returncode != 0:
        raise ToolInstallError(f"pipx install failed: {completed.stderr.strip()[-1000:]}")
    return ToolInstall(bin_dir / TOOL_NAME, home / "venvs" / TOOL_NAME, wheel)


INSTALLERS = {"uv": uv_tool_install, "pipx": pipx_install}
