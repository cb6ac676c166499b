"""Every command of `auto-review`, walked from the top: each `--help` exits 0 and teaches.

Each flag has a one-line description with its default (or says it is required); no flag
takes a secret; a command shows only its own flags.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re

import pytest

from auto_review.cli.main import GROUPS, main, usage
from auto_review.config import SECRET_FIELDS, env_name, flag_name

SECRET_FLAGS = {flag_name(field) for field in SECRET_FIELDS}


def run_help(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*argv, "--help"])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()


def argparse_parser(group: str) -> argparse.ArgumentParser | None:
    module = importlib.import_module(GROUPS[group][0])
    build = getattr(module, "build_parser", None)
    return build() if build is not None else None


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_tree() -> list[tuple[str, ...]]:
    """(group,) and (group, subcommand) for every command the top-level help advertises."""
    commands: list[tuple[str, ...]] = []
    advertised = re.findall(r"^  (\S+)", usage().split("commands:")[1], re.MULTILINE)
    assert set(advertised) == set(GROUPS)
    for group in advertised:
        commands.append((group,))
        parser = argparse_parser(group)
        if parser is not None:
            commands += [(group, name) for name in subparsers(parser)]
        else:  # a hand-written usage (oci): one line per subcommand after the first
            _, text = run_help(group)
            commands += [(group, m) for m in re.findall(r"^  ([a-z]+)\b", text, re.MULTILINE)]
    return commands


COMMANDS = command_tree()


def test_the_tree_includes_every_group_and_the_oci_runtime() -> None:
    groups = {command[0] for command in COMMANDS}
    assert groups == set(GROUPS)
    assert ("oci", "run") in COMMANDS and ("oci", "spec") in COMMANDS
    assert ("review", "once") in COMMANDS and ("secrets", "generate") in COMMANDS


def test_top_level_help_exits_zero() -> None:
    assert run_help()[0] == 0
    assert main([]) == 2  # no command: usage on stdout, a usage error


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_exits_zero_and_shows_no_secret_flag(command: tuple[str, ...]) -> None:
    code, text = run_help(*command)
    assert code == 0, text
    assert text.strip()
    for flag in SECRET_FLAGS:
        assert not re.search(re.escape(flag) + r"\b", text), flag


def argparse_commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for group in GROUPS:
        parser = argparse_parser(group)
        if parser is None:
            continue
        children = subparsers(parser)
        found += [((group, name), child) for name, child in children.items()]
        if not children:
            found.append(((group,), parser))
    return found


@pytest.mark.parametrize(
    ("command", "parser"),
    argparse_commands(),
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else "",
)
def test_every_flag_has_a_description_and_a_default(
    command: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        text = (action.help or "").lower()
        assert text, f"{command}: {action.option_strings} has no description"
        assert "default" in text or "required" in text, f"{command}: {action.option_strings}"


GATEWAY_ONLY = ["--bind", "--workers", "--rate-limit-burst", "--max-body-bytes", "--bare"]


@pytest.mark.parametrize("command", [("review", "once"), ("review", "diff"), ("ops", "doctor"),
                                     ("history", "purge"), ("bench", "run")])  # fmt: skip
def test_commands_show_only_their_own_flags(command: tuple[str, ...]) -> None:
    _, text = run_help(*command)
    shown = [flag for flag in GATEWAY_ONLY if re.search(re.escape(flag) + r"\b", text)]
    expected = ["--bare"] if command == ("ops", "doctor") else []
    assert shown == expected


def test_gateway_help_lists_secrets_as_environment_only() -> None:
    _, text = run_help("gateway")
    section = text.split("secrets (environment or --env-file only, never a flag)")[1]
    for field in SECRET_FIELDS:
        assert env_name(field) in section
    assert "[env AR_GATEWAY_BIND; default: 127.0.0.1:8080]" in " ".join(text.split())
