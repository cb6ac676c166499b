"""`auto-review bench run`: replay the labelled corpus through the review pipeline and score it.

Each fixture's ``pr.patch`` goes through :func:`auto_review.review.pipeline.review_patch`
with the LLM the ``AR_LLM_*`` settings describe and the default repository config, one
fixture at a time (so stage latencies are not inflated by each other). The findings kept are
matched against ``expected.yaml`` (rule: :mod:`auto_review.bench.evaluation`).

Exit status: 0 done; 1 a regression against ``--baseline`` with ``--fail-on-regression``;
2 bad usage, settings, corpus or baseline, or the LLM server refused the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from auto_review.bench.evaluation import (
    LINE_TOLERANCE,
    BenchSummary,
    CorpusError,
    Fixture,
    FixtureOutcome,
    Regression,
    RegressionThresholds,
    compare_to_baseline,
    load_baseline,
    load_corpus,
    summarize,
    summary_to_json,
)
from auto_review.cli.parsing import ArgumentParser
from auto_review.cli.settings_args import (
    LLM_COMMAND_SETTINGS,
    add_settings_arguments,
    print_settings_error,
    settings_from_namespace,
)
from auto_review.config import SettingsError
from auto_review.llm.api import LanguageModel, LlmError, LlmRefused
from auto_review.review.stages.findings import Finding
from auto_review.wiring.redaction import install_secrets, redact

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2



class ReportLike(Protocol):
    """The fields of the pipeline's ReviewReport the bench reads."""

    @property
    def kept(self) -> Sequence[Finding]: ...

    @property
    def stage_seconds(self) -> Mapping[str, float]: ...

    @property
    def skipped_reason(self) -> str | None: ...


Reviewer = Callable[[Fixture], Awaitable[ReportLike]]


class BenchAborted(Exception):
    """Going on would only repeat the same failure on every fixture."""


def pipeline_reviewer(llm: LanguageModel, *, budget_tokens: int, with_tree: bool) -> Reviewer:
    """Reviews a fixture the way ``auto-review review diff`` reviews a local patch: no tree,
    unless ``with_tree`` lends the fixture's after/ tree, as a PR checkout would be."""
    from auto_review.review.pipeline import review_patch
    from auto_review.review.policy.repo_config import DEFAULT_REPO_CONFIG
    from auto_review.review.workspace.confined import ConfinedTree

    async def review(fixture: Fixture) -> ReportLike:
        tree = ConfinedTree(fixture.directory / "after") if with_tree else None
        return await review_patch(
            fixture.patch,
            llm=llm,
            repo_config=DEFAULT_REPO_CONFIG,
            tree=tree,
            budget_tokens=budget_tokens,
            title=fixture.title,
        )

    return review


async def review_corpus(fixtures: Sequence[Fixture], review: Reviewer) -> list[FixtureOutcome]:
    """Review every fixture in turn. A failed review is recorded (its expected findings
    count as misses) unless the server refused: then every fixture would fail alike."""
    outcomes = []
    for fixture in fixtures:
        started = time.perf_counter()
        try:
            report = await review(fixture)
        except LlmRefused as exc:
            raise BenchAborted(f"{fixture.name}: the LLM server refused: {exc}") from None
        except (LlmError, ValueError, OSError) as exc:
            outcomes.append(
                FixtureOutcome(
                    fixture.name,
                    fixture.expected,
                    (),
                    error=f"{type(exc).__name__}: {exc}",
                    wall_seconds=time.perf_counter() - started,
                )
            )
            continue
        outcomes.append(
            FixtureOutcome(
                fixture.name,
                fixture.expected,
                tuple(report.kept),
                dict(report.stage_seconds),
                skipped_reason=report.skipped_reason,
                wall_seconds=time.perf_counter() - started,
            )
        )
    return outcomes


# -- output -------------------------------------------------------------------------------


def format_summary(summary: BenchSummary) -> str:
    width = max([len("fixture"), *(len(s.name) for s in summary.fixtures)])
    lines = [f"{'fixture':<{width}}  expected  tp  fp  dup  miss  seconds  note"]
    for s in summary.fixtures:
        note = s.error or (f"skipped: {s.skipped_reason}" if s.skipped_reason else "")
        lines.append(
            f"{s.name:<{width}}  {s.expected:>8}  {s.true_positives:>2}  "
            f"{s.false_positives:>2}  {s.duplicates:>3}  {s.misses:>4}  "
            f"{s.wall_seconds:>7.2f}  {note}".rstrip()
        )
    lines += [
        "",
        f"precision {summary.precision:.3f}  recall {summary.recall:.3f}  "
        f"false positives per PR {summary.false_positives_per_pr:.3f}",
        f"true positives {summary.true_positives}, false positives {summary.false_positives}, "
        f"misses {summary.misses}, duplicates {summary.duplicates}; "
        f"clean PRs with findings {summary.clean_prs_with_findings}/{summary.clean_prs}; "
        f"failed reviews {summary.errors}; line tolerance {summary.tolerance}",
    ]
    if summary.stages:
        stage_width = max(len("stage"), *(len(name) for name in summary.stages))
        lines += ["", f"{'stage':<{stage_width}}  mean s  median s   max s  total s"]
        for name, lat in summary.stages.items():  # pipeline order: as first reported
            lines.append(
                f"{name:<{stage_width}}  {lat.mean:>6.3f}  {lat.median:>8.3f}  "
                f"{lat.max:>6.3f}  {lat.total:>7.3f}"
            )
    return "\n".join(lines)


