"""`auto-review gateway` refuses unsafe settings before doing anything, as a real process.

No secret value reaches stdout or stderr on any of these paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auto_review.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "auto-review.env"
CANARY = "CANARY-gateway-cli-4Fk8Qz1Lp6Wx3Nv9Bh2Jt7Ry5Dm0Cs"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AR_")}
    env["AR_STATE_DIR"] = str(tmp_path / "state")
    env.update(extra)
    return env


def run_gateway(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "gateway", *args],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path, **extra),
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def test_the_unedited_example_stops_the_gateway_naming_each_setting_to_fill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [k for k in os.environ if k.startswith("AR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AR_STATE_DIR", str(tmp_path / "state"))
    started = time.monotonic()
    code = main(["gateway", "--env-file", str(EXAMPLE)])
    assert time.monotonic() - started < 2.0  # no network, no waiting: refused up front
    assert code == 2
    lines = capsys.readouterr().err.splitlines()
    named = {line.split()[3] for line in lines}
    assert named == {"AR_FORGEJO_TOKEN", "AR_WEBHOOK_SECRET", "AR_FORGEJO_URL"}
    assert not (tmp_path / "state").exists()

    process = run_gateway(tmp_path, "--env-file", str(EXAMPLE))
    assert process.returncode == 2
    assert process.stderr.splitlines() == lines
    assert process.stdout == ""


def test_the_old_placeholder_example_is_refused_naming_each_placeholder(tmp_path: Path) -> None:
    env_file = tmp_path / "old.env"
    env_file.write_text(
        "AR_FORGEJO_URL=http://127.0.0.1:3000\n"
        "AR_FORGEJO_TOKEN=replace-with-the-bot-token\n"
        "AR_WEBHOOK_SECRET=replace-with-32-or-more-random-characters-0000\n"
    )
    env_file.chmod(0o600)
    process = run_gateway(tmp_path, "--env-file", str(env_file))
    assert process.returncode == 2
    lines = process.stderr.splitlines()
    assert len(lines) == 2
    assert "AR_FORGEJO_TOKEN" in lines[0] and "placeholder" in lines[0]
    assert "AR_WEBHOOK_SECRET" in lines[1] and "placeholder" in lines[1]
    assert "replace-with" not in process.stderr


def test_a_readable_env_file_with_secrets_and_typos_is_refused_without_values(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "gateway.env"
    env_file.write_text(
        f"AR_FORGEJO_ULR=https://forge.internal.test\nAR_FORGEJO_TOKEN={CANARY}-t\n"
        f"AR_WEBHOOK_SECRET={CANARY}\nAR_LOG_LEVLE=debug\n"
    )
    env_file.chmod(0o644)
    process = run_gateway(tmp_path, "--env-file", str(env_file), AR_WORKRES="3")
    assert process.returncode == 2
    err = process.stderr
    assert "AR_FORGEJO_ULR is not a known setting; did you mean AR_FORGEJO_URL?" in err
    assert "did you mean AR_LOG_LEVEL?" in err
    assert "AR_WORKRES is not a known setting; did you mean AR_WORKERS?" in err
    assert "mode 0644" in err
    assert "Traceback" not in err
    assert CANARY not in err + process.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.env"]


def test_errors_never_name_a_flag_that_does_not_exist(tmp_path: Path) -> None:
    process = run_gateway(tmp_path, AR_WEBHOOK_SECRET="short-" + CANARY[:8])
    assert process.returncode == 2
    assert "--webhook-secret" not in process.stderr
    assert "environment or env file only" in process.stderr
    assert CANARY[:8] not in process.stderr
    usage = run_gateway(tmp_path, "--webhook-secret", CANARY)
    assert usage.returncode == 2  # no such flag: a secret is never an argument
    assert "unrecognized option --webhook-secret; 1 unexpected value (not shown)" in usage.stderr
    assert CANARY not in usage.stderr + usage.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["gateway", "--webhook-secret=" + CANARY],
        ["gateway", CANARY],
        ["review", "once", "--repo", "a/b", "--pr", CANARY],
        ["auth", "init", "--username", "bot", "--password", CANARY],  # no prefix matching
        ["webhook", "list", "--repo", "a/b", "--token", CANARY],
    ],
)
def test_usage_errors_never_repeat_a_typed_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert CANARY not in captured.out + captured.err
    assert "error:" in captured.err
