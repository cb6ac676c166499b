"""The installed `auto-review` command is a small script file: starting it imports no more
than the command's own modules need (`auto-review oci run` is held to runc's start-up)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import auto_review

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "console" / "auto-review"


def imported_modules(*args: str) -> set[str]:
    """The modules a fresh interpreter imports to run args. Without `site` (-S), so that
    .pth files of this environment cannot hide an import behind their own."""
    package_parent = str(Path(auto_review.__file__).resolve().parents[1])
    completed = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": package_parent, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = [line for line in completed.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def test_the_packaging_installs_the_script_file_as_the_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["script-files"] == ["scripts/console/auto-review"]
    assert "scripts" not in project["project"]  # a generated wrapper would shadow it
    assert SCRIPT.read_text().startswith("#!python\n")  # rewritten by the installer


def test_starting_the_command_imports_neither_re_nor_argparse() -> None:
    # What the interpreter's own start-up imports is not the command's doing.
    interpreter_alone = imported_modules("-c", "pass")
    command = imported_modules(str(SCRIPT), "--version") - interpreter_alone
    assert "auto_review.cli.main" in command
    assert not {"re", "argparse", "typing"} & command, sorted(command)
