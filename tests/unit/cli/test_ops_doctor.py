"""`auto-review ops doctor` against the loopback Forgejo and LLM fakes.

Every check is one `[ok]`, `[warn]` or `[fail]` line; any failure is exit status 1. The
settings carry canary secrets, and no failure path shows one on stdout or stderr (the fake
LLM even echoes a refused API key in its error body, as careless servers do).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import FakeLlm
from tests.support.openapi_check import ApiSpec

from auto_review.cli.main import main

TOKEN = "CANARY-doctor-forge-token-4Fd8Jk2Lq6Wm"
SECRET = "CANARY-doctor-webhook-secret-7Hn3Bv9Cx1Zq5Rt"
CI_TOKEN = "CANARY-doctor-ci-token-2Pl6Ok0Ij8Uh4Yg1Tf"
LLM_KEY = "CANARY-doctor-llm-key-9Gb5Vf1Rd3Ea"
CANARIES = (TOKEN, SECRET, CI_TOKEN, LLM_KEY)
REASONING, CHEAP = "qwen2.5-coder:32b", "qwen2.5-coder:7b"


@pytest.fixture
def forge(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeForgejo]:
    for key in [k for k in os.environ if k.startswith("AR_")]:
        monkeypatch.delenv(key)
    with FakeForgejo(TOKEN) as fake:
        yield fake


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    with FakeLlm(api_key=LLM_KEY, models=[REASONING, CHEAP, "other"]) as fake:
        yield fake


def env_file(tmp_path: Path, forge: FakeForgejo, llm_url: str, **extra: str) -> Path:
    values = {
        "AR_FORGEJO_URL": forge.url,
        "AR_FORGEJO_TOKEN": TOKEN,
        "AR_WEBHOOK_SECRET": SECRET,
        "AR_CI_REVIEW_TOKEN": CI_TOKEN,
        "AR_LLM_BASE_URL": llm_url,
        "AR_LLM_API_KEY": LLM_KEY,
        "AR_LLM_REASONING_MODEL": REASONING,
        "AR_LLM_CHEAP_MODEL": CHEAP,
        "AR_STATE_DIR": str(tmp_path / "state"),
        "AR_GATEWAY_BARE": "true",
        **extra,
    }
    path = tmp_path / "my.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v))
    path.chmod(0o600)
    return path


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str], str]:
    """Exit status, {check name: its line}, stderr; asserts no canary was printed."""
    code = main(["ops", "doctor", *argv])
    out = capsys.readouterr()
    for canary in CANARIES:
        assert canary not in out.out + out.err
    lines: dict[str, str] = {}
    for line in out.out.splitlines():
        if line.startswith("["):
            name = line.split("] ", 1)[1].split(":", 1)[0]
            lines.setdefault(name, line)
    return code, lines, out.err


def test_everything_in_order_is_all_ok(
    forge: FakeForgejo, llm: FakeLlm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = env_file(tmp_path, forge, llm.url, AR_BOT_LOGIN="auto-review-bot")
    code, lines, err = doctor(capsys, "--env-file", str(path))
    assert code == 0, lines
    assert lines["settings"] == "[ok] settings: every setting is well-formed"
    assert lines["env-file"].startswith(f"[ok] env-file: {path} (mode 0600")
    assert lines["secrets"].startswith("[ok] secrets: AR_WEBHOOK_SECRET, AR_CI_REVIEW_TOKEN strong")
    assert lines["state-dir"].startswith("[ok] state-dir:") and "created 0700" in lines["state-dir"]
    assert lines["git"].startswith("[ok] git: git version")
    assert lines["forgejo-token"].startswith(
        "[ok] forgejo-token: valid for auto-review-bot; reaches user, repository, issue"
    )
    assert lines["llm"] == "[ok] llm: reachable, 3 model(s) listed"
    assert lines["llm-reasoning-model"] == f"[ok] llm-reasoning-model: {REASONING} is listed"
    assert lines["llm-cheap-model"] == f"[ok] llm-cheap-model: {CHEAP} is listed"
    assert lines["isolation"].startswith("[warn] isolation: bare")
    assert err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.env"]  # nothing else written
    ApiSpec.gitea().assert_conforms(forge.exchanges)


def test_each_failure_is_one_fail_line_and_exit_1(
    forge: FakeForgejo, llm: FakeLlm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forge.token_scopes = {"write:repository", "read:user"}  # no issue scope
    (tmp_path / "state").write_text("not a directory")
    path = env_file(tmp_path, forge, llm.url, AR_LLM_CHEAP_MODEL="no-such-model",
                    AR_BOT_LOGIN="someone-else")  # fmt: skip
    code, lines, _ = doctor(capsys, "--env-file", str(path))
    assert code == 1
    assert lines["forgejo-token"].startswith("[fail] forgejo-token: valid for auto-review-bot, "
                                             "but it lacks the scope categories issue")  # fmt: skip
    assert lines["state-dir"].startswith("[fail] state-dir:") and "not a directory" in lines[
        "state-dir"
    ]
    assert lines["llm-reasoning-model"].startswith("[ok]")
    assert lines["llm-cheap-model"].startswith("[fail] llm-cheap-model: no-such-model is not")
    forge.token_scopes = None
    code, lines, _ = doctor(capsys, "--env-file", str(path))
    assert code == 1 and "AR_BOT_LOGIN is someone-else" in lines["forgejo-token"]


def test_refused_credentials_and_unreachable_servers_show_no_secret(
    forge: FakeForgejo, llm: FakeLlm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forge.token = "CANARY-doctor-other-token-8Kj2Hg6Fd"  # ours is now refused
    llm.api_key = "CANARY-doctor-other-llm-key-3Sd7Fg"  # and the fake echoes what we send
    path = env_file(tmp_path, forge, llm.url)
    code, lines, _ = doctor(capsys, "--env-file", str(path))
    assert code == 1
    assert lines["forgejo-token"].startswith("[fail] forgejo-token: the forge refused or failed")
    assert "401" in lines["forgejo-token"]
    assert lines["llm"].startswith("[fail] llm: GET /models failed")
    llm.stop()  # nothing listens there any more
    code, lines, _ = doctor(capsys, "--env-file", str(path))
    assert code == 1 and lines["llm"].startswith("[fail] llm: GET /models failed")


def test_unsafe_settings_are_fail_lines_and_the_rest_still_runs(
    forge: FakeForgejo, llm: FakeLlm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = env_file(tmp_path, forge, llm.url, AR_CI_REVIEW_TOKEN="changeme-" * 4)
    path.chmod(0o644)
    code = main(["ops", "doctor", "--env-file", str(path)])
    out = capsys.readouterr()
    for canary in CANARIES:
        assert canary not in out.out + out.err
    assert code == 1
    fails = [line for line in out.out.splitlines() if line.startswith("[fail] settings:")]
    assert any("chmod 600" in line for line in fails)
    assert any("AR_CI_REVIEW_TOKEN" in line and "placeholder" in line for line in fails)
    assert "changeme" not in out.out
    assert any(line.startswith("[ok] git:") for line in out.out.splitlines())
    # accepted on request, but said
    path.chmod(0o644)
    ok_path = env_file(tmp_path, forge, llm.url)
    ok_path.chmod(0o640)
    code, lines, err = doctor(capsys, "--env-file", str(ok_path), "--allow-insecure-env-file")
    assert code == 0, lines
    assert lines["env-file"].startswith("[warn] env-file:") and err == ""


def test_secrets_in_the_environment_are_warned_and_json_has_every_check(
    forge: FakeForgejo,
    llm: FakeLlm,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AR_FORGEJO_URL", forge.url)
    monkeypatch.setenv("AR_FORGEJO_TOKEN", TOKEN)
    monkeypatch.setenv("AR_STATE_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    code, lines, _ = doctor(capsys, "--bare")
    assert code == 1  # AR_WEBHOOK_SECRET is missing for the configured forge
    assert lines["env-file"].startswith("[warn] env-file: AR_FORGEJO_TOKEN given in the environ")
    assert lines["secrets"].startswith("[fail] secrets: not set: AR_WEBHOOK_SECRET")
    assert lines["state-dir"].startswith("[ok] state-dir:") and "writable" in lines["state-dir"]
    assert lines["llm"].startswith("[warn] llm: no LLM")
    code = main(["ops", "doctor", "--bare", "--json"])
    report = json.loads(capsys.readouterr().out)
    levels = {check["name"]: check["level"] for check in report["checks"]}
    assert levels["forgejo-token"] == "ok" and levels["secrets"] == "fail"
    assert report["decision"]["mode"] == "bare"


def test_kernel_features_for_the_container_boundary_are_checked(
    forge: FakeForgejo, llm: FakeLlm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = env_file(tmp_path, forge, llm.url, AR_GATEWAY_BARE="")
    code, lines, _ = doctor(capsys, "--env-file", str(path), "--oci-runtime", "/nonexistent/runc")
    assert code == 1
    assert lines["isolation"].startswith("[ok] isolation: oci")
    for name in ("user-namespaces", "seccomp", "landlock", "cgroup-limits"):
        assert name in lines
    assert lines["runtimes"].startswith("[fail] runtimes:") and "NOT executable" in lines[
        "runtimes"
    ]


def test_a_gateway_that_is_not_there_is_a_failure(
    forge: FakeForgejo, llm: FakeLlm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = env_file(tmp_path, forge, llm.url)
    gone = llm.url.removesuffix("/v1")
    llm.stop()
    code, lines, _ = doctor(capsys, "--env-file", str(path), "--gateway-url", gone)
    assert code == 1 and lines["gateway"].startswith("[fail] gateway: cannot fetch")
