"""`.auto_review.yaml` parsing: defaults, every key, hostile YAML, problems with lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.support.git_env import isolated_git_env

from auto_review.hosts.review_types import PullRequestDetails
from auto_review.review.policy.ignore_patterns import compile_ignore_pattern
from auto_review.review.policy.repo_config import (
    DEFAULT_REPO_CONFIG,
    MAX_CONFIG_BYTES,
    MAX_GUIDELINES_CHARS,
    RepoConfig,
    RepoConfigError,
    config_ref,
    parse_repo_config,
    repo_config_or_default,
)
from auto_review.review.stages.findings import Severity

FULL = """\
version: 1
enabled: true
ignore:
  - "docs/generated/**"
  - "*.snap"
  - "!vendor/ours/"
guidelines: |
  Prefer explicit error handling.
  Public functions carry type hints.
severity_floor: High
max_files: 120
skip_drafts: false
skip_labels: [wip, "Do Not Review"]
skip_authors: ["renovate[bot]"]
review_trivial: true
"""


def problems_of(text: str | bytes, *, strict: bool = False) -> list[str]:
    with pytest.raises(RepoConfigError) as info:
        parse_repo_config(text, strict=strict)
    return info.value.problems


def test_defaults() -> None:
    expected = RepoConfig(
        ignore=(),
        guidelines="",
        severity_floor=Severity.MEDIUM,
        max_files=50,
        skip_drafts=True,
        skip_labels=("no-review", "skip-review"),
        review_trivial=False,
        enabled=True,
        skip_authors=(),
    )
    assert expected == DEFAULT_REPO_CONFIG
    for empty in ("", "\n# only a comment\n", b"", "---\n"):
        assert parse_repo_config(empty) == DEFAULT_REPO_CONFIG


def test_every_key() -> None:
    config = parse_repo_config(FULL.encode())
    assert config.ignore == ("docs/generated/**", "*.snap", "!vendor/ours/")
    assert (
        config.guidelines == "Prefer explicit error handling.\nPublic functions carry type hints."
    )
    assert config.severity_floor is Severity.HIGH
    assert (config.max_files, config.skip_drafts, config.review_trivial) == (120, False, True)
    assert config.skip_labels == ("wip", "Do Not Review")
    assert config.skip_authors == ("renovate[bot]",)
    assert config.enabled and config.warnings == ()


def test_unknown_key_warns_normally_and_fails_strict() -> None:
    text = "max_files: 10\nlanguage: de\n"
    config = parse_repo_config(text)
    assert config.max_files == 10
    assert len(config.warnings) == 1 and config.warnings[0].startswith("line 2: unknown key")
    assert "'language'" in config.warnings[0]
    assert problems_of(text, strict=True) == [config.warnings[0]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_files: '50'\n", "line 1: max_files must be a whole number, not a string '50'"),
        ("a: 1\nmax_files: true\n", "line 2: max_files must be a whole number"),
        ("max_files: 0\n", "line 1: max_files must be between 1 and"),
        ("skip_drafts: 'no'\n", "line 1: skip_drafts must be true or false"),
        ("severity_floor: urgent\n", "line 1: severity_floor must be one of info, low,"),
        ("\n\nignore: '*.md'\n", "line 3: ignore must be a list of strings, not a string"),
        ("ignore:\n  - ok\n  - 3\n", "line 2: ignore[1] must be a non-empty string"),
        ("ignore: ['[abc']\n", "unterminated character class"),
        ("skip_labels: {a: 1}\n", "line 1: skip_labels must be a list of strings, not a mapping"),
        ("guidelines: [x]\n", "line 1: guidelines must be text, not a list"),
        ("version: 2\n", "line 1: version must be 1"),
        ("review_trivial: 2020-01-01\n", "line 1: review_trivial must be true or false"),
    ],
)
def test_wrong_types_name_key_and_line(text: str, expected: str) -> None:
    (problem,) = problems_of(text)
    assert problem.startswith(expected) or expected in problem, problem


def test_all_problems_are_reported_together() -> None:
    problems = problems_of("max_files: x\nskip_drafts: 3\nseverity_floor: 7\nmax_files: 1\n")
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 2", "line 3", "line 4"]
    assert "given more than once" in problems[3]


def test_guidelines_cap() -> None:
    ok = "guidelines: " + "a" * MAX_GUIDELINES_CHARS + "\n"
    assert len(parse_repo_config(ok).guidelines) == MAX_GUIDELINES_CHARS
    (problem,) = problems_of("guidelines: " + "a" * (MAX_GUIDELINES_CHARS + 1) + "\n")
    assert "over the cap" in problem


def test_anchors_and_aliases_refused() -> None:
    bomb = "a: &a ['x','x','x','x','x']\nb: &b [*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b]\n"
    assert problems_of(bomb) == ["line 1: anchors and aliases (& and *) are not allowed"]
    assert problems_of("ignore: &x ['a']\n")[0].startswith("line 1: anchors")
    (alias_problem,) = problems_of("a: 1\nignore: *x\n")
    assert alias_problem.startswith("line 2:")


def test_size_cap_and_depth_cap() -> None:
    big = b"guidelines: '" + b"a" * MAX_CONFIG_BYTES + b"'\n"
    assert problems_of(big) == [f"the file is over the {MAX_CONFIG_BYTES}-byte cap"]
    assert problems_of(big.decode()) == [f"the file is over the {MAX_CONFIG_BYTES}-byte cap"]
    deep = "x: " + "[" * 5000 + "]" * 5000 + "\n"
    assert "nesting deeper than" in problems_of(deep)[0]


def test_unsafe_tags_and_bad_documents() -> None:
    (problem,) = problems_of("guidelines: !!python/name:os.system\n")
    assert problem.startswith("line 1:") and "constructor" in problem
    assert problems_of("!!python/object:os.system {}\n") == [
        "line 1: the file must be a mapping of keys"
    ]
    assert problems_of("- a\n- b\n") == ["line 1: the file must be a mapping of keys"]
    assert problems_of("a: 1\n---\nb: 2\n")[0].startswith("line 2:")
    assert problems_of(b"a: \xff\n") == ["the file is not UTF-8 (byte 3)"]
    assert problems_of("1: x\n") == ["line 1: keys must be plain names"]


def test_hostile_values_are_shown_escaped_and_short() -> None:
    (problem,) = problems_of('severity_floor: "\\e[31mred\\e[0m' + "z" * 200 + '"\n')
    assert "\x1b" not in problem and "\\x1b" in problem
    assert len(problem) < 200


def test_config_ref_is_the_base_commit() -> None:
    pr = PullRequestDetails(
        number=7,
        head_sha="h" * 40,
        base_sha="b" * 40,
        head_ref="refs/pull/7/head",
        base_branch="main",
        author="mallory",
        draft=False,
        state="open",
        title="t",
        body="",
        labels=(),
        clone_url="https://forge.invalid/o/r.git",
    )
    assert config_ref(pr) == "b" * 40


def test_or_default_fails_closed_to_defaults() -> None:
    assert repo_config_or_default(None) == (DEFAULT_REPO_CONFIG, [])
    config, problems = repo_config_or_default("enabled: nope\nignore: ['**']\n")
    assert config == DEFAULT_REPO_CONFIG  # an invalid file never turns reviews off
    assert problems == [
        ".auto_review.yaml: line 1: enabled must be true or false, not a string 'nope'"
    ]
    config, warnings = repo_config_or_default("max_files: 3\nextra: 1\n")
    assert config.max_files == 3 and warnings[0].startswith(".auto_review.yaml: line 2: unknown")


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("*.snap", ["a.snap", "x/y/b.snap"], ["a.snapx", "snap"]),
        ("docs/", ["docs/a.md", "x/docs/b/c.md"], ["docs", "mydocs/a.md"]),
        ("/build", ["build", "build/x.o"], ["src/build", "src/build/x.o"]),
        ("src/*.gen.ts", ["src/a.gen.ts"], ["src/x/a.gen.ts", "lib/src/a.gen.ts"]),
        ("a/**/b.txt", ["a/b.txt", "a/x/y/b.txt"], ["b.txt", "c/a/b.txt"]),
        ("**/fixtures", ["fixtures/a", "t/fixtures/b/c"], ["t/fixture/x"]),
        ("gen/**", ["gen/a", "gen/a/b"], ["gen", "x/gen/a"]),
        ("file?.[ch]", ["file1.c", "d/fileX.h"], ["file12.c", "file1.o", "file/.c"]),
        ("[!a]*.py", ["b.py", "d/c.py"], ["a.py"]),
        (r"\#hash", ["#hash"], ["hash"]),
    ],
)
def test_gitignore_patterns(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    compiled = compile_ignore_pattern(pattern)
    assert [p for p in matching if not compiled.matches(p)] == []
    assert [p for p in not_matching if compiled.matches(p)] == []


def test_negated_pattern() -> None:
    compiled = compile_ignore_pattern("!vendor/ours/")
    assert compiled.negated and compiled.directory_only
    assert compiled.matches("vendor/ours/x.go") and not compiled.matches("vendor/theirs/x.go")
    for bad in ("!", "/", "a\\"):
        with pytest.raises(ValueError):
            compile_ignore_pattern(bad)


def test_adversarial_wildcards_on_a_long_path() -> None:
    # A backtracking regex takes exponential time here; the automaton answers at once
    # (a regression would hang until the test timeout).
    compiled = compile_ignore_pattern("*a*a*a*a*a*a*a*a*a*a*a*a*b")
    assert not compiled.matches("a" * 4000)
    assert compiled.matches("a" * 4000 + "b")
    deep = compile_ignore_pattern("**/a/**/a/**/a/**/a/**/b")
    assert not deep.matches("/".join(["a"] * 1500))
    assert deep.matches("/".join(["a"] * 1500) + "/b")


_SEGMENT = st.one_of(
    st.just("**"),
    st.lists(
        st.sampled_from(["a", "b", ".", "*", "?", "[ab]", "[!a]", "[a-b]"]), min_size=1, max_size=4
    ).map("".join),
)
_PATTERN = st.builds(
    lambda lead, segments, trail: lead + "/".join(segments) + trail,
    st.sampled_from(["", "/"]),
    st.lists(_SEGMENT, min_size=1, max_size=3),
    st.sampled_from(["", "/"]),
)
_PATH = st.lists(
    st.text(alphabet="ab.", min_size=1, max_size=3).filter(lambda c: c not in (".", "..")),
    min_size=1,
    max_size=4,
).map("/".join)


@settings(max_examples=150, deadline=None)
@given(pattern=_PATTERN, paths=st.lists(_PATH, min_size=1, max_size=12, unique=True))
def test_patterns_agree_with_git_check_ignore(
    tmp_path_factory: pytest.TempPathFactory, pattern: str, paths: list[str]
) -> None:
    """Real git is the oracle: for every path, git check-ignore says whether the one
    pattern excludes it (itself or through a parent directory)."""
    assume(pattern.strip("/"))
    root = tmp_path_factory.mktemp("gitignore")
    env = isolated_git_env(root, path="/usr/bin:/bin")
    subprocess.run(["git", "init", "-q"], cwd=root, env=env, check=True)
    (root / ".gitignore").write_text(pattern + "\n")
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin", "-z"],
        cwd=root,
        env=env,
        input="\0".join(paths) + "\0",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    ignored_by_git = {p for p in result.stdout.split("\0") if p}
    compiled = compile_ignore_pattern(pattern)
    ours = {p for p in paths if compiled.matches(p)}
    assert ours == ignored_by_git, pattern


@pytest.mark.parametrize(
    "pattern",
    ["a**/**", "a***/**", "a*/**", "*a**/**", "**a/**", "x/a**/**", "a/**", "**/**",
     # a component of three or more stars is "**" (the property test found "***/**")
     "***/**", "***", "a/***/b", "***/b", "a/***", "***a", "a***", "/***/a",
     # stars right after the literal prefix span components ("**/a**/**" found them)
     "**/a**/**", "a**/b", "x/a**/b", "**/a**/b", "a**/b/**", "x/*/a**/**", "a**/**/b",
     "ab**/c/d", "/a**/**", "a?**/**", "a[b]**/**", "a**b", "x/a**"],
)  # fmt: skip
def test_star_runs_against_git(tmp_path: Path, pattern: str) -> None:
    """Found by the property test: git lets "a**/**" match "a" itself, "a*/**" only what is
    inside, and reads a component of stars alone as "**"; it compares a pattern's literal
    prefix first, so stars right after it span components even inside a name ("a**/b"
    matches "a/x/b" and "ab"), and stars after an earlier wildcard do not ("**/a**/**"
    leaves "a" alone). Real git is the oracle here too."""
    paths = ["a", "ab", "a/x", "ab/x", "b", "x/a", "x/a/y", "xa", "xa/y", "a/b", "a/b/c",
             "a/x/b", "a/x/y/b", "x/b", "ba", "x/ba", "ab/x/b", "x/q/a", "x/q/a/y", "x/a/x/b",
             "abc/d", "ab/c/d", "abx/c/d", "a/xb", "abx"]  # fmt: skip
    env = isolated_git_env(tmp_path, path="/usr/bin:/bin")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, env=env, check=True)
    (tmp_path / ".gitignore").write_text(pattern + "\n")
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin", "-z"],
        cwd=tmp_path, env=env, input="\0".join(paths) + "\0",
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    compiled = compile_ignore_pattern(pattern)
    assert {p for p in paths if compiled.matches(p)} == {
        p for p in result.stdout.split("\0") if p
    }
