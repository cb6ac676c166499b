"""A repository's ``.auto_review.yaml``: parsed as hostile input into a frozen RepoConfig.

The file is read from the pull request's BASE commit (``config_ref``), never from its head,
so a pull request cannot loosen its own review (``ignore: ["**"]``, ``enabled: false``).

Parsing is bounded: the text is capped at ``MAX_CONFIG_BYTES``, YAML anchors and aliases are
refused outright (no "billion laughs" expansion), nesting depth is capped, and only PyYAML's
safe loader constructs values. Every problem names the key and the line it is on; values are
echoed through ``repr`` and shortened, so a hostile value cannot put control characters on an
operator's terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from auto_review.hosts.review_types import PullRequestDetails
from auto_review.review.policy.ignore_patterns import compile_ignore_pattern
from auto_review.review.stages.findings import Severity

CONFIG_FILE_NAME = ".auto_review.yaml"
MAX_CONFIG_BYTES = 64 * 1024
MAX_GUIDELINES_CHARS = 8000
MAX_PATTERNS = 200
MAX_PATTERN_CHARS = 256
MAX_LABELS = 50
MAX_LABEL_CHARS = 100
MAX_FILES_LIMIT = 10_000
MAX_DEPTH = 8
CONFIG_VERSION = 1


@dataclass(frozen=True, slots=True)
class RepoConfig:
    ignore: tuple[str, ...] = ()
    guidelines: str = ""
    severity_floor: Severity = Severity.MEDIUM
    max_files: int = 50
    skip_drafts: bool = True
    skip_labels: tuple[str, ...] = ("no-review", "skip-review")
    review_trivial: bool = False
    enabled: bool = True
    skip_authors: tuple[str, ...] = ()
    # Non-fatal problems (unknown keys) found while parsing; empty for the defaults.
    warnings: tuple[str, ...] = field(default=(), compare=False)


DEFAULT_REPO_CONFIG = RepoConfig()


class RepoConfigError(ValueError):
    """The file is not a valid config; ``problems`` holds one line per problem, and
    ``warnings`` the unknown keys found meanwhile (not problems unless strict)."""

    def __init__(self, problems: list[str], warnings: Sequence[str] = ()) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.warnings = tuple(warnings)


def config_ref(pr: PullRequestDetails) -> str:
    """The only ref the config may be read from: the base commit of the pull request.

    Its content was merged by someone with write access to the base branch; the head is
    whatever the PR author pushed."""
    return pr.base_sha


def parse_repo_config(text: bytes | str, *, strict: bool = False) -> RepoConfig:
    """Parse the file's text. Unknown keys are warnings (``RepoConfig.warnings``), errors
    when ``strict``; anything else wrong raises RepoConfigError listing every problem."""
    root = _compose(text)
    if root is None or root.tag == "tag:yaml.org,2002:null":
        return DEFAULT_REPO_CONFIG
    if not isinstance(root, yaml.MappingNode) or root.tag != "tag:yaml.org,2002:map":
        raise RepoConfigError([f"line {_line(root)}: the file must be a mapping of keys"])
    problems: list[str] = []
    warnings: list[str] = []
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        where = f"line {_line(key_node)}"
        if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
            problems.append(f"{where}: keys must be plain names")
            continue
        if key in seen:
            problems.append(f"{where}: {key} is given more than once")
            continue
        seen.add(key)
        checker = _CHECKERS.get(key)
        if checker is None:
            message = f"{where}: unknown key {_show(key)} (known: {', '.join(_CHECKERS)})"
            (problems if strict else warnings).append(message)
            continue
        try:
            value = _construct(value_node)
            values[key] = checker(key, value)
        except _Invalid as exc:
            problems.append(f"line {_line(value_node)}: {exc}")
    if problems:
        raise RepoConfigError(problems, warnings)
    values.pop("version", None)
    return RepoConfig(**values, warnings=tuple(warnings))


def repo_config_or_default(text: bytes | str | None) -> tuple[RepoConfig, list[str]]:
    """For the pipeline: the parsed config and its warnings, or the defaults and the
    problems when the file is invalid (failing closed: an unreadable config never turns a
    review off). ``None`` (no file at the base commit) gives the defaults."""
    if text is None:
        return DEFAULT_REPO_CONFIG, []
    try:
        config = parse_repo_config(text)
    except RepoConfigError as exc:
        return DEFAULT_REPO_CONFIG, [f"{CONFIG_FILE_NAME}: {p}" for p in exc.problems]
    return config, [f"{CONFIG_FILE_NAME}: {w}" for w in config.warnings]


# -- YAML: bounded composition -------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases and caps nesting depth."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                problem="anchors and aliases (& and *) are not allowed",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(
                    problem=f"nesting deeper than {MAX_DEPTH} levels",
                    problem_mark=event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(text: bytes | str) -> yaml.Node | None:
    if isinstance(text, bytes):
        if len(text) > MAX_CONFIG_BYTES:
            raise RepoConfigError([f"the file is over the {MAX_CONFIG_BYTES}-byte cap"])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RepoConfigError([f"the file is not UTF-8 (byte {exc.start})"]) from None
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise RepoConfigError([f"the file is over the {MAX_CONFIG_BYTES}-byte cap"])
    loader = _BoundedLoader(text.removeprefix("\ufeff"))
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise RepoConfigError([f"{where}{exc.problem or 'invalid YAML'}"]) from None
    except yaml.YAMLError as exc:
        raise RepoConfigError([f"invalid YAML: {type(exc).__name__}"]) from None
    finally:
        loader.dispose()


def _construct(node: yaml.Node) -> Any:
    loader = _BoundedLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "value cannot be read"
        raise _Invalid(str(problem)) from None
    finally:
        loader.dispose()


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


# -- per-key checks --------------------------------------------------------------------------


class _Invalid(ValueError):
    pass


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{key} must be true or false, not {_type_name(value)} {_show(value)}")
    return value


def _text_list(key: str, value: object, *, max_items: int, max_chars: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"{key} must be a list of strings, not {_type_name(value)}")
    if len(value) > max_items:
        raise _Invalid(f"{key} has {len(value)} entries, over the cap of {max_items}")
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _Invalid(f"{key}[{index}] must be a non-empty string, not {_show(item)}")
        if len(item) > max_chars or "\n" in item or "\0" in item:
            raise _Invalid(f"{key}[{index}] must be one line of at most {max_chars} characters")
        items.append(item.strip())
    return tuple(items)


def _check_ignore(key: str, value: object) -> tuple[str, ...]:
    patterns = _text_list(key, value, max_items=MAX_PATTERNS, max_chars=MAX_PATTERN_CHARS)
    for index, pattern in enumerate(patterns):
        try:
            compile_ignore_pattern(pattern)
        except ValueError as exc:
            raise _Invalid(f"{key}[{index}] {_show(pattern)}: {exc}") from None
    return patterns


def _check_labels(key: str, value: object) -> tuple[str, ...]:
    return _text_list(key, value, max_items=MAX_LABELS, max_chars=MAX_LABEL_CHARS)


def _check_guidelines(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{key} must be text, not {_type_name(value)}")
    if len(value) > MAX_GUIDELINES_CHARS:
        raise _Invalid(f"{key} is {len(value)} characters, over the cap of {MAX_GUIDELINES_CHARS}")
    if "\0" in value:
        raise _Invalid(f"{key} must not contain NUL characters")
    return value.strip()


def _check_severity(key: str, value: object) -> Severity:
    names = ", ".join(s.value for s in Severity)
    if not isinstance(value, str) or value.strip().lower() not in {s.value for s in Severity}:
        raise _Invalid(f"{key} must be one of {names}, not {_show(value)}")
    return Severity(value.strip().lower())


def _check_max_files(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{key} must be a whole number, not {_type_name(value)} {_show(value)}")
    if not 1 <= value <= MAX_FILES_LIMIT:
        raise _Invalid(f"{key} must be between 1 and {MAX_FILES_LIMIT}, not {value}")
    return value


def _check_version(key: str, value: object) -> int:
    if isinstance(value, bool) or value != CONFIG_VERSION:
        raise _Invalid(f"{key} must be {CONFIG_VERSION} (the only version), not {_show(value)}")
    return CONFIG_VERSION


_CHECKERS: dict[str, Any] = {
    "version": _check_version,
    "enabled": _bool,
    "ignore": _check_ignore,
    "guidelines": _check_guidelines,
    "severity_floor": _check_severity,
    "max_files": _check_max_files,
    "skip_drafts": _bool,
    "skip_labels": _check_labels,
    "skip_authors": _check_labels,
    "review_trivial": _bool,
}
