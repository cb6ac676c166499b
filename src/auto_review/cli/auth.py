"""`auto-review auth init`: mint the bot account's Forgejo/Gitea token.

  auto-review auth init --forgejo-url URL --username NAME [--token-name NAME]
                        [--password-stdin] [--env-file FILE --write-token]

Logs in as the bot account with its password (asked at the terminal, or one line read from
standard input with ``--password-stdin``; never an argument) and creates an access token
with the scopes the bot needs (``write:repository``, ``write:issue``, ``read:user``) through
``POST /api/v1/users/{NAME}/tokens``. The token is printed once on stdout, or with
``--write-token`` written as ``AR_FORGEJO_TOKEN`` into ``--env-file`` (which must be 0600
and must not set it already: that is checked before the token is made). An account with
two-factor authentication cannot use this; create the token in the forge's settings.

Exit status: 0 done; 2 bad usage, settings or env file; 3 the forge refused or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from pathlib import Path

from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import (
    add_settings_arguments,
    load_command_settings,
)
from auto_review.config import Settings
from auto_review.wiring.redaction import install_secrets, redact

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 3
SETTINGS = ("forgejo_url", "ca_file", "http_timeout_seconds")
TOKEN_KEY = "AR_FORGEJO_TOKEN"  # noqa: S105 - the name of a setting, not a secret
_LOGIN = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


class UsageError(Exception):
    """One line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="auto-review auth", description="Bot token bootstrap for Forgejo/Gitea."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="mint the bot account's access token with its password")
    init.add_argument(
        "--username", required=True, metavar="NAME", help="the bot account's login (required)"
    )
    init.add_argument(
        "--token-name",
        default="auto-review",
        metavar="NAME",
        help="the token's name in the forge (unique per account) [default: auto-review]",
    )
    init.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from stdin [default: ask at the terminal]",
    )
    init.add_argument(
        "--write-token",
        action="store_true",
        help=f"write the token as {TOKEN_KEY} into --env-file instead of printing it "
        "[default: print it once]",
    )
    add_settings_arguments(init, SETTINGS)
    return parser


def read_password(namespace: argparse.Namespace, url: str) -> str:
    if namespace.password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password of {namespace.username} on {url}: ")
    else:
        raise UsageError("no terminal to ask the password at: pass --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    return password


def check_target(path: Path) -> None:
    """Refuse before the token exists, so a made token is never left without a home."""
    from auto_review.cli.secrets_cmd import Refused, check_writable

    try:
        check_writable(path, [TOKEN_KEY])
    except Refused as exc:
        raise UsageError(str(exc)) from None


async def mint(namespace: argparse.Namespace, settings: Settings, password: str) -> str:
    from auto_review.hosts.forgejo_admin import BOT_TOKEN_SCOPES
    from auto_review.wiring.clients import forgejo_admin

    async with forgejo_admin(settings) as admin:
        return await admin.create_token(
            namespace.username, password, name=namespace.token_name, scopes=BOT_TOKEN_SCOPES
        )


def init(namespace: argparse.Namespace) -> int:
    from auto_review.hosts.base import HostError
    from auto_review.wiring.tls import TrustError

    prefix = "auto-review auth init"
    settings = load_command_settings(namespace, prefix)
    if settings is None:
        return EXIT_USAGE
    try:
        if not _LOGIN.fullmatch(namespace.username):
            raise UsageError("--username must be an account name")
        if settings.forgejo_url is None:
            raise UsageError("setting AR_FORGEJO_URL (--forgejo-url) is required")
        if namespace.write_token:
            if namespace.env_file is None:
                raise UsageError("--write-token needs --env-file FILE")
            check_target(namespace.env_file)
        password = read_password(namespace, settings.forgejo_url)
        install_secrets([password, *settings.secret_values()])
        token = asyncio.run(mint(namespace, settings, password))
    except (UsageError, TrustError) as exc:
        print(f"{prefix}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except HostError as exc:
        print(f"{prefix}: the forge refused or failed: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    install_secrets([token, password, *settings.secret_values()])
    if not namespace.write_token:
        print(f"{TOKEN_KEY}={token}")
        print("# shown once: put it in your env file (mode 0600)", file=sys.stderr)
        return EXIT_OK
    from auto_review.cli.secrets_cmd import Refused, write_env_file

    try:
        write_env_file(namespace.env_file, None, {TOKEN_KEY: token})
    except Refused as exc:
        print(
            f"{prefix}: {exc}; the token {namespace.token_name!r} was created: delete it in "
            f"the forge's settings of {namespace.username} and run again",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(f"wrote {TOKEN_KEY} ({namespace.token_name!r} of {namespace.username}) to "
          f"{namespace.env_file}")  # fmt: skip
    return EXIT_OK


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    return init(namespace)
