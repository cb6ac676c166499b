"""`auto-review config validate`: output and exit status, in-process and as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from auto_review.cli.main import main
from auto_review.review.policy.repo_config import MAX_CONFIG_BYTES

VALID = "ignore: ['docs/**']\nseverity_floor: high\nmax_files: 20\n"


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "config", "validate", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".auto_review.yaml"
    path.write_text(VALID)
    assert main(["config", "validate", str(path)]) == 0
    assert capsys.readouterr().out == "OK\n"


def test_unknown_key_warns_then_fails_with_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(VALID + "langauge: de\n")
    assert main(["config", "validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: warning: line 4: unknown key 'langauge'")
    assert out[1] == "OK"
    assert main(["config", "validate", "--strict", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"{path}: line 4: unknown key 'langauge'")


def test_each_problem_on_its_own_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("max_files: many\nskip_drafts: 1\n")
    assert main(["config", "validate", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: line 1: max_files must be a whole number, not a string 'many'",
        f"{path}: line 2: skip_drafts must be true or false, not int 1",
    ]


def test_unknown_key_warnings_are_shown_with_the_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("max_files: many\nlangauge: de\n")
    assert main(["config", "validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: line 1: max_files must be a whole number, not a string 'many'"
    assert out[1].startswith(f"{path}: warning: line 2: unknown key 'langauge'")
    assert len(out) == 2


def test_unreadable_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["config", "validate", str(tmp_path)]) == 2  # a directory
    assert main(["config", "validate"]) == 2
    assert main(["config", "frobnicate", "x"]) == 2
    assert main(["config"]) == 2
    assert main(["config", "validate", "--help"]) == 0
    assert "--strict" in capsys.readouterr().out


def test_real_process_exit_codes_and_output(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    result = run_cli(str(good))
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK\n", "")

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n")
    result = run_cli("--strict", str(bomb))
    assert result.returncode == 1
    assert result.stdout == f"{bomb}: line 1: anchors and aliases (& and *) are not allowed\n"

    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES * 4))
    result = run_cli(str(big))
    assert (result.returncode, result.stdout) == (
        1,
        f"{big}: the file is over the {MAX_CONFIG_BYTES}-byte cap\n",
    )

    result = run_cli(str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "No such file" in result.stderr and result.stdout == ""

    result = run_cli("-", stdin=b"severity_floor: urgent\n")
    assert result.returncode == 1
    assert result.stdout.startswith("<stdin>: line 1: severity_floor must be one of")

    result = run_cli()
    assert result.returncode == 2 and "usage:" in result.stderr


def test_hostile_value_cannot_reach_the_terminal_raw(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b'severity_floor: "\\e]0;pwned\\a\\e[2J"\n')
    result = run_cli(str(path))
    assert result.returncode == 1
    assert "\x1b" not in result.stdout and "\\x1b" in result.stdout
