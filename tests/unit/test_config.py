"""Settings: env twins, flag precedence, one-line errors that never show values."""

from __future__ import annotations

from pathlib import Path

import pytest

from auto_review.config import (
    Settings,
    SettingsError,
    env_name,
    flag_name,
    load_settings,
    read_env_file,
    validate_for_gateway,
)

CANARY = "canary-9f8e7d6c5b4a39281706f5e4d3c2b1a0-secret"
GOOD = {
    "AR_FORGEJO_URL": "http://127.0.0.1:3000/",
    "AR_FORGEJO_TOKEN": CANARY + "-token",
    "AR_WEBHOOK_SECRET": CANARY,
}


def test_every_setting_has_an_ar_env_twin_and_design_names_exist() -> None:
    design_names = {
        "AR_GATEWAY_BIND",
        "AR_STATE_DIR",
        "AR_GATEWAY_BARE",
        "AR_GATEWAY_EXTERNAL_ISOLATION",
        "AR_OCI_RUNTIME",
        "AR_FORGEJO_URL",
        "AR_FORGEJO_TOKEN",
        "AR_WEBHOOK_SECRET",
        "AR_GITHUB_APP_ID",
        "AR_GITHUB_APP_PRIVATE_KEY",
        "AR_GITHUB_WEBHOOK_SECRET",
        "AR_GITHUB_API_URL",
        "AR_CI_REVIEW_TOKEN",
        "AR_BOT_LOGIN",
        "AR_LLM_BASE_URL",
        "AR_LLM_API_KEY",
        "AR_LLM_REASONING_MODEL",
        "AR_LLM_CHEAP_MODEL",
    }
    twins = {env_name(name) for name in Settings.field_names()}
    assert design_names <= twins
    assert flag_name("gateway_bind") == "--bind"
    assert flag_name("gateway_bare") == "--bare"


def test_env_values_are_parsed_and_flags_win() -> None:
    env = {**GOOD, "AR_WORKERS": "7", "AR_GATEWAY_BIND": "127.0.0.1:9000"}
    settings = load_settings({"gateway_bind": "[::1]:9100"}, env)
    assert settings.workers == 7
    assert settings.gateway_bind == "[::1]:9100"
    assert settings.bind_host_port == ("::1", 9100)
    assert settings.forgejo_url == "http://127.0.0.1:3000"


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "auto-review.env"
    env_file.write_text(
        "# comment\nexport AR_WORKERS=3\nAR_BOT_LOGIN='review-bot'\nAR_LOG_FORMAT=text\n"
    )
    settings = load_settings({}, {**GOOD, "AR_LOG_FORMAT": "json"}, env_file=env_file)
    assert (settings.workers, settings.bot_login, settings.log_format) == (3, "review-bot", "json")


def test_env_file_bad_line_names_line_not_content(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text(f"AR_WORKERS=2\n{CANARY}\n")
    with pytest.raises(SettingsError) as err:
        read_env_file(env_file)
    assert "line 2" in str(err.value)
    assert CANARY not in str(err.value)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"AR_WEBHOOK_SECRET": CANARY[:20]}, "AR_WEBHOOK_SECRET"),
        ({"AR_CI_REVIEW_TOKEN": CANARY[:31]}, "AR_CI_REVIEW_TOKEN"),
        ({"AR_GATEWAY_BARE": CANARY}, "AR_GATEWAY_BARE"),
        ({"AR_FORGEJO_URL": f"https://bot:{CANARY}@forge.example"}, "AR_FORGEJO_URL"),
        ({"AR_LLM_BASE_URL": CANARY}, "AR_LLM_BASE_URL"),
        ({"AR_WORKERS": CANARY}, "AR_WORKERS"),
        ({"AR_GATEWAY_BIND": CANARY}, "AR_GATEWAY_BIND"),
        ({"AR_GITHUB_APP_PRIVATE_KEY": CANARY}, "AR_GITHUB_APP_PRIVATE_KEY"),
        ({"AR_GITHUB_APP_ID": CANARY}, "AR_GITHUB_APP_ID"),
        ({"AR_POLL_REPOS": f"a/b,{CANARY} x"}, "AR_POLL_REPOS"),
        ({"AR_LOG_LEVEL": CANARY}, "AR_LOG_LEVEL"),
    ],
)
def test_malformed_setting_names_it_without_value(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({}, {**GOOD, **env})
    message = str(err.value)
    assert setting in message
    assert CANARY[:20] not in message
    assert "\n" not in message


def test_bare_accepts_true_false_spellings() -> None:
    for word, expected in [("true", True), ("FALSE", False), ("1", True), ("off", False)]:
        assert load_settings({}, {"AR_GATEWAY_BARE": word}).gateway_bare is expected


def test_gateway_requires_a_forge_and_its_secret() -> None:
    with pytest.raises(SettingsError, match="AR_FORGEJO_URL"):
        validate_for_gateway(load_settings({}, {}))
    with pytest.raises(SettingsError, match="AR_WEBHOOK_SECRET"):
        validate_for_gateway(
            load_settings({}, {k: v for k, v in GOOD.items() if k != "AR_WEBHOOK_SECRET"})
        )
    with pytest.raises(SettingsError, match="AR_GITHUB_APP_PRIVATE_KEY"):
        validate_for_gateway(load_settings({}, {"AR_GITHUB_APP_ID": "12345"}))
    validate_for_gateway(load_settings({}, GOOD))


def test_public_view_and_repr_hide_secrets() -> None:
    settings = load_settings({}, {**GOOD, "AR_LLM_API_KEY": CANARY + "-llm"})
    view = settings.public_view()
    assert view["webhook_secret"] == "set"
    assert view["ci_review_token"] == "unset"
    assert CANARY not in repr(view)
    assert CANARY not in repr(settings)
    assert sorted(settings.secret_values()) == sorted([CANARY, CANARY + "-token", CANARY + "-llm"])


def test_unknown_flag_is_rejected() -> None:
    with pytest.raises(SettingsError, match="not a known setting"):
        load_settings({"no_such_setting": "x"}, {})


def test_a_webhook_secret_alone_does_not_open_a_forge() -> None:
    secret = {"AR_GITHUB_WEBHOOK_SECRET": CANARY}
    with pytest.raises(SettingsError, match="AR_GITHUB_APP_ID"):
        validate_for_gateway(load_settings({}, {**GOOD, **secret}))
    with pytest.raises(SettingsError, match="AR_FORGEJO_URL"):
        validate_for_gateway(load_settings({}, {"AR_WEBHOOK_SECRET": CANARY}))
