"""Gitignore-style path patterns (the ``ignore`` key of ``.auto_review.yaml``), matched in
bounded time: both the patterns and the paths come from hostile repositories.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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
    # A second reading of the pattern that also matches (see _literal_prefix_double_star).
    alternative: tuple[_Segment, ...] | None = None

    def matches(self, path: str) -> bool:
        parts = path.split("/")
        last = len(parts) - 1 if self.directory_only else len(parts)
        readings = (self.segments,) if self.alternative is None else (
            self.segments, self.alternative
        )
        return any(
            1 <= end <= last for segments in readings for end in _prefix_matches(segments, parts)
        )


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
    if anchored:
        split = _literal_prefix_double_star(pattern)
        if split is not None:
            return _prefix_star_pattern(source, negated, directory_only, *split)
    segments = _parse_segments(pattern)
    if not anchored:
        segments = [None, *segments]
    return IgnorePattern(source, negated, directory_only, _inside_only(segments))


def _inside_only(segments: list[_Segment]) -> tuple[_Segment, ...]:
    """A trailing "/**" matches everything inside, not the directory itself."""
    if len(segments) > 1 and segments[-1] is None:
        segments = [*segments[:-1], ((True, _STAR),), None]
    return tuple(segments)


def _literal_prefix_double_star(pattern: str) -> tuple[str, str] | None:
    """``(prefix, rest)`` when git reads the pattern's first wildcard as a "**" that spans
    components although it sits inside one, else None.

    Git matches a pattern with a "/" by comparing its literal prefix (everything before the
    first ``*``, ``?``, ``[`` or ``\\``) first and then running wildmatch on what follows
    as if it began the pattern; so two or more stars right after that prefix, followed by
    "/" or the end, count as "**" even in the middle of a name: ``a**/b`` matches ``a/x/b``
    and ``ab``, ``x/a**/**`` matches ``x/a`` itself, while ``**/a**/b`` or ``x/*/a**/**``
    (whose prefix ends earlier) read their stars as one ``*``. Checked against git
    check-ignore by the property test."""
    first = min((i for i, char in enumerate(pattern) if char in "*?[\\"), default=-1)
    if first <= 0 or pattern[first - 1] == "/" or not pattern.startswith("**", first):
        return None
    end = first
    while end < len(pattern) and pattern[end] == "*":
        end += 1
    if end < len(pattern) and pattern[end] != "/":
        return None
    return pattern[:first], pattern[end + 1 :]


def _prefix_star_pattern(
    source: str, negated: bool, directory_only: bool, prefix: str, rest: str
) -> IgnorePattern:
    """The pattern ``prefix`` + "**" + "/" + ``rest`` read as git does: the path starts with
    the prefix, then either something (any components) and "/" before what matches
    ``rest``, or what matches ``rest`` right after the prefix ("**/" matching nothing)."""
    rest_segments = list(_inside_only(_parse_segments(rest))) if rest else []
    spanning = (*_parse_segments(prefix + "*"), None, *rest_segments)
    while rest_segments and rest_segments[0] is None:
        # "**" components at the start of the rest may match nothing: what follows them
        # may continue the prefix's name. All of it "**": the spanning reading covers it.
        rest_segments.pop(0)
        rest = rest.partition("/")[2]
    glued = _inside_only(_parse_segments(prefix + rest)) if rest_segments else None
    return IgnorePattern(source, negated, directory_only, spanning, glued)


def _parse_segments(pattern: str) -> list[_Segment]:
    segments: list[_Segment] = []
    tokens: list[tuple[bool, _Token]] = []
    raw_segment = ""
    i, n = 0, len(pattern)
    while i <= n:
        char = pattern[i] if i < n else "/"
        if char == "/":
            if len(raw_segment) >= 2 and raw_segment.strip("*") == "":
                # A whole component of two or more stars spans components ("***" too), as
                # in git's wildmatch; stars beside other characters stay within one.
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
