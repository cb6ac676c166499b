"""Unsafe settings are refused at start-up: every problem at once, one line each, no value.

Placeholders and example values, weak secrets, env files other users can read or write,
and AR_* names the program does not know (with the nearest known name suggested).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from auto_review.config import (
    SECRET_FIELDS,
    SettingsError,
    env_name,
    gateway_warnings,
    load_settings,
    secret_weakness,
    validate_for_gateway,
)

ROOT = Path(__file__).resolve().parents[2]
CANARY = "CANARY-safety-7Hq2Lm9Xc4Vb8Nz1Kd6Rf3Tw5Yp0Gs"
STRONG = {
    "AR_FORGEJO_URL": "https://forge.internal.test",
    "AR_FORGEJO_TOKEN": CANARY + "-token",
    "AR_WEBHOOK_SECRET": CANARY,
}
SECRET_NAMES = sorted(env_name(field) for field in SECRET_FIELDS)


def problems(**kwargs: object) -> list[str]:
    with pytest.raises(SettingsError) as err:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return err.value.problems


def write_env(path: Path, values: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    path.chmod(mode)
    return path


def shipped_secret_values() -> list[tuple[str, str]]:
    """Every AR_<secret>=VALUE the repository shows (examples, README, docs)."""
    found: list[tuple[str, str]] = []
    files = [*ROOT.glob("examples/*"), ROOT / "README.md", *ROOT.glob("docs/*.md")]
    pattern = re.compile(r"\b(" + "|".join(SECRET_NAMES) + r")=([^\s`'\"]+)")
    for path in files:
        for name, value in pattern.findall(path.read_text(encoding="utf-8")):
            found.append((name, value))
    return found


# The values the example file shipped with before it shipped empty secrets.
OLD_EXAMPLE = {
    "AR_FORGEJO_URL": "http://127.0.0.1:3000",
    "AR_FORGEJO_TOKEN": "replace-with-the-bot-token",
    "AR_WEBHOOK_SECRET": "replace-with-32-or-more-random-characters-0000",
}


def test_the_old_example_values_are_each_refused_in_one_report() -> None:
    lines = problems(environ=OLD_EXAMPLE)
    assert [line.split()[1] for line in lines] == ["AR_FORGEJO_TOKEN", "AR_WEBHOOK_SECRET"]
    assert all("placeholder" in line for line in lines)
    for value in OLD_EXAMPLE.values():
        assert all(value not in line for line in lines[1:])


@pytest.mark.parametrize(("name", "value"), shipped_secret_values() or [("none", "none")])
def test_no_secret_value_shown_in_the_repository_is_accepted(name: str, value: str) -> None:
    if name == "none":
        return  # nothing shipped: nothing to refuse
    lines = problems(environ={**STRONG, name: value})
    assert any(name in line for line in lines)
    assert all(value not in line for line in lines)


@pytest.mark.parametrize(
    "value",
    [
        "a" * 40,
        "abab" * 10,
        "0123" * 9,
        "changeme-changeme-changeme-changeme",
        "CHANGEME" + "x9" * 14,
        "please-replace-with-something-real-now",
        "my-placeholder-value-for-the-webhook-secret",
        "aabbccddaabbccddaabbccddaabbccdd1",  # seven distinct characters
    ],
)
def test_weak_webhook_secrets_are_refused(value: str) -> None:
    assert secret_weakness(value, 32) is not None
    lines = problems(environ={**STRONG, "AR_WEBHOOK_SECRET": value})
    assert lines == [lines[0]] and "AR_WEBHOOK_SECRET" in lines[0]
    assert value not in lines[0]
    assert "secrets generate" in lines[0]


def test_a_short_secret_names_the_minimum_and_a_real_secret_passes() -> None:
    (line,) = problems(environ={**STRONG, "AR_CI_REVIEW_TOKEN": CANARY[:31]})
    assert "at least 32 characters" in line and CANARY[:31] not in line
    import secrets

    for _ in range(200):  # random secrets of the generator's size always pass
        assert secret_weakness(secrets.token_urlsafe(32), 32) is None
        assert secret_weakness(secrets.token_hex(16), 32) is None


def test_a_secret_is_named_as_environment_only_never_by_a_flag() -> None:
    (line,) = problems(environ={**STRONG, "AR_WEBHOOK_SECRET": "short"})
    assert "--webhook-secret" not in line
    assert "environment or env file only" in line


def test_messages_name_only_the_flags_the_command_has() -> None:
    lines = problems(environ={"AR_WORKERS": "many", "AR_STATE_DIR": "a\x00b"},
                     flag_names={"state_dir": "--state-dir"})  # fmt: skip
    assert any(line.startswith("setting AR_WORKERS is invalid") for line in lines)
    assert any("AR_STATE_DIR (--state-dir)" in line for line in lines)
    assert not any("--workers" in line for line in lines)


def test_every_malformed_setting_is_reported_at_once() -> None:
    env = {"AR_WORKERS": "0", "AR_LOG_LEVEL": CANARY, "AR_GATEWAY_BIND": CANARY,
           "AR_WEBHOOK_SECRET": "x"}  # fmt: skip
    lines = problems(environ=env)
    assert {line.split()[1] for line in lines} == {
        "AR_WORKERS", "AR_LOG_LEVEL", "AR_GATEWAY_BIND", "AR_WEBHOOK_SECRET"
    }  # fmt: skip
    assert not any(CANARY[:20] in line for line in lines)


def test_missing_gateway_settings_are_all_named_at_once() -> None:
    with pytest.raises(SettingsError) as err:
        validate_for_gateway(load_settings(environ={"AR_FORGEJO_URL": "https://f.internal"}))
    assert [line.split()[1] for line in err.value.problems] == [
        "AR_FORGEJO_TOKEN",
        "AR_WEBHOOK_SECRET",
    ]


def test_the_example_forge_address_is_refused_by_the_gateway() -> None:
    settings = load_settings(environ={**STRONG, "AR_FORGEJO_URL": "https://forgejo.example.org"})
    with pytest.raises(SettingsError, match=r"AR_FORGEJO_URL.*example address"):
        validate_for_gateway(settings)


# ---- unknown names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("AR_FORGEJO_ULR", "AR_FORGEJO_URL"),
        ("AR_LOG_LEVLE", "AR_LOG_LEVEL"),
        ("AR_WORKRES", "AR_WORKERS"),
        ("AR_WEBHOOK_SECERT", "AR_WEBHOOK_SECRET"),
    ],
)
def test_an_unknown_variable_is_refused_with_the_nearest_name(name: str, suggestion: str) -> None:
    (line,) = problems(environ={name: CANARY})
    assert line == (
        f"environment variable {name} is not a known setting; did you mean {suggestion}?"
    )


def test_a_misspelt_url_is_reported_as_a_typo_not_as_missing(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "a.env", {**STRONG, "AR_FORGEJO_ULR": "https://x.test"})
    env_file.write_text(
        env_file.read_text().replace("AR_FORGEJO_URL=https://forge.internal.test\n", "")
    )
    lines = problems(environ={}, env_file=env_file)
    assert lines == [
        f"--env-file {env_file} line 3: AR_FORGEJO_ULR is not a known setting; "
        "did you mean AR_FORGEJO_URL?"
    ]


def test_unknown_env_file_keys_are_refused_and_internal_names_are_not(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "a.env", {"PYTHONPATH": "/x", "ar_workers": "2"})
    lines = problems(environ={"AR_GIT_TOKEN": CANARY}, env_file=env_file)
    assert lines[0].endswith("line 1: PYTHONPATH is not a known setting")
    assert lines[1].endswith("line 2: ar_workers is not a known setting; did you mean AR_WORKERS?")
    assert len(lines) == 2


def test_the_single_files_unpack_cache_is_tolerated_in_the_environment_only(
    tmp_path: Path,
) -> None:
    # Read by the single file's script before the program runs (docs/RELEASE.md).
    env_file = write_env(tmp_path / "a.env", {**STRONG, "AR_UNPACK_CACHE": "/var/cache/x"})
    lines = problems(environ={"AR_UNPACK_CACHE": "/var/cache/auto-review"}, env_file=env_file)
    assert lines == [f"--env-file {env_file} line {len(STRONG) + 1}: AR_UNPACK_CACHE is not a "
                     "known setting"]  # fmt: skip


# ---- env file permissions -----------------------------------------------------------------


def test_a_world_readable_env_file_with_secrets_is_refused(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "a.env", STRONG, mode=0o644)
    (line,) = problems(environ={}, env_file=env_file)
    assert "mode 0644" in line and "readable by group or others" in line
    assert "AR_FORGEJO_TOKEN, AR_WEBHOOK_SECRET" in line
    assert f"chmod 600 {env_file}" in line and CANARY not in line
    write_env(env_file, STRONG, mode=0o640)
    assert problems(environ={}, env_file=env_file)
    env_file.chmod(0o600)
    assert load_settings(environ={}, env_file=env_file).webhook_secret is not None


def test_a_readable_env_file_without_secrets_is_accepted(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "a.env", {"AR_WORKERS": "3", "AR_WEBHOOK_SECRET": ""}, 0o644)
    assert load_settings(environ={}, env_file=env_file).workers == 3


def test_an_env_file_others_can_write_is_refused_even_without_secrets(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "a.env", {"AR_GATEWAY_BARE": "true"}, 0o666)
    (line,) = problems(environ={}, env_file=env_file)
    assert "writable by group or others" in line


def test_the_insecure_env_file_opt_in_is_loudly_warned(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "a.env", STRONG, mode=0o644)
    warnings: list[str] = []
    settings = load_settings(
        environ={}, env_file=env_file, allow_insecure_env_file=True, warn=warnings.append
    )
    assert settings.webhook_secret is not None
    assert len(warnings) == 1 and warnings[0].startswith("WARNING:")
    assert "--allow-insecure-env-file" in warnings[0] and CANARY not in warnings[0]


def test_a_plain_http_forge_is_a_start_up_warning_not_a_refusal() -> None:
    plain = load_settings(environ={**STRONG, "AR_FORGEJO_URL": "http://127.0.0.1:3000"})
    validate_for_gateway(plain)  # accepted: webhooks and chat work over plain http
    (warning,) = gateway_warnings(plain)
    assert "AR_FORGEJO_URL is plain http" in warning and "https" in warning
    assert gateway_warnings(load_settings(environ=STRONG)) == []
