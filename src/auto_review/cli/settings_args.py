"""Command-line flags generated from the settings model.

Each command adds the flags of the settings it reads (and only those), each with a one-line
description, its ``AR_*`` variable and its default. Secrets have no flag: they are listed
in the help as environment-only, since a flag would put them on the command line, where
every local user can read them in /proc.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from auto_review.config import (
    SECRET_FIELDS,
    SETTINGS_BY_NAME,
    Settings,
    SettingsError,
    env_name,
    flag_name,
    load_settings,
)

FLAG_EXCLUDED = SECRET_FIELDS

# The settings each command reads (besides the gateway, which reads them all).
FORGE_SETTINGS = (
    "forgejo_url",
    "forgejo_token",
    "github_app_id",
    "github_app_private_key",
    "github_api_url",
    "bot_login",
    "http_timeout_seconds",
)
LLM_SETTINGS = (
    "llm_base_url",
    "llm_api_key",
    "llm_reasoning_model",
    "llm_cheap_model",
    "llm_timeout_seconds",
    "llm_max_retries",
    "llm_response_format",
    "llm_context_tokens",
    "llm_reasoning_price",
    "llm_cheap_price",
)
# A command that talks to the LLM alone (`review diff`, `bench run`): the model, the CA
# that its server's certificate may need, and the log level. One list, so commands agree.
LLM_COMMAND_SETTINGS = (*LLM_SETTINGS, "ca_file", "log_level")
REVIEW_ONCE_SETTINGS = (
    *FORGE_SETTINGS,
    *LLM_SETTINGS,
    "state_dir",
    "review_max_diff_bytes",
    "review_max_clone_bytes",
    "ca_file",
    "log_level",
)
# Where the state is: the state directory, or PostgreSQL (`ops migrate`).
DATABASE_SETTINGS = (
    "state_dir",
    "database_url",
    "database_password_file",
    "database_ca_file",
    "database_statement_timeout_seconds",
)
DOCTOR_SETTINGS = (
    "gateway_bare",
    "gateway_external_isolation",
    "oci_runtime",
    "isolation_require",
    *FORGE_SETTINGS,
    "webhook_secret",
    "github_webhook_secret",
    "ci_review_token",
    *LLM_SETTINGS,
    "state_dir",
    "ca_file",
    "database_url",
    "database_password_file",
    "database_ca_file",
)

_FLAGS_KEY = "_setting_flags"


def setting_help(name: str) -> str:
    spec = SETTINGS_BY_NAME[name]
    return f"{spec.help} [env {env_name(name)}; default: {spec.default_text()}]".replace("%", "%%")


def add_settings_arguments(
    parser: argparse.ArgumentParser, fields: Iterable[str] | None = None
) -> None:
    """Add one flag per non-secret setting of ``fields`` (default None = not given, so the
    environment applies), list the secrets among them as environment-only, and add
    ``--env-file`` and ``--allow-insecure-env-file``."""
    names = list(fields) if fields is not None else Settings.field_names()
    group = parser.add_argument_group(
        "settings", "Each flag wins over its AR_* variable, which wins over --env-file."
    )
    flags: dict[str, str] = {}
    for name in names:
        if name in FLAG_EXCLUDED:
            continue
        spec = SETTINGS_BY_NAME[name]
        flags[name] = flag_name(name)
        if spec.switch:
            group.add_argument(
                flag_name(name),
                dest=name,
                action="store_const",
                const=True,
                default=None,
                help=setting_help(name),
            )
        else:
            group.add_argument(
                flag_name(name),
                dest=name,
                default=None,
                metavar=spec.metavar,
                help=setting_help(name),
            )
    secrets = [name for name in names if name in FLAG_EXCLUDED]
    if secrets:
        listed = "; ".join(f"{env_name(n)}: {SETTINGS_BY_NAME[n].help}" for n in secrets)
        parser.add_argument_group(
            "secrets (environment or --env-file only, never a flag)", listed.replace("%", "%%")
        )
    group.add_argument(
        "--env-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="read AR_* settings from this KEY=VALUE file; it must not be readable by group "
        "or others when it holds secrets (chmod 600) [default: none]",
    )
    group.add_argument(
        "--allow-insecure-env-file",
        action="store_true",
        help="accept an env file other users can read or write (warned at start-up; "
        "for special cases only) [default: off]",
    )
    parser.set_defaults(**{_FLAGS_KEY: flags})


def flags_from_namespace(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None for those not given)."""
    return {
        name: getattr(namespace, name)
        for name in Settings.field_names()
        if name not in FLAG_EXCLUDED and hasattr(namespace, name)
    }


def settings_from_namespace(namespace: argparse.Namespace) -> Settings:
    """Settings from this command's flags, the environment and ``--env-file``; a
    :class:`SettingsError` names only flags this command has."""
    return load_settings(
        flags_from_namespace(namespace),
        env_file=namespace.env_file,
        flag_names=flag_names_of(namespace),
        allow_insecure_env_file=bool(getattr(namespace, "allow_insecure_env_file", False)),
    )


def flag_names_of(namespace: argparse.Namespace) -> dict[str, str]:
    return dict(getattr(namespace, _FLAGS_KEY, {}))


def load_command_settings(namespace: argparse.Namespace, prefix: str) -> Settings | None:
    """The command's settings with their secrets registered for redaction; None (after one
    line per problem on stderr) when they do not load."""
    from auto_review.wiring.redaction import install_secrets

    try:
        settings = settings_from_namespace(namespace)
    except SettingsError as exc:
        print_settings_error(prefix, exc)
        return None
    install_secrets(settings.secret_values())
    return settings


def print_settings_error(prefix: str, error: SettingsError) -> None:
    """One line per problem on stderr, redacted (a message never holds a value anyway)."""
    from auto_review.wiring.redaction import redact

    for line in error.problems:
        print(f"{prefix}: {redact(line)}", file=sys.stderr)