def format_regressions(regressions: Sequence[Regression]) -> str:
    if not regressions:
        return "baseline: no regression"
    return "\n".join(["baseline: REGRESSION", *(f"  {r.describe()}" for r in regressions)])


# -- command ------------------------------------------------------------------------------


def default_corpus() -> Path:
    """bench/corpus of the current directory, else of the source checkout of this package."""
    here = Path("bench/corpus")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "bench" / "corpus"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="auto-review bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="replay the labelled corpus and print the scores")
    run.add_argument(
        "--corpus", type=Path, default=None, metavar="DIR", help="[default: bench/corpus]"
    )
    run.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="JSON written by an earlier --write-baseline [default: none]",
    )
    run.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when the run regressed against --baseline [default: off]",
    )
    run.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="save this run's scores [default: none]",
    )
    run.add_argument("--json", action="store_true", help="print one JSON document [default: text]")
    run.add_argument(
        "--metric-tolerance",
        type=float,
        default=RegressionThresholds().max_metric_drop,
        help="precision or recall may drop this much before it is a regression (default 0.05)",
    )
    run.add_argument(
        "--latency-factor",
        type=float,
        default=RegressionThresholds().max_latency_factor,
        help="a stage's mean may grow this many times before it is a regression (default 2)",
    )
    run.add_argument(
        "--line-tolerance",
        type=int,
        default=LINE_TOLERANCE,
        help="lines a finding may lie outside the expected range and still match (default 3)",
    )
    run.add_argument(
        "--with-tree",
        action="store_true",
        help="let context and verification read each fixture's after/ tree [default: diff only]",
    )
    add_settings_arguments(run, LLM_COMMAND_SETTINGS)
    return parser


def main(argv: list[str]) -> int:
    return run(build_parser().parse_args(argv))


def _fail(message: str) -> int:
    print(f"auto-review bench run: {redact(message)}", file=sys.stderr)
    return EXIT_USAGE


def run(namespace: argparse.Namespace) -> int:
    if namespace.fail_on_regression and namespace.baseline is None:
        return _fail("--fail-on-regression needs --baseline FILE")
    if namespace.metric_tolerance < 0 or namespace.latency_factor < 1:
        return _fail("--metric-tolerance must be >= 0 and --latency-factor >= 1")
    if namespace.line_tolerance < 0:
        return _fail("--line-tolerance must be >= 0")
    try:
        settings = settings_from_namespace(namespace)
        install_secrets(settings.secret_values())
        fixtures = load_corpus(namespace.corpus or default_corpus())
        baseline = load_baseline(namespace.baseline) if namespace.baseline else None
        # The composition root's client: it trusts AR_CA_FILE like the gateway does.
        from auto_review.wiring.clients import language_model

        llm = language_model(settings)
    except SettingsError as exc:
        print_settings_error("auto-review bench run", exc)
        return EXIT_USAGE
    except (CorpusError, ValueError) as exc:
        return _fail(str(exc))
    try:
        outcomes = asyncio.run(
            _review_all(
                llm,
                fixtures,
                budget_tokens=settings.llm_context_tokens,
                with_tree=namespace.with_tree,
            )
        )
    except BenchAborted as exc:
        return _fail(str(exc))
    summary = summarize(outcomes, namespace.line_tolerance)
    thresholds = RegressionThresholds(
        max_metric_drop=namespace.metric_tolerance,
        max_latency_factor=namespace.latency_factor,
    )
    regressions = compare_to_baseline(summary, baseline, thresholds) if baseline else []
    document = summary_to_json(summary)
    _print(summary, document, regressions, baseline is not None, namespace.json)
    if namespace.write_baseline is not None:
        if summary.errors:
            # Failed reviews lower the scores: such a baseline would hide later regressions.
            return _fail(
                f"not writing {namespace.write_baseline}: {summary.errors} review(s) failed"
            )
        try:
            namespace.write_baseline.write_text(json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            return _fail(f"cannot write {namespace.write_baseline}: {exc.strerror}")
    if regressions and namespace.fail_on_regression:
        return EXIT_REGRESSION
    return EXIT_OK


async def _review_all(
    llm: Any, fixtures: Sequence[Fixture], *, budget_tokens: int, with_tree: bool
) -> list[FixtureOutcome]:
    async with llm:
        reviewer = pipeline_reviewer(llm, budget_tokens=budget_tokens, with_tree=with_tree)
        return await review_corpus(fixtures, reviewer)


def _print(
    summary: BenchSummary,
    document: dict[str, Any],
    regressions: Sequence[Regression],
    compared: bool,
    as_json: bool,
) -> None:
    if as_json:
        if compared:
            document = {
                **document,
                "regressions": [
                    {
                        "metric": r.metric,
                        "baseline": r.baseline,
                        "current": r.current,
                        "limit": r.limit,
                    }
                    for r in regressions
                ],
            }
        print(redact(json.dumps(document, indent=2)))
        return
    print(redact(format_summary(summary)))
    if compared:
        print()
        print(format_regressions(regressions))
