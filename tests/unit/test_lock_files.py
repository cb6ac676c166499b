"""The lock files cover pyproject.toml: a dependency added there without re-running
scripts/update-locks would be missing from .venv and from the single file (both install
from a lock with --no-deps), so this fails first, naming it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"


def pinned(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;\\]+)", line)
        if match:
            found[normalize(match[1])] = match[2]
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normalize(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
            for requirement in requirements}  # fmt: skip


def test_both_locks_pin_every_runtime_dependency_and_dev_pins_the_dev_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = declared(project["dependencies"])
    dev = declared(project["optional-dependencies"]["dev"])
    release_lock = pinned(REQUIREMENTS / "release.lock")
    dev_lock = pinned(REQUIREMENTS / "dev.lock")
    assert sorted(runtime - set(release_lock)) == [], "run scripts/update-locks"
    assert sorted((runtime | dev) - set(dev_lock)) == [], "run scripts/update-locks"
    assert {"setuptools", "wheel", "pyinstaller"} <= set(release_lock)
    assert {"setuptools", "wheel"} <= set(dev_lock)
    assert "uv" in dev_lock  # the tool-install tests run `uv tool install`


def test_the_developer_environment_has_the_release_versions() -> None:
    release_lock = pinned(REQUIREMENTS / "release.lock")
    dev_lock = pinned(REQUIREMENTS / "dev.lock")
    differing = {name: (version, dev_lock[name]) for name, version in release_lock.items()
                 if name in dev_lock and dev_lock[name] != version}  # fmt: skip
    assert differing == {}


def test_every_pin_carries_hashes() -> None:
    for lock in (REQUIREMENTS / "release.lock", REQUIREMENTS / "dev.lock"):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 6)[-1])
        for block in blocks:
            if "==" in block.split("\n")[0]:
                assert "--hash=sha256:" in block, f"{lock.name}: {block.splitlines()[0]}"
