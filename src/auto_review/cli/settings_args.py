"""Command-line flags generated from the settings model, so every setting has a flag."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from auto_review.config import SECRET_FIELDS, SETTINGS_BY_NAME, Settings, env_name, flag_name

# Secrets are accepted from the environment or an env file only: a flag would put them on
# the command line, where every local user can read them in /proc.
FLAG_EXCLUDED = SECRET_FIELDS


def add_settings_arguments(
    parser: argparse.ArgumentParser, fields: Iterable[str] | None = None
) -> None:
    """Add one flag per setting (default None = not given, so the environment applies)."""
    names = list(fields) if fields is not None else Settings.field_names()
    group = parser.add_argument_group("settings (each also read from its AR_* variable)")
    for name in names:
        if name in FLAG_EXCLUDED:
            continue
        help_text = f"env {env_name(name)}"
        if SETTINGS_BY_NAME[name].switch:
            group.add_argument(
                flag_name(name),
                dest=name,
                action="store_const",
                const=True,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                flag_name(name), dest=name, default=None, metavar="VALUE", help=help_text
            )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="read AR_* settings from this KEY=VALUE file (the environment wins over it)",
    )


def flags_from_namespace(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None for those not given)."""
    return {
        name: getattr(namespace, name)
        for name in Settings.field_names()
        if name not in FLAG_EXCLUDED and hasattr(namespace, name)
    }
