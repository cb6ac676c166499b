"""`auto-review learnings`: list and forget the learnings stored for a repository.

``learnings list --repo [host:]OWNER/NAME [--json]``  id, time, author and text of each.
``learnings forget --repo [host:]OWNER/NAME ID``      delete one (exit 1 when the repository
    has no learning with that id).

The learnings are where `auto-review history` finds the history (PostgreSQL with
``AR_DATABASE_URL``, else the state directory).

Learnings are written by people in PR comments (``remember ...``): untrusted text. Control
characters are shown escaped, so a learning cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime

from auto_review.cli.history import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    add_state_arguments,
    guarded,
    open_existing_store,
    repo_key_argument,
)
from auto_review.cli.parsing import ArgumentParser
from auto_review.store.base import Learning

# C0/C1 controls (ESC included), DEL, and bidi overrides/isolates
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="auto-review learnings", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the learnings stored for a repository")
    listing.add_argument(
        "--repo",
        required=True,
        type=repo_key_argument,
        metavar="[HOST:]OWNER/NAME",
        help="the repository; HOST is forgejo (the default) or github (required)",
    )
    listing.add_argument("--json", action="store_true", help="one JSON document [default: text]")
    add_state_arguments(listing)
    forget = commands.add_parser("forget", help="delete one learning of a repository")
    forget.add_argument(
        "--repo",
        required=True,
        type=repo_key_argument,
        metavar="[HOST:]OWNER/NAME",
        help="the repository; HOST is forgejo (the default) or github (required)",
    )
    forget.add_argument("id", type=_learning_id, metavar="ID", help="the learning's id")
    add_state_arguments(forget)
    return parser


def list_learnings(namespace: argparse.Namespace) -> int:
    store = open_existing_store(namespace)
    items: list[Learning] = []
    if store is not None:
        try:
            items = store.learnings(namespace.repo)
        finally:
            store.close()
    if namespace.json:
        document = {
            "repo": namespace.repo,
            "learnings": [
                {
                    "id": item.id,
                    "author": item.author,
                    "created_at": _timestamp(item.created_at),
                    "text": item.text,
                }
                for item in items
            ],
        }
        print(json.dumps(document, indent=2))  # JSON escapes control characters itself
        return EXIT_OK
    if not items:
        print(f"no learnings stored for {namespace.repo}")
        return EXIT_OK
    for item in items:
        print(
            f"{item.id:>6}  {_timestamp(item.created_at)}  {printable(item.author)}: "
            f"{printable(item.text)}"
        )
    return EXIT_OK


def forget_learning(namespace: argparse.Namespace) -> int:
    store = open_existing_store(namespace)
    removed = False
    if store is not None:
        try:
            removed = store.forget_learning(namespace.repo, namespace.id)
        finally:
            store.close()
    if not removed:
        print(f"{namespace.repo} has no learning {namespace.id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(f"forgot learning {namespace.id} of {namespace.repo}")
    return EXIT_OK


def main(argv: list[str]) -> int:
    namespace = build_parser().parse_args(argv)
    handler = list_learnings if namespace.command == "list" else forget_learning
    return guarded("learnings", handler, namespace)


def printable(text: str) -> str:
    """Untrusted text for a terminal: control and bidi characters as ``\\uXXXX``."""
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _learning_id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a learning id (a positive integer)") from None
    if number < 1 or number > 2**63 - 1:
        raise argparse.ArgumentTypeError("must be a learning id (a positive integer)")
    return number
