"""`auto-review secrets generate`: strong secrets, printed once or written to a 0600 file.

A generated secret appears only where the user asked: on stdout without --env-file, in the
file with it (never on stdout or stderr, never in another file).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from auto_review.cli.main import main
from auto_review.config import MIN_SECRET_LENGTH, load_settings, secret_weakness

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "auto-review.env"
VALUE = re.compile(r"^(AR_[A-Z_]+)=(\S+)$", re.MULTILINE)


def generated(path: Path) -> dict[str, str]:
    return {k: v for k, v in VALUE.findall(path.read_text()) if "SECRET" in k or "CI_" in k}


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_printed_once_on_stdout_strong_and_different(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secrets", "generate"]) == 0
    first = capsys.readouterr()
    values = dict(VALUE.findall(first.out))
    assert sorted(values) == ["AR_CI_REVIEW_TOKEN", "AR_WEBHOOK_SECRET"]
    assert all(secret_weakness(v, MIN_SECRET_LENGTH) is None for v in values.values())
    assert len(set(values.values())) == 2
    assert not any(v in first.err for v in values.values())
    assert main(["secrets", "generate", "--github", "--no-ci-token"]) == 0
    again = dict(VALUE.findall(capsys.readouterr().out))
    assert sorted(again) == ["AR_GITHUB_WEBHOOK_SECRET", "AR_WEBHOOK_SECRET"]
    assert again["AR_WEBHOOK_SECRET"] != values["AR_WEBHOOK_SECRET"]


def test_written_to_a_new_0600_file_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "my.env"
    previous = os.umask(0o022)
    try:
        assert main(["secrets", "generate", "--env-file", str(target)]) == 0
    finally:
        os.umask(previous)
    out = capsys.readouterr()
    values = generated(target)
    assert sorted(values) == ["AR_CI_REVIEW_TOKEN", "AR_WEBHOOK_SECRET"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not any(v in out.out + out.err for v in values.values())
    assert files_under(tmp_path) == [target]
    settings = load_settings(environ={}, env_file=target)  # accepted as it is
    assert settings.webhook_secret is not None and settings.ci_review_token is not None


def test_a_template_is_copied_with_the_secrets_filled_in(tmp_path: Path) -> None:
    target = tmp_path / "my.env"
    assert main(["secrets", "generate", "--env-file", str(target), "--template", str(EXAMPLE)]) == 0
    text = target.read_text()
    example = EXAMPLE.read_text()
    assert text.count("\n") == example.count("\n")  # filled in place, nothing appended
    assert "AR_FORGEJO_TOKEN=\n" in text  # the forge's token is the operator's to fill in
    assert sorted(generated(target)) == ["AR_CI_REVIEW_TOKEN", "AR_WEBHOOK_SECRET"]
    assert EXAMPLE.read_text() == example


def test_never_overwrites_a_file_or_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "my.env"
    target.write_text("AR_WORKERS=3\nAR_WEBHOOK_SECRET=\n")
    target.chmod(0o600)
    args = ["secrets", "generate", "--env-file", str(target)]
    assert main([*args, "--template", str(EXAMPLE)]) == 2
    assert "exists; refusing to overwrite" in capsys.readouterr().err
    assert main(args) == 0  # an empty key is filled, a missing one appended
    first = target.read_text()
    assert first.startswith("AR_WORKERS=3\nAR_WEBHOOK_SECRET=")
    assert sorted(generated(target)) == ["AR_CI_REVIEW_TOKEN", "AR_WEBHOOK_SECRET"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already sets AR_WEBHOOK_SECRET, AR_CI_REVIEW_TOKEN" in err
    assert target.read_text() == first
    assert not any(v in err for v in generated(target).values())
    assert files_under(tmp_path) == [target]  # no temporary file left behind


def test_refuses_to_add_secrets_to_a_file_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "shared.env"
    target.write_text("AR_WORKERS=3\n")
    target.chmod(0o644)
    assert main(["secrets", "generate", "--env-file", str(target)]) == 2
    assert "mode 0644" in capsys.readouterr().err
    assert target.read_text() == "AR_WORKERS=3\n"
    link = tmp_path / "link.env"
    link.symlink_to(tmp_path / "elsewhere.env")
    assert main(["secrets", "generate", "--env-file", str(link)]) == 2
    assert not (tmp_path / "elsewhere.env").exists()


def readme_setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```\n", 2)[1]
    return block.strip().splitlines()


def test_the_readme_starts_with_exactly_two_setup_commands() -> None:
    first, second = readme_setup_commands()
    assert first.startswith("bash scripts/setup-dev.sh && ")
    assert second == "bash scripts/setup-dev.sh && .venv/bin/python -m pytest -q"


def test_the_readme_first_run_ends_naming_what_is_left_to_fill_in(tmp_path: Path) -> None:
    """The README's first command, run from a copy of the clone's files it reads: it makes
    my.env, starts the gateway, which stops at once naming the forge settings still to fill
    in; no secret is shown and nothing else is written."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "auto-review.env").write_text(EXAMPLE.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("AR_")}
    env["AR_STATE_DIR"] = str(tmp_path / "state")
    steps = readme_setup_commands()[0].split(" && ")[1:]
    results = []
    for step in steps:
        argv = shlex.split(step)
        assert argv[0] == ".venv/bin/auto-review"  # the console script setup-dev.sh installs
        results.append(
            subprocess.run(
                [sys.executable, "-m", "auto_review.cli.main", *argv[1:]],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
    made, gateway = results
    assert made.returncode == 0, made.stderr
    assert gateway.returncode == 2
    named = [line.split()[3] for line in gateway.stderr.splitlines()]
    assert named == ["AR_FORGEJO_TOKEN", "AR_FORGEJO_URL"]
    secrets = generated(tmp_path / "my.env").values()
    assert len(secrets) == 2
    everything = made.stdout + made.stderr + gateway.stdout + gateway.stderr
    assert not any(value in everything for value in secrets)
    assert files_under(tmp_path) == [tmp_path / "examples" / "auto-review.env", tmp_path / "my.env"]
