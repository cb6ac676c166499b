"""`auto-review version [--verbose]` run as a process: from this checkout, from a wheel
installed by pip, and from a copy carrying a build record; the single file itself is checked
by scripts/check-release on the built artifact."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from auto_review import __version__
from auto_review.cli.version import SINGLE_FILE, describe_running

ROOT = Path(__file__).resolve().parents[3]


def run_version(*args: str, python_path: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if python_path is not None:
        env["PYTHONPATH"] = python_path
    completed = subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "version", *args], cwd="/", env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return completed.stdout.splitlines()


def build_isolation_options() -> list[str]:
    """Build with this environment's setuptools and wheel (setup-dev.sh's .venv has the
    locked ones); an interpreter without them (or too old) lets pip fetch them to build."""
    try:
        usable = int(metadata.version("setuptools").split(".")[0]) >= 68
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        usable = False
    return ["--no-build-isolation", "--no-index"] if usable else []


def test_plain_version_is_one_line() -> None:
    assert run_version() == [f"auto-review {__version__}"]


def test_from_the_checkout_it_names_the_checkout_and_its_git_commit() -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    lines = run_version("--verbose", python_path=str(ROOT / "src"))
    assert lines[0] == f"auto-review {__version__}"
    commit = lines[1].removeprefix("commit: ")
    assert commit in (f"{head} (git)", f"{head}+modified (git)")
    assert lines[2] == f"python: CPython {platform.python_version()} ({sys.executable})"
    assert lines[3] == f"runs as: editable checkout ({ROOT})"


def test_from_an_installed_wheel_it_names_the_directory_and_the_installer(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    skipped = (".git", ".venv", "tests", "bench", "__pycache__", "build", "*.egg-info", "dist")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skipped))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *build_isolation_options(),
         "-w", str(tmp_path / "wheels"), str(source)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    wheel = next((tmp_path / "wheels").glob("auto_review-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
         str(site), str(wheel)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    lines = run_version("--verbose", python_path=str(site))
    assert lines[1] == "commit: unknown"
    assert lines[3] == f"runs as: installed package ({site}), installed by pip"


def test_a_build_record_beside_the_package_gives_the_commit(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(ROOT / "src" / "auto_review", site / "auto_review",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    commit = "0123456789abcdef0123456789abcdef01234567"
    (site / "auto_review" / "build_info.json").write_text(json.dumps({"commit": commit}))
    lines = run_version("--verbose", python_path=str(site))
    assert lines[1] == f"commit: {commit} (recorded at build)"
    assert lines[3] == f"runs as: installed package ({site})"  # no metadata of its own


def test_a_frozen_executable_is_the_single_file(tmp_path: Path) -> None:
    package = tmp_path / "0.1.0-entry" / "_internal" / "auto_review"
    package.mkdir(parents=True)
    (package / "build_info.json").write_text(json.dumps({"commit": "abc123"}))
    running = describe_running(str(package), True, "/opt/auto-review-0.1.0-linux-x86_64")
    assert (running.kind, running.location) == (SINGLE_FILE, "/opt/auto-review-0.1.0-linux-x86_64")
    assert (running.commit, running.commit_source) == ("abc123", "recorded at build")
