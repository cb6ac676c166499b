"""`auto-review secrets generate`: strong values for the secrets auto-review itself checks.

  auto-review secrets generate [--env-file FILE [--template FILE]] [--github] [--no-ci-token]

Makes ``AR_WEBHOOK_SECRET`` and ``AR_CI_REVIEW_TOKEN`` (and with ``--github``
``AR_GITHUB_WEBHOOK_SECRET``): 32 random bytes each, URL-safe base64 (43 characters).
Without ``--env-file`` they are printed once on stdout, as ``KEY=VALUE`` lines. With it they
are written to FILE only (nothing secret is printed):

- FILE does not exist: it is created with mode 0600, holding ``--template``'s lines (the
  empty ``KEY=`` lines of the generated keys filled in) or just the generated keys.
- FILE exists (no ``--template``): a key it already holds with a value is never replaced
  (the command refuses and changes nothing); an empty ``KEY=`` line is filled, a missing
  key appended. The file must not be readable or writable by group or others.

Forge tokens are not generated here: the forge issues them. Exit status: 0 done, 2 refused.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

from auto_review.cli.parsing import ArgumentParser
from auto_review.config import MIN_SECRET_LENGTH, SettingsError, parse_env_file, secret_weakness

EXIT_OK = 0
EXIT_REFUSED = 2
SECRET_BYTES = 32


class Refused(Exception):
    """One line for stderr; nothing was written."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="auto-review secrets",
        description="Generate strong secrets for auto-review's own settings.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate = commands.add_parser(
        "generate",
        help="make a webhook secret and a CI token, printed once or written to an env file",
        description=__doc__.split("\n\n")[1].strip() if __doc__ else None,
    )
    generate.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="write the secrets to FILE (created 0600; an existing key is never replaced) "
        "instead of printing them [default: print on stdout]",
    )
    generate.add_argument(
        "--template",
        type=Path,
        metavar="FILE",
        help="create --env-file as a copy of FILE (e.g. examples/auto-review.env) with the "
        "secrets filled in; --env-file must not exist [default: none]",
    )
    generate.add_argument(
        "--github",
        action="store_true",
        help="also make AR_GITHUB_WEBHOOK_SECRET [default: off]",
    )
    generate.add_argument(
        "--no-ci-token",
        action="store_true",
        help="do not make AR_CI_REVIEW_TOKEN (POST /reviews/ci stays off) [default: made]",
    )
    return parser


def new_secret() -> str:
    while True:  # a weak draw is astronomically unlikely; never hand one out anyway
        value = secrets.token_urlsafe(SECRET_BYTES)
        if secret_weakness(value, MIN_SECRET_LENGTH) is None:
            return value


def wanted_keys(namespace: argparse.Namespace) -> list[str]:
    keys = ["AR_WEBHOOK_SECRET"]
    if namespace.github:
        keys.append("AR_GITHUB_WEBHOOK_SECRET")
    if not namespace.no_ci_token:
        keys.append("AR_CI_REVIEW_TOKEN")
    return keys


def filled(lines: list[str], values: dict[str, str]) -> list[str]:
    """``lines`` with each generated key's empty line filled and the missing keys appended."""
    out: list[str] = []
    placed: set[str] = set()
    for line in lines:
        match = re.fullmatch(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*", line)
        if match and match[1] in values and match[1] not in placed:
            out.append(f"{match[1]}={values[match[1]]}")
            placed.add(match[1])
        else:
            out.append(line)
    missing = [key for key in values if key not in placed]
    if missing:
        out += ["", "# made by `auto-review secrets generate`"] if out else []
        out += [f"{key}={values[key]}" for key in missing]
    return out


def write_env_file(target: Path, template: Path | None, values: dict[str, str]) -> None:
    if template is not None:
        if target.exists() or target.is_symlink():
            raise Refused(f"--env-file {target} exists; refusing to overwrite it")
        try:
            lines = template.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise Refused(f"--template {template} cannot be read: {exc}") from None
        create(target, filled(lines, values))
        return
    if not target.exists() and not target.is_symlink():
        create(target, filled([], values))
        return
    check_writable(target, list(values))
    lines = target.read_text(encoding="utf-8").splitlines()
    replace(target, filled(lines, values))


def check_writable(target: Path, keys: list[str]) -> None:
    """Refuse unless ``keys`` may be added to ``target``: absent (it will be created 0600),
    or a regular 0600 file of this user that sets none of them yet."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_file():
        raise Refused(f"--env-file {target} is not a regular file")
    try:
        current = parse_env_file(target)
    except SettingsError as exc:
        raise Refused(str(exc)) from None
    if current.mode & 0o077:
        raise Refused(
            f"--env-file {target} (mode {current.mode:04o}) is open to group or others; "
            f"run `chmod 600 {target}` first"
        )
    if current.owner != os.geteuid():
        raise Refused(f"--env-file {target} belongs to another user")
    taken = [key for key in keys if current.values.get(key)]
    if taken:
        raise Refused(
            f"--env-file {target} already sets {', '.join(taken)}; refusing to replace it "
            "(remove the line first to rotate it)"
        )


def create(target: Path, lines: list[str]) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise Refused(f"--env-file {target} exists; refusing to overwrite it") from None
    except OSError as exc:
        raise Refused(f"--env-file {target} cannot be created: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # whatever the umask
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def replace(target: Path, lines: list[str]) -> None:
    """Rewrite an existing env file atomically (same directory, 0600, then rename)."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def generate(namespace: argparse.Namespace) -> int:
    if namespace.template is not None and namespace.env_file is None:
        raise Refused("--template needs --env-file FILE (the file to create)")
    values = {key: new_secret() for key in wanted_keys(namespace)}
    if namespace.env_file is None:
        print(
            "# shown once: put these in your env file (mode 0600); the forge's webhook "
            "needs the same AR_WEBHOOK_SECRET",
            file=sys.stderr,
        )
        for key, value in values.items():
            print(f"{key}={value}")
        return EXIT_OK
    write_env_file(namespace.env_file, namespace.template, values)
    print(f"wrote {', '.join(values)} to {namespace.env_file} (mode 0600)")
    print("the forge's webhook needs the same AR_WEBHOOK_SECRET: copy it from that file")
    return EXIT_OK


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    try:
        return generate(namespace)
    except Refused as exc:
        print(f"auto-review secrets {namespace.command}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
