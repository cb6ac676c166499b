"""Scoring of findings against expected ones: matching rule, metrics, baseline comparison.

Every expected number below is worked out by hand in the comment next to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auto_review.bench.evaluation import (
    BASELINE_FORMAT,
    Baseline,
    CorpusError,
    ExpectedFinding,
    FixtureOutcome,
    RegressionThresholds,
    categories_compatible,
    compare_to_baseline,
    finding_matches,
    load_baseline,
    load_corpus,
    match_findings,
    parse_baseline,
    summarize,
    summary_to_json,
)
from auto_review.review.stages.findings import Finding, Severity


def found(path: str, start: int, end: int, category: str) -> Finding:
    return Finding(path, start, end, Severity.HIGH, category, f"{category} at {start}", "why")


def want(path: str, start: int, end: int, category: str) -> ExpectedFinding:
    return ExpectedFinding(path, start, end, category)


# -- matching rule ------------------------------------------------------------------------


def test_categories_compatible_by_equality_or_family_only() -> None:
    assert categories_compatible("injection", "injection")
    assert categories_compatible("injection", "security")
    assert categories_compatible("security", "secret")
    assert categories_compatible("off-by-one", "bug")
    assert not categories_compatible("injection", "path-traversal")
    assert not categories_compatible("off-by-one", "security")
    assert not categories_compatible("bug", "security")


@pytest.mark.parametrize(
    ("produced", "matches"),
    [
        (found("a.py", 10, 12, "injection"), True),
        (found("./a.py", 10, 10, "injection"), True),  # leading ./ ignored
        (found("a.py", 13, 20, "injection"), True),  # 13 <= 10 + 3
        (found("a.py", 14, 20, "injection"), False),  # 14 > 10 + 3
        (found("a.py", 1, 7, "injection"), True),  # 7 >= 10 - 3
        (found("a.py", 1, 6, "injection"), False),  # 6 < 7
        (found("b.py", 10, 10, "injection"), False),
        (found("a.py", 10, 10, "secret"), False),
        (found("a.py", 10, 10, "security"), True),
    ],
)
def test_finding_matches_with_tolerance(produced: Finding, matches: bool) -> None:
    assert finding_matches(want("a.py", 10, 10, "injection"), produced, tolerance=3) is matches


def test_matching_is_maximal_not_greedy() -> None:
    # Produced #0 matches both expected; produced #1 matches only the first. Greedy pairing
    # of expected #0 with produced #0 would miss expected #1; a maximum matching finds 2.
    expected = [want("a.py", 10, 10, "bug"), want("a.py", 16, 16, "bug")]
    produced = [found("a.py", 13, 13, "bug"), found("a.py", 9, 9, "bug")]
    result = match_findings(expected, produced, tolerance=3)
    assert len(result.pairs) == 2
    assert result.misses == () and result.false_positives == () and result.duplicates == ()


def test_duplicates_and_false_positives_are_told_apart() -> None:
    expected = [want("a.py", 10, 12, "injection")]
    produced = [
        found("a.py", 11, 11, "injection"),
        found("a.py", 12, 12, "security"),  # same problem again: duplicate
        found("a.py", 40, 41, "injection"),  # nowhere near: false positive
    ]
    result = match_findings(expected, produced)
    assert [p for _, p in result.pairs] == [produced[0]]
    assert result.duplicates == (produced[1],)
    assert result.false_positives == (produced[2],)
    assert result.misses == ()


# -- metrics ------------------------------------------------------------------------------


def outcomes() -> list[FixtureOutcome]:
    return [
        # 2 expected, both found: tp 2
        FixtureOutcome(
            "sql",
            (want("db.py", 5, 6, "injection"), want("db.py", 30, 30, "injection")),
            (found("db.py", 6, 6, "injection"), found("db.py", 29, 31, "security")),
            {"model": 2.0, "verify": 1.0},
        ),
        # 1 expected, found, plus one unrelated finding: tp 1, fp 1
        FixtureOutcome(
            "leak",
            (want("x.go", 20, 25, "resource-leak"),),
            (found("x.go", 21, 21, "resource-leak"), found("y.go", 3, 3, "bug")),
            {"model": 4.0, "verify": 2.0},
        ),
        # 1 expected, reported with the wrong category: fp 1, fn 1
        FixtureOutcome(
            "race",
            (want("c.go", 50, 52, "concurrency"),),
            (found("c.go", 51, 51, "performance"),),
            {"model": 6.0, "verify": 3.0, "parse": 0.5},
        ),
        # clean, with a false positive: fp 1
        FixtureOutcome("clean-1", (), (found("r.py", 1, 1, "bug"),), {"model": 1.0}),
        # clean and quiet
        FixtureOutcome("clean-2", (), (), {"model": 2.0}),
        # failed review: its 1 expected finding is a miss; what it "produced" is ignored
        FixtureOutcome(
            "broken",
            (want("z.py", 1, 1, "secret"),),
            (found("z.py", 1, 1, "secret"),),
            {"model": 100.0},
            error="LlmUnavailable",
        ),
    ]


def test_summary_metrics_match_hand_computation() -> None:
    summary = summarize(outcomes())
    # tp = 2 + 1 = 3; fp = 1 (leak) + 1 (race) + 1 (clean-1) = 3; fn = 1 (race) + 1 (broken)
    assert (summary.true_positives, summary.false_positives, summary.misses) == (3, 3, 2)
    assert summary.precision == pytest.approx(3 / 6)
    assert summary.recall == pytest.approx(3 / 5)
    assert summary.false_positives_per_pr == pytest.approx(3 / 6)
    assert (summary.clean_prs, summary.clean_prs_with_findings) == (2, 1)
    assert summary.errors == 1
    per_fixture = {
        s.name: (s.true_positives, s.false_positives, s.misses) for s in summary.fixtures
    }
    assert per_fixture == {
        "sql": (2, 0, 0),
        "leak": (1, 1, 0),
        "race": (0, 1, 1),
        "clean-1": (0, 1, 0),
        "clean-2": (0, 0, 0),
        "broken": (0, 0, 1),
    }


def test_stage_latency_excludes_failed_reviews() -> None:
    stages = summarize(outcomes()).stages
    # model: 2, 4, 6, 1, 2 (the broken 100 s excluded) -> mean 3.0, median 2.0, max 6, total 15
    model = stages["model"]
    assert (model.mean, model.median, model.max, model.total, model.samples) == (
        pytest.approx(3.0),
        2.0,
        6.0,
        pytest.approx(15.0),
        5,
    )
    # verify: 1, 2, 3 -> mean 2.0; parse appears once
    assert stages["verify"].mean == pytest.approx(2.0)
    assert stages["parse"].samples == 1


def test_empty_conventions() -> None:
    summary = summarize([FixtureOutcome("clean", (), ())])
    assert (summary.precision, summary.recall, summary.false_positives_per_pr) == (1.0, 1.0, 0.0)


# -- baseline -----------------------------------------------------------------------------


def test_baseline_round_trip_and_comparison(tmp_path: Path) -> None:
    summary = summarize(outcomes())
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(summary_to_json(summary)))
    baseline = load_baseline(path)
    assert baseline.precision == pytest.approx(0.5)
    assert baseline.stage_seconds["model"] == pytest.approx(3.0)
    assert compare_to_baseline(summary, baseline) == []


def test_regressions_beyond_tolerances_are_reported() -> None:
    summary = summarize(outcomes())  # precision 0.5, recall 0.6, model mean 3.0, verify 2.0
    baseline = Baseline(
        precision=0.56,  # drop 0.06 > 0.05: regression (limit 0.51)
        recall=0.64,  # drop 0.04: within tolerance
        stage_seconds={"model": 1.4, "verify": 1.0, "gone": 9.0},  # model 3.0 > 2.8: regression
    )
    regressions = compare_to_baseline(summary, baseline, RegressionThresholds(0.05, 2.0, 0.05))
    assert [(r.metric, r.limit) for r in regressions] == [
        ("precision", pytest.approx(0.51)),
        ("stage:model", pytest.approx(2.8)),
    ]
    assert "precision 0.500 < 0.510" in regressions[0].describe()


def test_small_absolute_latency_growth_is_noise() -> None:
    summary = summarize([FixtureOutcome("a", (), (), {"parse": 0.03})])
    # 0.03 s is 3x the baseline 0.01 s, but only 0.02 s more: under the 0.05 s floor
    baseline = Baseline(1.0, 1.0, {"parse": 0.01})
    assert compare_to_baseline(summary, baseline) == []


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"format": "other", "precision": 1, "recall": 1},
        {"format": BASELINE_FORMAT, "precision": 1.5, "recall": 1},
        {"format": BASELINE_FORMAT, "precision": True, "recall": 1},
        {"format": BASELINE_FORMAT, "precision": 1, "recall": 1, "stage_seconds": {"a": -1}},
    ],
)
def test_malformed_baselines_are_refused(data: object) -> None:
    with pytest.raises(CorpusError):
        parse_baseline(data)


def test_unreadable_baseline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="cannot be read"):
        load_baseline(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CorpusError, match="not JSON"):
        load_baseline(tmp_path / "bad.json")


# -- corpus loading -----------------------------------------------------------------------


def write_fixture(root: Path, name: str, expected: str, pr: str = "title: t\nbody: b\n") -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "pr.patch").write_bytes(b"diff --git a/x b/x\n")
    (directory / "pr.yaml").write_text(pr)
    (directory / "expected.yaml").write_text(expected)
    return directory


def test_load_corpus_reads_fixtures_in_order(tmp_path: Path) -> None:
    write_fixture(tmp_path, "b-clean", "[]\n")
    write_fixture(
        tmp_path,
        "a-bug",
        "- {file: ./src/x.py, start_line: 3, end_line: 4, category: injection}\n",
    )
    fixtures = load_corpus(tmp_path)
    assert [f.name for f in fixtures] == ["a-bug", "b-clean"]
    assert fixtures[0].expected == (want("src/x.py", 3, 4, "injection"),)
    assert fixtures[1].expected == () and fixtures[1].title == "t"


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        ("{}", "must be a list"),
        ("- {file: x, start_line: 1}", "lacks end_line, category"),
        ("- {file: x, start_line: 5, end_line: 4, category: bug}", "1 <= start <= end"),
        ("- {file: x, start_line: 1, end_line: 1, category: typo}", "category 'typo'"),
        ("- [", "not valid YAML"),
    ],
)
def test_malformed_fixtures_name_the_problem(tmp_path: Path, expected: str, message: str) -> None:
    write_fixture(tmp_path, "f", expected)
    with pytest.raises(CorpusError, match=message):
        load_corpus(tmp_path)


def test_empty_or_missing_corpus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no fixture"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope")
