"""`auto-review webhook` and `auto-review auth init` against the loopback Forgejo fake.

Every exchange is checked against the Gitea swagger; no secret (webhook secret, token,
password) reaches stdout or stderr, except the token `auth init` was asked to print.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.fake_forgejo import FakeForgejo
from tests.support.openapi_check import ApiSpec

from auto_review.cli.main import main

TOKEN = "CANARY-hooks-admin-token-5Gh2Kq8Wz1Lm7Xc4Vb9Nr3Pd"
SECRET = "CANARY-hooks-secret-8Rt3Yu7Io1Pa5Sd9Fg2Hj6Kl0Zx4Cv"
PASSWORD = "CANARY-bot-password-3Qw8Er1Ty6Ui"
GATEWAY = "https://review.internal.test:8443"
HOOK_URL = GATEWAY + "/webhooks/forgejo"


@pytest.fixture(scope="module")
def spec() -> ApiSpec:
    return ApiSpec.gitea()


@pytest.fixture
def forge(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeForgejo]:
    for key in [k for k in os.environ if k.startswith("AR_")]:
        monkeypatch.delenv(key)
    with FakeForgejo(TOKEN) as fake:
        monkeypatch.setenv("AR_FORGEJO_URL", fake.url)
        monkeypatch.setenv("AR_FORGEJO_TOKEN", TOKEN)
        monkeypatch.setenv("AR_WEBHOOK_SECRET", SECRET)
        yield fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    for secret in (TOKEN, SECRET, PASSWORD):
        assert secret not in out.out + out.err
    return code, out.out, out.err


def register(*extra: str) -> list[str]:
    return ["webhook", "register", "--repo", "acme/widgets", "--gateway-url", GATEWAY, *extra]


def test_register_creates_once_then_is_idempotent(
    forge: FakeForgejo, spec: ApiSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *register())
    assert code == 0 and out.startswith("registered hook 1 of acme/widgets")
    (hook,) = forge.hooks_of("acme", "widgets")
    assert hook.config == {"url": HOOK_URL, "content_type": "json", "secret": SECRET}
    assert sorted(hook.events) == ["issue_comment", "pull_request"] and hook.active
    code, out, _ = run(capsys, *register())
    assert code == 0 and "already sends to" in out
    assert len(forge.hooks_of("acme", "widgets")) == 1
    spec.assert_conforms(forge.exchanges)


def test_a_differing_hook_is_reported_and_changed_only_with_update(
    forge: FakeForgejo, spec: ApiSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    old = forge.add_hook("acme", "widgets", url="https://old.internal.test/webhooks/forgejo",
                         secret="old-secret", events=["pull_request"])  # fmt: skip
    forge.add_hook("acme", "widgets", url="https://ci.internal.test/hook", events=["push"])
    code, _, err = run(capsys, *register())
    assert code == 1
    assert f"hook {old.id} of acme/widgets differs: sends to https://old.internal.test" in err
    assert "pass --update" in err
    assert old.config["url"].startswith("https://old") and old.config["secret"] == "old-secret"
    code, out, _ = run(capsys, *register("--update"))
    assert code == 0 and f"updated hook {old.id}" in out
    assert old.config["url"] == HOOK_URL and old.config["secret"] == SECRET
    assert sorted(old.events) == ["issue_comment", "pull_request"]
    assert len(forge.hooks_of("acme", "widgets")) == 2  # the unrelated hook is untouched
    spec.assert_conforms(forge.exchanges)


def test_list_and_unregister(
    forge: FakeForgejo, spec: ApiSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    forge.add_hook("acme", "widgets", url="https://ci.internal.test/hook", events=["push"])
    assert run(capsys, *register())[0] == 0
    code, out, _ = run(capsys, "webhook", "list", "--repo", "acme/widgets")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "gateway" in lines[1] and HOOK_URL in lines[1] and "gateway" not in lines[0]
    args = ["webhook", "unregister", "--repo", "acme/widgets", "--gateway-url", GATEWAY]
    code, out, _ = run(capsys, *args)
    assert code == 0 and out.startswith("removed hook 2")
    assert [h.config["url"] for h in forge.hooks_of("acme", "widgets")] == [
        "https://ci.internal.test/hook"
    ]
    code, out, _ = run(capsys, *args)
    assert code == 0 and "nothing to remove" in out
    spec.assert_conforms(forge.exchanges)


def test_forge_refusals_and_missing_settings_are_one_line(
    forge: FakeForgejo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AR_FORGEJO_TOKEN", "CANARY-wrong-token-7Yh3Nm9Qa2Ws")
    code, _, err = run(capsys, *register())
    assert code == 3 and "the forge refused" in err and "CANARY-wrong" not in err
    monkeypatch.delenv("AR_WEBHOOK_SECRET")
    monkeypatch.setenv("AR_FORGEJO_TOKEN", TOKEN)
    code, _, err = run(capsys, *register())
    assert code == 2 and "AR_WEBHOOK_SECRET" in err
    assert forge.hooks_of("acme", "widgets") == []


# ---- auth init ----------------------------------------------------------------------------


def init(*extra: str) -> list[str]:
    return ["auth", "init", "--username", "review-bot", "--password-stdin", *extra]


def test_auth_init_prints_the_token_once(
    forge: FakeForgejo,
    spec: ApiSpec,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forge.add_password("review-bot", PASSWORD)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, out, err = run(capsys, *init())
    ((user, name, scopes, token),) = forge.minted_tokens
    assert code == 0 and out == f"AR_FORGEJO_TOKEN={token}\n"
    assert (user, name) == ("review-bot", "auto-review")
    assert scopes == ["write:repository", "write:issue", "read:user"]
    assert token not in err
    spec.assert_conforms(forge.exchanges)


def test_auth_init_writes_the_token_into_the_env_file_only(
    forge: FakeForgejo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    forge.add_password("review-bot", PASSWORD)
    env_file = tmp_path / "my.env"
    env_file.write_text("AR_FORGEJO_TOKEN=\nAR_BOT_LOGIN=review-bot\n")
    env_file.chmod(0o600)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, out, err = run(capsys, *init("--env-file", str(env_file), "--write-token"))
    assert code == 0, err
    ((_, _, _, token),) = forge.minted_tokens
    assert token not in out + err
    assert env_file.read_text() == f"AR_FORGEJO_TOKEN={token}\nAR_BOT_LOGIN=review-bot\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.env"]
    # Set now: a second run refuses before asking the forge for another token.
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, _, err = run(capsys, *init("--env-file", str(env_file), "--write-token",
                                     "--token-name", "second"))  # fmt: skip
    assert code == 2 and "already sets AR_FORGEJO_TOKEN" in err
    assert len(forge.minted_tokens) == 1


def test_auth_init_wrong_password_and_reused_name(
    forge: FakeForgejo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    forge.add_password("review-bot", PASSWORD)
    monkeypatch.setattr("sys.stdin", io.StringIO("CANARY-not-the-password\n"))
    code, _, err = run(capsys, *init())
    assert code == 3 and "the forge refused" in err and "CANARY-not" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert run(capsys, *init())[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, _, err = run(capsys, *init())
    assert code == 3 and len(forge.minted_tokens) == 1


def test_auth_init_never_takes_the_password_as_an_argument(
    forge: FakeForgejo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["auth", "init", "--username", "review-bot", "--password", PASSWORD])
    assert exit_.value.code == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal, no --password-stdin
    code, _, err = run(capsys, "auth", "init", "--username", "review-bot")
    assert code == 2 and "--password-stdin" in err
    assert forge.minted_tokens == []


def test_the_organisation_hook_is_registered_listed_and_removed(
    forge: FakeForgejo, spec: ApiSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    org = ["--org", "acme", "--gateway-url", GATEWAY]
    code, out, _ = run(capsys, "webhook", "register", *org)
    assert code == 0 and out.startswith("registered hook 1 of organisation acme")
    (hook,) = forge.hooks_of("acme", "")
    assert hook.config == {"url": HOOK_URL, "content_type": "json", "secret": SECRET}
    assert forge.hooks_of("acme", "widgets") == []  # not a repository's hook
    code, out, _ = run(capsys, "webhook", "register", *org)
    assert code == 0 and "already sends to" in out
    assert len(forge.hooks_of("acme", "")) == 1

    code, out, _ = run(capsys, "webhook", "list", "--org", "acme")
    assert code == 0 and HOOK_URL in out and "gateway" in out
    code, out, _ = run(capsys, "webhook", "unregister", *org)
    assert code == 0 and out.startswith("removed hook 1 of organisation acme")
    assert forge.hooks_of("acme", "") == []
    assert [e.path for e in forge.exchanges if "/hooks" in e.path] and all(
        e.path.startswith("/api/v1/orgs/acme/hooks") for e in forge.exchanges if "/hooks" in e.path
    )
    spec.assert_conforms(forge.exchanges)


def test_repo_and_org_are_one_or_the_other(
    forge: FakeForgejo, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["webhook", "register", "--repo", "acme/widgets", "--org", "acme",
              "--gateway-url", GATEWAY])  # fmt: skip
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    code, _, err = run(capsys, "webhook", "list")
    assert code == 2 and "--repo OWNER/NAME or --org ORG is required" in err
