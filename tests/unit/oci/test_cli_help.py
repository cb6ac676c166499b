"""`--help`/`-h` on the oci command and on every subcommand: usage on stdout, exit 0,
through the runtime's own entry point and through the `auto-review` dispatcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from auto_review.oci import cli

COMMANDS = tuple(cli._ALLOWED)
ENTRY_POINTS = {
    "python -m auto_review.oci": [sys.executable, "-m", "auto_review.oci"],
    "python -m auto_review.cli.main oci": [sys.executable, "-m", "auto_review.cli.main", "oci"],
}


def test_every_command_has_help_text() -> None:
    assert set(cli._HELP) == set(COMMANDS)


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help(capsys: pytest.CaptureFixture[str], command: str, flag: str) -> None:
    assert cli.main([command, flag]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: auto-review oci [--root DIR] [--debug] {command}")
    assert cli._HELP[command] in out
    assert err == ""
    # after other arguments too, as runc takes it
    assert cli.main(["--root", "/nonexistent", command, "some-id", flag]) == 0
    assert capsys.readouterr().out == out


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--root", "/x", "--help"], ["help"]])
def test_top_level_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: auto-review oci")
    for command in COMMANDS:
        assert f"\n  {command}" in out


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_help_through_each_entry_point(entry: str) -> None:
    """Every oci subcommand, as a user runs it; also the installed console script."""
    commands = [ENTRY_POINTS[entry]]
    # The console script of the environment running the tests (setup-dev.sh's .venv), not
    # whichever `auto-review` PATH finds first (another install's code).
    script = Path(sys.executable).parent / "auto-review"
    if entry.endswith("cli.main oci") and script.is_file():
        commands.append([str(script), "oci"])
    for prefix in commands:
        for command in (*COMMANDS, None):
            argv = [*prefix, command, "--help"] if command else [*prefix, "--help"]
            completed = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                       check=False)
            assert completed.returncode == 0, (argv, completed.stderr)
            assert completed.stdout.startswith("usage: auto-review oci"), argv
            assert completed.stderr == "", argv
