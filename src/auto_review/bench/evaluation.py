"""Scoring of review findings against a labelled corpus of pull-request fixtures.

A fixture is a directory holding ``pr.patch`` (the PR's unified diff), ``pr.yaml`` (``title``,
``body``) and ``expected.yaml`` (a list of ``{file, start_line, end_line, category}``; empty
for a clean PR). Only :func:`load_corpus` and :func:`load_baseline` read files; the rest is
pure: outcomes in, numbers out.

Matching rule (one produced finding to one expected finding):

* same file path (a leading ``./`` is ignored, nothing else is normalised);
* the produced line range overlaps the expected range widened by ``tolerance`` lines on
  each side (default :data:`LINE_TOLERANCE`);
* compatible categories: equal, or one is the family of the other (``security`` covers
  ``injection``, ``path-traversal`` and ``secret``; ``bug`` covers ``error-handling``,
  ``off-by-one``, ``concurrency`` and ``resource-leak``). Two different specific categories
  never match.

Pairs are chosen by maximum bipartite matching, so one broad finding cannot hide a second
one. An unpaired produced finding that would have matched an already paired expected
finding is a *duplicate*: neither a true nor a false positive. Every other unpaired produced
finding is a false positive; every unpaired expected finding is a miss.

Conventions: precision is 1.0 when nothing was produced, recall is 1.0 when nothing was
expected. A fixture whose review failed produced nothing: its expected findings are misses.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auto_review.review.stages.findings import CATEGORIES, Finding

LINE_TOLERANCE = 3
CATEGORY_FAMILY: Mapping[str, str] = {
    "injection": "security",
    "path-traversal": "security",
    "secret": "security",
    "error-handling": "bug",
    "off-by-one": "bug",
    "concurrency": "bug",
    "resource-leak": "bug",
}
BASELINE_FORMAT = "auto-review-bench/1"

PATCH_FILE = "pr.patch"
PR_FILE = "pr.yaml"
EXPECTED_FILE = "expected.yaml"
MAX_FIXTURE_FILE_BYTES = 4 * 1024 * 1024


class CorpusError(ValueError):
    """A fixture or a baseline file is missing or malformed; the message names which."""


# -- corpus -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpectedFinding:
    path: str
    start_line: int
    end_line: int
    category: str


@dataclass(frozen=True, slots=True)
class Fixture:
    name: str
    directory: Path
    patch: bytes
    title: str
    body: str
    expected: tuple[ExpectedFinding, ...]


def load_corpus(directory: Path) -> list[Fixture]:
    """Every fixture under ``directory`` (subdirectories holding a pr.yaml), by name."""
    if not directory.is_dir():
        raise CorpusError(f"corpus directory {directory} does not exist")
    fixtures = [load_fixture(path.parent) for path in sorted(directory.glob(f"*/{PR_FILE}"))]
    if not fixtures:
        raise CorpusError(f"corpus directory {directory} holds no fixture (no */{PR_FILE})")
    return fixtures


def load_fixture(directory: Path) -> Fixture:
    name = directory.name
    patch = _read(directory / PATCH_FILE, name)
    if not patch.strip():
        raise CorpusError(f"{name}/{PATCH_FILE} is empty")
    pr = _yaml(directory / PR_FILE, name)
    if not isinstance(pr, dict) or not isinstance(pr.get("title"), str):
        raise CorpusError(f"{name}/{PR_FILE} must be a mapping with a string 'title'")
    body = pr.get("body", "")
    if not isinstance(body, str):
        raise CorpusError(f"{name}/{PR_FILE}: 'body' must be a string")
    raw_expected = _yaml(directory / EXPECTED_FILE, name)
    if raw_expected is None:
        raw_expected = []
    if not isinstance(raw_expected, list):
        raise CorpusError(f"{name}/{EXPECTED_FILE} must be a list (empty for a clean PR)")
    expected = tuple(
        _expected_finding(item, f"{name}/{EXPECTED_FILE} item {index}")
        for index, item in enumerate(raw_expected, start=1)
    )
    return Fixture(name, directory, patch, pr["title"], body, expected)


def _read(path: Path, fixture: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FIXTURE_FILE_BYTES + 1)
    except OSError as exc:
        raise CorpusError(f"{fixture}/{path.name} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_FIXTURE_FILE_BYTES:
        raise CorpusError(f"{fixture}/{path.name} is larger than {MAX_FIXTURE_FILE_BYTES} bytes")
    return data


def _yaml(path: Path, fixture: str) -> Any:
    try:
        return yaml.safe_load(_read(path, fixture))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CorpusError(f"{fixture}/{path.name} is not valid YAML{where}") from None


def _expected_finding(item: Any, where: str) -> ExpectedFinding:
    if not isinstance(item, dict):
        raise CorpusError(f"{where} must be a mapping")
    missing = [k for k in ("file", "start_line", "end_line", "category") if k not in item]
    if missing:
        raise CorpusError(f"{where} lacks {', '.join(missing)}")
    path, start, end, category = (
        item["file"],
        item["start_line"],
        item["end_line"],
        item["category"],
    )
    if not isinstance(path, str) or not path:
        raise CorpusError(f"{where}: file must be a non-empty string")
    lines_ok = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in (start, end))
    if not lines_ok or end < start:
        raise CorpusError(f"{where}: start_line and end_line must be 1 <= start <= end")
    if category not in CATEGORIES:
        raise CorpusError(f"{where}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    return ExpectedFinding(_normal_path(path), start, end, category)


# -- matching -----------------------------------------------------------------------------


def _normal_path(path: str) -> str:
    return path.removeprefix("./")


def categories_compatible(expected: str, produced: str) -> bool:
    return (
        expected == produced
        or CATEGORY_FAMILY.get(expected) == produced
        or CATEGORY_FAMILY.get(produced) == expected
    )


def finding_matches(
    expected: ExpectedFinding, produced: Finding, tolerance: int = LINE_TOLERANCE
) -> bool:
    return (
        _normal_path(produced.path) == expected.path
        and produced.start_line <= expected.end_line + tolerance
        and produced.end_line >= expected.start_line - tolerance
        and categories_compatible(expected.category, produced.category)
    )


@dataclass(frozen=True, slots=True)
class MatchResult:
    pairs: tuple[tuple[ExpectedFinding, Finding], ...]
    false_positives: tuple[Finding, ...]
    duplicates: tuple[Finding, ...]
    misses: tuple[ExpectedFinding, ...]


def match_findings(
    expected: Sequence[ExpectedFinding],
    produced: Sequence[Finding],
    tolerance: int = LINE_TOLERANCE,
) -> MatchResult:
    """Pair findings one to one, as many pairs as possible (augmenting paths)."""
    candidates = [
        [p for p, found in enumerate(produced) if finding_matches(exp, found, tolerance)]
        for exp in expected
    ]
    owner: dict[int, int] = {}  # produced index -> expected index

    def assign(e: int, seen: set[int]) -> bool:
        for p in candidates[e]:
            if p in seen:
                continue
            seen.add(p)
            if p not in owner or assign(owner[p], seen):
                owner[p] = e
                return True
        return False

    for e in range(len(expected)):
        assign(e, set())
    paired_expected = set(owner.values())
    matchable = {p for options in candidates for p in options}
    unpaired = [p for p in range(len(produced)) if p not in owner]
    return MatchResult(
        pairs=tuple((expected[e], produced[p]) for p, e in sorted(owner.items())),
        false_positives=tuple(produced[p] for p in unpaired if p not in matchable),
        duplicates=tuple(produced[p] for p in unpaired if p in matchable),
        misses=tuple(exp for e, exp in enumerate(expected) if e not in paired_expected),
    )


# -- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FixtureOutcome:
    """What one review of one fixture produced."""

    name: str
    expected: tuple[ExpectedFinding, ...]
    produced: tuple[Finding, ...]
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None  # the review failed: nothing was produced
    skipped_reason: str | None = None  # the pipeline decided not to review
    wall_seconds: float = 0.0  # the whole review, as the caller timed it


@dataclass(frozen=True, slots=True)
class FixtureScore:
    name: str
    expected: int
    true_positives: int
    false_positives: int
    duplicates: int
    misses: int
    error: str | None
    skipped_reason: str | None
    wall_seconds: float


@dataclass(frozen=True, slots=True)
class StageLatency:
    mean: float
    median: float
    max: float
    total: float
    samples: int


@dataclass(frozen=True, slots=True)
class BenchSummary:
    fixtures: tuple[FixtureScore, ...]
    true_positives: int
    false_positives: int
    duplicates: int
    misses: int
    precision: float
    recall: float
    false_positives_per_pr: float
    clean_prs: int
    clean_prs_with_findings: int
    errors: int
    stages: Mapping[str, StageLatency]
    tolerance: int


def score_fixture(outcome: FixtureOutcome, tolerance: int = LINE_TOLERANCE) -> FixtureScore:
    produced = () if outcome.error is not None else outcome.produced
    result = match_findings(outcome.expected, produced, tolerance)
    return FixtureScore(
        name=outcome.name,
        expected=len(outcome.expected),
        true_positives=len(result.pairs),
        false_positives=len(result.false_positives),
        duplicates=len(result.duplicates),
        misses=len(result.misses),
        error=outcome.error,
        skipped_reason=outcome.skipped_reason,
        wall_seconds=outcome.wall_seconds,
    )


def stage_latencies(outcomes: Sequence[FixtureOutcome]) -> dict[str, StageLatency]:
    """Per stage, over the fixtures whose report has that stage (failed reviews excluded)."""
    samples: dict[str, list[float]] = {}
    for outcome in outcomes:
        if outcome.error is not None:
            continue
        for stage, seconds in outcome.stage_seconds.items():
            samples.setdefault(stage, []).append(float(seconds))
    return {
        stage: StageLatency(
            mean=statistics.fmean(values),
            median=statistics.median(values),
            max=max(values),
            total=math.fsum(values),
            samples=len(values),
        )
        for stage, values in samples.items()
    }


def summarize(outcomes: Sequence[FixtureOutcome], tolerance: int = LINE_TOLERANCE) -> BenchSummary:
    scores = tuple(score_fixture(outcome, tolerance) for outcome in outcomes)
    tp = sum(s.true_positives for s in scores)
    fp = sum(s.false_positives for s in scores)
    fn = sum(s.misses for s in scores)
    clean = [s for s in scores if s.expected == 0]
    return BenchSummary(
        fixtures=scores,
        true_positives=tp,
        false_positives=fp,
        duplicates=sum(s.duplicates for s in scores),
        misses=fn,
        precision=tp / (tp + fp) if tp + fp else 1.0,
        recall=tp / (tp + fn) if tp + fn else 1.0,
        false_positives_per_pr=fp / len(scores) if scores else 0.0,
        clean_prs=len(clean),
        clean_prs_with_findings=sum(1 for s in clean if s.false_positives + s.duplicates),
        errors=sum(1 for s in scores if s.error is not None),
        stages=stage_latencies(outcomes),
        tolerance=tolerance,
    )


# -- baseline -----------------------------------------------------------------------------


def summary_to_json(summary: BenchSummary) -> dict[str, Any]:
    """The summary as written by ``--write-baseline`` and printed by ``--json``."""
    return {
        "format": BASELINE_FORMAT,
        "tolerance_lines": summary.tolerance,
        "fixtures": len(summary.fixtures),
        "precision": summary.precision,
        "recall": summary.recall,
        "true_positives": summary.true_positives,
        "false_positives": summary.false_positives,
        "duplicates": summary.duplicates,
        "misses": summary.misses,
        "false_positives_per_pr": summary.false_positives_per_pr,
        "clean_prs": summary.clean_prs,
        "clean_prs_with_findings": summary.clean_prs_with_findings,
        "errors": summary.errors,
        "stage_seconds": {stage: lat.mean for stage, lat in sorted(summary.stages.items())},
        "stage_latency": {
            stage: {
                "mean": lat.mean,
                "median": lat.median,
                "max": lat.max,
                "total": lat.total,
                "samples": lat.samples,
            }
            for stage, lat in sorted(summary.stages.items())
        },
        "per_fixture": [
            {
                "name": s.name,
                "expected": s.expected,
                "true_positives": s.true_positives,
                "false_positives": s.false_positives,
                "duplicates": s.duplicates,
                "misses": s.misses,
                "error": s.error,
                "skipped_reason": s.skipped_reason,
                "wall_seconds": s.wall_seconds,
            }
            for s in summary.fixtures
        ],
    }


@dataclass(frozen=True, slots=True)
class Baseline:
    precision: float
    recall: float
    stage_seconds: Mapping[str, float]  # mean seconds per stage


def parse_baseline(data: Any) -> Baseline:
    """A baseline as written by :func:`summary_to_json`."""
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise CorpusError(f"baseline is not an {BASELINE_FORMAT} JSON object")
    precision, recall = _fraction(data, "precision"), _fraction(data, "recall")
    stages = data.get("stage_seconds", {})
    if not isinstance(stages, dict) or not all(
        isinstance(k, str) and _is_number(v) and v >= 0 for k, v in stages.items()
    ):
        raise CorpusError("baseline stage_seconds must map stage names to seconds")
    return Baseline(precision, recall, {k: float(v) for k, v in stages.items()})


def load_baseline(path: Path) -> Baseline:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise CorpusError(f"baseline {path} cannot be read: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"baseline {path} is not JSON (line {exc.lineno})") from None
    return parse_baseline(data)


def _fraction(data: Mapping[str, Any], key: str) -> float:
    value: Any = data.get(key)
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise CorpusError(f"baseline {key} must be a number between 0 and 1")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class RegressionThresholds:
    max_metric_drop: float = 0.05  # absolute drop of precision or recall allowed
    max_latency_factor: float = 2.0  # a stage may take up to this many times its baseline
    min_latency_increase: float = 0.05  # seconds; smaller increases are noise, never flagged


@dataclass(frozen=True, slots=True)
class Regression:
    metric: str  # "precision", "recall" or "stage:<name>"
    baseline: float
    current: float
    limit: float  # the value the current one crossed

    def describe(self) -> str:
        if self.metric.startswith("stage:"):
            return (
                f"{self.metric} mean {self.current:.3f} s > {self.limit:.3f} s "
                f"(baseline {self.baseline:.3f} s)"
            )
        return f"{self.metric} {self.current:.3f} < {self.limit:.3f} (baseline {self.baseline:.3f})"


def compare_to_baseline(
    summary: BenchSummary,
    baseline: Baseline,
    thresholds: RegressionThresholds | None = None,
) -> list[Regression]:
    """Regressions of this run against the baseline; stages new to this run are not judged."""
    limits = thresholds or RegressionThresholds()
    regressions = []
    for metric, current, before in (
        ("precision", summary.precision, baseline.precision),
        ("recall", summary.recall, baseline.recall),
    ):
        floor = before - limits.max_metric_drop
        if current < floor - 1e-12:
            regressions.append(Regression(metric, before, current, floor))
    for stage, latency in sorted(summary.stages.items()):
        stage_before = baseline.stage_seconds.get(stage)
        if stage_before is None:
            continue
        ceiling = max(
            stage_before * limits.max_latency_factor, stage_before + limits.min_latency_increase
        )
        if latency.mean > ceiling:
            regressions.append(Regression(f"stage:{stage}", stage_before, latency.mean, ceiling))
    return regressions
