"""`auto-review config validate [--strict] FILE`: check a repository's .auto_review.yaml.

Prints ``OK`` (after any warnings) or one line per problem. Exit status: 0 valid, 1 invalid
(with ``--strict``, unknown keys count as problems), 2 usage error or unreadable file.
``FILE`` may be ``-`` for standard input.
"""

from __future__ import annotations

import argparse
import sys

from auto_review.cli.parsing import ArgumentParser
from auto_review.review.policy.repo_config import (
    CONFIG_FILE_NAME,
    MAX_CONFIG_BYTES,
    RepoConfigError,
    parse_repo_config,
)

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="auto-review config", description=f"Check a repository's {CONFIG_FILE_NAME}."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate",
        help=f"validate a {CONFIG_FILE_NAME} file",
        description="Print OK or each problem; exit 0 valid, 1 invalid, 2 unreadable.",
    )
    validate.add_argument(
        "--strict", action="store_true", help="unknown keys are errors [default: warnings]"
    )
    validate.add_argument("file", metavar="FILE", help="the file to check, or - for stdin")
    return parser


def _read(name: str) -> bytes:
    # One byte over the cap is enough for the parser to report the file as too large.
    if name == "-":
        return sys.stdin.buffer.read(MAX_CONFIG_BYTES + 1)
    with open(name, "rb") as handle:
        return handle.read(MAX_CONFIG_BYTES + 1)


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help exits 0, a usage error 2
        return int(exc.code or 0)
    label = "<stdin>" if args.file == "-" else args.file
    try:
        data = _read(args.file)
    except OSError as exc:
        print(f"auto-review config validate: cannot read {label}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = parse_repo_config(data, strict=args.strict)
    except RepoConfigError as exc:
        for problem in exc.problems:
            print(f"{label}: {problem}")
        for warning in exc.warnings:  # shown with the errors too, not only on success
            print(f"{label}: warning: {warning}")
        return EXIT_INVALID
    for warning in config.warnings:
        print(f"{label}: warning: {warning}")
    print("OK")
    return EXIT_OK
