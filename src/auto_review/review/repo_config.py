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

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from auto_review.hosts.review_types import PullRequestDetails
from auto_review.review.findings import Severity

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
    """The file is not a valid config; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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
        raise RepoConfigError(problems)
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
        event = self.peek_event()  # type: ignore[no-untyped-call]
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


# -- gitignore-style patterns ----------------------------------------------------------------
#
# Matched by a small automaton, not by translating to a regular expression: a pattern such as
# "*a*a*a*a*b" compiled to a backtracking regex takes exponential time on a long path, and
# both the patterns and the paths are hostile. Here a name is matched against one path
# component with the classic two-pointer wildcard algorithm (O(name x pattern) at worst), and
# components against "**" with a set of states per component, so the cost of one match is
# bounded by (path length x pattern length).


@dataclass(frozen=True, slots=True)
class _CharClass:
    negated: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def accepts(self, char: str) -> bool:
        inside = char in self.chars or any(lo <= char <= hi for lo, hi in self.ranges)
        return inside != self.negated


_STAR = "*"  # the only multi-character token; every other token matches one character
_ANY = "?"
_Token = str | _CharClass  # a literal is a 1-character string; "*"/"?" only as the markers
_Segment = tuple[tuple[bool, _Token], ...] | None  # (is_wildcard, token); None is "**"


@dataclass(frozen=True, slots=True)
class IgnorePattern:
    """One compiled pattern, matched against a path and each of its parent directories
    (excluding a directory excludes everything under it)."""

    source: str
    negated: bool
    directory_only: bool
    segments: tuple[_Segment, ...]

    def matches(self, path: str) -> bool:
        parts = path.split("/")
        last = len(parts) - 1 if self.directory_only else len(parts)
        return any(1 <= end <= last for end in _prefix_matches(self.segments, parts))


@lru_cache(maxsize=1024)
def compile_ignore_pattern(pattern: str) -> IgnorePattern:
    """gitignore syntax: ``!`` negates, a trailing ``/`` matches directories only, a ``/``
    at the start or in the middle anchors the pattern at the repository root (otherwise it
    matches a name at any depth), ``*`` and ``?`` stay within one path component, ``**``
    spans components, ``[...]`` is a character class and ``\\`` escapes."""
    source = pattern
    negated = pattern.startswith("!")
    if negated:
        pattern = pattern[1:]
    if pattern.startswith("\\!") or pattern.startswith("\\#"):
        pattern = pattern[1:]
    directory_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    if not pattern:
        raise ValueError("the pattern matches nothing")
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    if not pattern:
        raise ValueError("the pattern names the repository root")
    segments = _parse_segments(pattern)
    if not anchored:
        segments = [None, *segments]
    if len(segments) > 1 and segments[-1] is None:
        # A trailing "/**" matches everything inside, not the directory itself.
        segments[-1:] = [((True, _STAR),), None]
    return IgnorePattern(source, negated, directory_only, tuple(segments))


def _parse_segments(pattern: str) -> list[_Segment]:
    segments: list[_Segment] = []
    tokens: list[tuple[bool, _Token]] = []
    raw_segment = ""
    i, n = 0, len(pattern)
    while i <= n:
        char = pattern[i] if i < n else "/"
        if char == "/":
            if raw_segment == "**":
                segments.append(None)
            elif tokens:
                segments.append(tuple(tokens))
            tokens, raw_segment = [], ""
            i += 1
            continue
        raw_segment += char
        if char == "\\":
            if i + 1 >= n:
                raise ValueError("the pattern ends with a lone backslash")
            tokens.append((False, pattern[i + 1]))
            raw_segment += pattern[i + 1]
            i += 2
        elif char == "*":
            if not (tokens and tokens[-1] == (True, _STAR)):
                tokens.append((True, _STAR))
            i += 1
        elif char == "?":
            tokens.append((True, _ANY))
            i += 1
        elif char == "[":
            end, klass = _char_class(pattern, i)
            tokens.append((False, klass))
            raw_segment += pattern[i + 1 : end]
            i = end
        else:
            tokens.append((False, char))
            i += 1
    return segments


def _char_class(glob: str, start: int) -> tuple[int, _CharClass]:
    """Parse ``[...]`` at ``start``; returns the index after ``]`` and the class."""
    i = start + 1
    negated = i < len(glob) and glob[i] in "!^"
    if negated:
        i += 1
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    first = True
    while i < len(glob) and (glob[i] != "]" or first):
        char = glob[i]
        if char == "/":
            raise ValueError("a character class cannot contain '/'")
        if char == "\\" and i + 1 < len(glob):
            char = glob[i + 1]
            i += 1
        if i + 2 < len(glob) and glob[i + 1] == "-" and glob[i + 2] != "]":
            high = glob[i + 2]
            if high < char:
                raise ValueError(f"bad range {char}-{high} in a character class")
            ranges.append((char, high))
            i += 3
        else:
            chars.add(char)
            i += 1
        first = False
    if i >= len(glob):
        raise ValueError("unterminated character class '['")
    return i + 1, _CharClass(negated, frozenset(chars), tuple(ranges))


def _prefix_matches(segments: tuple[_Segment, ...], parts: list[str]) -> list[int]:
    """Every ``end`` such that the segments match ``parts[:end]`` exactly."""
    count = len(segments)

    def closure(states: set[int]) -> set[int]:
        # "**" may match zero components: a state before it also stands after it.
        for state in sorted(states):
            while state < count and segments[state] is None:
                state += 1
                states.add(state)
        return states

    ends: list[int] = []
    states = closure({0})
    for end in range(len(parts) + 1):
        if count in states:
            ends.append(end)
        if end == len(parts) or not states:
            break
        following: set[int] = set()
        for state in states:
            if state == count:
                continue
            segment = segments[state]
            if segment is None:
                following.add(state)  # "**" takes this component and may take more
            elif _component_matches(segment, parts[end]):
                following.add(state + 1)
        states = closure(following)
    return ends


def _component_matches(tokens: tuple[tuple[bool, _Token], ...], name: str) -> bool:
    """Wildcard match of one path component; ``*`` is retried from the last star only, so
    the work is at most len(name) x len(tokens)."""
    t = n = 0
    star_t, star_n = -1, 0
    while n < len(name):
        if t < len(tokens) and tokens[t] == (True, _STAR):
            star_t, star_n = t, n
            t += 1
        elif t < len(tokens) and _token_accepts(tokens[t], name[n]):
            t += 1
            n += 1
        elif star_t >= 0:
            t, star_n = star_t + 1, star_n + 1
            n = star_n
        else:
            return False
    while t < len(tokens) and tokens[t] == (True, _STAR):
        t += 1
    return t == len(tokens)


def _token_accepts(token: tuple[bool, _Token], char: str) -> bool:
    wildcard, value = token
    if wildcard:
        return value == _ANY
    if isinstance(value, _CharClass):
        return value.accepts(char)
    return value == char
