"""The hermetic git environment and command line, as built (no git needed for most)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from auto_review.review.workspace.gitenv import (
    CREDENTIAL_HELPER,
    GitCredentials,
    GitError,
    GitPolicy,
    GitRunner,
    GitTimeout,
    config_arguments,
    hermetic_environment,
    redact,
)

TOKEN = "ghs_0123456789abcdefSECRET"


def test_environment_inherits_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GIT_CONFIG_PARAMETERS",
        "GIT_SSH_COMMAND",
        "SSH_ASKPASS",
        "HTTPS_PROXY",
        "GIT_DIR",
        "GIT_EXEC_PATH",
        "LD_PRELOAD",
        "CANARY",
    ):
        monkeypatch.setenv(name, "inherited")
    env = hermetic_environment(tmp_path, GitPolicy(), None)
    assert "inherited" not in env.values()
    assert env["HOME"] == str(tmp_path)
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ASKPASS"] == ""
    assert env["GIT_ALLOW_PROTOCOL"] == "https"
    assert env["GIT_LFS_SKIP_SMUDGE"] == "1"
    assert not any(key.startswith("AR_GIT_") for key in env)


def test_policy_switches(tmp_path: Path) -> None:
    policy = GitPolicy(
        allow_file_protocol=True,
        https_proxy="http://proxy.internal:3128",
        no_proxy="localhost",
        ca_file=Path("/etc/ssl/forge.pem"),
    )
    env = hermetic_environment(tmp_path, policy, None)
    assert env["GIT_ALLOW_PROTOCOL"] == "https:file"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.internal:3128"
    assert env["NO_PROXY"] == "localhost"
    config = dict(policy.config(None))
    assert config["protocol.file.allow"] == "always"
    assert config["http.proxy"] == "http://proxy.internal:3128"
    assert config["http.sslCAInfo"] == "/etc/ssl/forge.pem"
    default = dict(GitPolicy().config(None))
    assert default["protocol.file.allow"] == "never" and default["http.proxy"] == ""


def test_overrides_switch_off_everything_that_executes() -> None:
    pairs = GitPolicy().config(None)
    config = dict(pairs)
    expected = {
        "core.hooksPath": "/dev/null",
        "core.fsmonitor": "false",
        "core.askPass": "",
        "core.sshCommand": "",
        "core.gitProxy": "",
        "submodule.recurse": "false",
        "fetch.recurseSubmodules": "false",
        "filter.lfs.smudge": "",
        "filter.lfs.process": "",
        "filter.lfs.required": "false",
        "protocol.allow": "never",
        "protocol.https.allow": "always",
        "core.symlinks": "true",
        "http.followRedirects": "false",
    }
    assert expected.items() <= config.items()
    assert [v for k, v in pairs if k == "credential.helper"] == [""]  # no helper at all
    argv = config_arguments(pairs)
    assert argv[:2] == ["-c", f"{pairs[0][0]}={pairs[0][1]}"]


def test_token_lives_only_in_the_child_environment(tmp_path: Path) -> None:
    credentials = GitCredentials(username="x-access-token", token=TOKEN, host="forge.example")
    runner = GitRunner(home=tmp_path, git_dir=tmp_path / "g", credentials=credentials)
    argv = runner.argv(["fetch", "https://forge.example/o/r.git"])
    assert not any(TOKEN in part for part in argv)
    helpers = [a for a in argv if a.startswith("credential.helper=")]
    assert helpers == ["credential.helper=", f"credential.helper={CREDENTIAL_HELPER}"]
    env = runner.environment()
    assert env["AR_GIT_TOKEN"] == TOKEN and env["AR_GIT_HOST"] == "forge.example"
    assert TOKEN not in repr(credentials) and TOKEN not in repr(runner)


@pytest.mark.parametrize("field", ["username", "token", "host"])
def test_credentials_reject_injection(field: str) -> None:
    values = {"username": "bot", "token": TOKEN, "host": "forge.example"}
    values[field] = "a\nprotocol=http"
    with pytest.raises(ValueError, match=field) as failure:
        GitCredentials(**values)
    assert TOKEN not in str(failure.value)
    values[field] = ""
    with pytest.raises(ValueError, match=field):
        GitCredentials(**values)


def test_redact() -> None:
    assert redact(f"fatal: auth {TOKEN} failed", [TOKEN, ""]) == "fatal: auth *** failed"


def test_stream_times_out_and_kills_git(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    runner = GitRunner(home=home, git_dir=tmp_path / "g")
    runner.run(["init", "--quiet", "--bare"], timeout=30)
    started = time.monotonic()
    with pytest.raises(GitTimeout), runner.stream(["hash-object", str(fifo)], timeout=0.5) as out:
        assert out.read() == b""  # EOF once the watchdog killed git
    assert time.monotonic() - started < 10
    assert os.listdir(home) == []


def test_stream_reports_git_failures_and_tolerates_early_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    runner = GitRunner(home=home, git_dir=tmp_path / "g")
    runner.run(["init", "--quiet", "--bare"], timeout=30)
    with (
        pytest.raises(Exception, match="git cat-file failed"),
        runner.stream(["cat-file", "-p", "0" * 40], timeout=30) as out,
    ):
        out.read()
    big = tmp_path / "big"
    big.write_bytes(b"x\n" * 2_000_000)
    blob = runner.run(["hash-object", "-w", str(big)], timeout=30).stdout.decode().strip()
    with runner.stream(["cat-file", "-p", blob], timeout=30) as out:
        assert out.read(10) == b"x\nx\nx\nx\nx\n"  # stop early: no error


def test_config_cannot_be_smuggled_before_the_subcommand(tmp_path: Path) -> None:
    runner = GitRunner(home=tmp_path, git_dir=tmp_path / "g")
    for args in (["-c", "core.fsmonitor=/tmp/evil", "status"], ["--exec-path=/tmp"], []):
        with pytest.raises(GitError, match="subcommand"):
            runner.argv(args)
    argv = runner.argv(["status", "-c", "x"])  # later arguments belong to the subcommand
    assert argv[argv.index("status") :] == ["status", "-c", "x"]


def test_failures_are_one_redacted_line(tmp_path: Path) -> None:
    runner = GitRunner(
        home=tmp_path,
        git_dir=tmp_path / "g",
        credentials=GitCredentials(username="bot", token=TOKEN, host="forge.example"),
    )
    error = runner._failure("fetch", f"fatal: one\n\x1b[31mtwo {TOKEN}\r\n\n".encode())
    assert str(error) == "git fetch failed: fatal: one | [31mtwo ***"
