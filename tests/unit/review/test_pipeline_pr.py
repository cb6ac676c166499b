"""review_pull_request with a fake forge, a scripted model and real git over file://."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.review.test_pipeline_fakes import (
    BASE_APP,
    BOT,
    REPO,
    SECRET,
    FakeHost,
    MemoryStore,
    Origin,
    ScriptedModel,
    finding,
    make_deps,
    make_origin,
    review,
)

from auto_review.hosts.base import HostAuthError, HostUnavailable
from auto_review.hosts.review_types import CommitState, PostedReviewComment
from auto_review.llm.api import LlmInvalidAnswer, LlmRefused, LlmUnavailable, Tier
from auto_review.review.mapping import marker
from auto_review.review.pipeline import PipelineFailed, ReviewReport, review_pull_request
from auto_review.review.stages.findings import Finding, Severity

HEAD_APP = (
    "def total(items):\n"
    "    return sum(items) - discount(items) - discount(items)\n"
    "\n"
    "\n"
    "def unchanged():\n"
    "    return 1\n"
    "\n"
    "\n"
    "def discount(items):\n"
    "    return len(items)\n"
)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    origin = make_origin(tmp_path)
    origin.push({"app.py": HEAD_APP})
    return origin


def run(
    tmp: Path,
    host: FakeHost,
    model: ScriptedModel,
    store: MemoryStore,
    *,
    expected_head: str | None = None,
    full: bool = False,
    dry_run: bool = False,
) -> ReviewReport:
    deps = make_deps(tmp, host, model, store)
    return asyncio.run(
        review_pull_request(deps, REPO, 1, expected_head=expected_head, full=full, dry_run=dry_run)
    )


def test_a_finding_on_a_changed_line_is_posted_with_status_and_history(
    tmp_path: Path, origin: Origin
) -> None:
    host, store = FakeHost(origin), MemoryStore()
    model = ScriptedModel([review(finding(line=2), summary="One bug.")])
    report = run(tmp_path, host, model, store, expected_head=origin.head_sha)

    assert report.skipped_reason is None
    assert [f.start_line for f in report.kept] == [2]
    [posted] = host.posted_reviews
    assert posted.commit_sha == origin.head_sha
    assert [(c.path, c.line) for c in posted.comments] == [("app.py", 2)]
    assert "Discount applied twice" in posted.comments[0].body
    states = [status.state for status in host.statuses]
    assert states == [CommitState.PENDING, CommitState.FAILURE]  # a high finding fails
    assert store.last[("forgejo|acme/shop", 1)] == origin.head_sha
    assert store.fingerprints[("forgejo|acme/shop", 1)] == {report.kept[0].fingerprint}
    for stage in ("clone", "diff", "triage", "context", "llm", "verify", "post"):
        assert report.stage_seconds[stage] >= 0.0
    assert report.usage[Tier.REASONING].prompt_tokens == 100
    assert report.usage[Tier.CHEAP].prompt_tokens == 100  # one verdict
    # The job directory is gone once the review is done.
    assert list((tmp_path / "work").iterdir()) == []


def test_the_model_sees_the_diff_and_the_pr_text(tmp_path: Path, origin: Origin) -> None:
    host, model = FakeHost(origin, body="Please look at the discount."), ScriptedModel()
    run(tmp_path, host, model, MemoryStore())
    [prompt] = model.reasoning_prompts()
    assert "discount(items) - discount(items)" in prompt
    assert "Please look at the discount." in prompt


def test_findings_on_unchanged_lines_or_below_the_floor_are_not_posted(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(
        [
            review(
                finding(line=6, title="Unchanged line"),  # `return 1`: not changed by the PR
                finding(line=10, severity="low", title="Low"),  # below the default floor
                finding(line=10, severity="medium", title="Length is not a discount"),
            )
        ]
    )
    report = run(tmp_path, host, model, MemoryStore())
    reasons = {d.finding.title: str(d.reason) for d in report.dropped}
    assert reasons == {"Unchanged line": "unchanged-line", "Low": "below-floor"}
    [posted] = host.posted_reviews
    assert [(c.line) for c in posted.comments] == [10]
    assert host.statuses[-1].state is CommitState.SUCCESS


def test_unsupported_findings_are_dropped_by_the_cheap_tier(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    model = ScriptedModel([review(finding(line=2))], supported=False)
    report = run(tmp_path, host, model, MemoryStore())
    assert [str(d.reason) for d in report.dropped] == ["unsupported"]
    assert host.posted_reviews == []  # nothing new: no review, only the status
    assert host.statuses[-1].state is CommitState.SUCCESS


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"state": "closed"}, "closed"),
        ({"draft": True}, "draft"),
    ],
)
def test_closed_and_draft_prs_are_skipped_before_any_clone_or_status(
    tmp_path: Path, origin: Origin, change: dict[str, object], reason: str
) -> None:
    host, model = FakeHost(origin, **change), ScriptedModel()  # type: ignore[arg-type]
    report = run(tmp_path, host, model, MemoryStore())
    assert report.skipped_reason is not None and reason in report.skipped_reason
    assert "git_access" not in host.operations()
    assert host.statuses == []
    assert model.prompts == []


def test_a_head_that_moved_on_is_skipped(tmp_path: Path, origin: Origin) -> None:
    host, model = FakeHost(origin), ScriptedModel()
    report = run(tmp_path, host, model, MemoryStore(), expected_head="f" * 40)
    assert report.skipped_reason == "the pull request moved on to a newer commit"
    assert host.statuses == [] and model.prompts == []


def test_skip_label_from_the_base_config_posts_a_skipped_status(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(
        origin,
        labels=("wip",),
        files_at_base={".auto_review.yaml": b"skip_labels: [wip]\n"},
    )
    model = ScriptedModel()
    report = run(tmp_path, host, model, MemoryStore())
    assert report.skipped_reason == "label 'wip'"
    assert ("get_file", (".auto_review.yaml", origin.base_sha)) in host.calls
    assert [s.state for s in host.statuses] == [CommitState.PENDING, CommitState.SUCCESS]
    assert host.statuses[-1].description.startswith("skipped:")
    assert model.prompts == []


def test_an_invalid_config_gives_defaults_and_a_note(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin, files_at_base={".auto_review.yaml": b"severity_floor: 12\n"})
    model = ScriptedModel([review(finding(line=2))])
    report = run(tmp_path, host, model, MemoryStore())
    assert "Configuration problem" in report.summary
    [posted] = host.posted_reviews
    assert "Configuration problem" in posted.body


def test_the_config_floor_and_guidelines_apply(tmp_path: Path, origin: Origin) -> None:
    config = b"severity_floor: critical\nguidelines: Prefer explicit loops.\n"
    host = FakeHost(origin, files_at_base={".auto_review.yaml": config})
    model = ScriptedModel([review(finding(line=2, severity="high"))])
    report = run(tmp_path, host, model, MemoryStore())
    assert [str(d.reason) for d in report.dropped] == ["below-floor"]
    assert "Prefer explicit loops." in model.reasoning_prompts()[0]


def test_dry_run_posts_nothing_and_records_nothing(tmp_path: Path, origin: Origin) -> None:
    host, store = FakeHost(origin), MemoryStore()
    report = run(tmp_path, host, ScriptedModel([review(finding(line=2))]), store, dry_run=True)
    assert report.planned is not None and report.planned.draft is not None
    assert [c.line for c in report.planned.draft.comments] == [2]
    assert host.statuses == [] and host.posted_reviews == []
    assert store.last == {}


def test_markers_in_the_bots_earlier_comments_prevent_a_repeat(
    tmp_path: Path, origin: Origin
) -> None:
    earlier = Finding("app.py", 2, 2, Severity.HIGH, "bug", "Discount applied twice", "")
    host = FakeHost(
        origin,
        review_comments=[
            PostedReviewComment(1, BOT, "app.py", 2, marker(earlier.fingerprint) + "\nold"),
        ],
    )
    report = run(tmp_path, host, ScriptedModel([review(finding(line=2))]), MemoryStore())
    assert len(report.kept) == 1
    assert host.posted_reviews == []  # already on the PR (history was lost)
    assert host.statuses[-1].state is CommitState.FAILURE  # still reflects the finding


def test_a_strangers_marker_does_not_hide_a_finding(tmp_path: Path, origin: Origin) -> None:
    earlier = Finding("app.py", 2, 2, Severity.HIGH, "bug", "Discount applied twice", "")
    host = FakeHost(
        origin,
        review_comments=[
            PostedReviewComment(1, "mallory", "app.py", 2, marker(earlier.fingerprint)),
        ],
    )
    run(tmp_path, host, ScriptedModel([review(finding(line=2))]), MemoryStore())
    assert len(host.posted_reviews) == 1


def test_incremental_review_sees_only_new_changes_and_never_repeats(
    tmp_path: Path, origin: Origin
) -> None:
    host, store = FakeHost(origin), MemoryStore()
    first = finding(line=2)
    model = ScriptedModel([review(first)])
    run(tmp_path, host, model, store)
    first_head = origin.head_sha

    # Second push: a new file; app.py is untouched since the first review.
    origin.push({"rebate.py": "def rebate(items):\n    return items[0]\n"})
    second = finding("rebate.py", 2, title="IndexError on an empty list", category="off-by-one")
    model.reviews = [review(first, second)]  # the model repeats the old finding too
    report = run(tmp_path, host, model, store)

    assert report.incremental_since == first_head
    prompt = model.reasoning_prompts()[-1]
    assert "def rebate" in prompt
    assert "discount(items) - discount(items)" not in prompt  # the old hunk is not re-sent
    assert [str(d.reason) for d in report.dropped] == ["unchanged-line"]  # line 2: old news
    _first, second_review = host.posted_reviews
    assert [(c.path, c.line) for c in second_review.comments] == [("rebate.py", 2)]
    assert store.last[("forgejo|acme/shop", 1)] == origin.head_sha


def test_a_head_already_reviewed_is_skipped_and_full_reviews_it_again(
    tmp_path: Path, origin: Origin
) -> None:
    host, store = FakeHost(origin), MemoryStore()
    model = ScriptedModel([review(finding(line=2))])
    run(tmp_path, host, model, store)
    again = run(tmp_path, host, model, store)
    assert again.skipped_reason == "this commit was already reviewed"

    full = run(tmp_path, host, model, store, full=True)
    assert full.skipped_reason is None and full.incremental_since is None
    assert len(full.kept) == 1
    assert len(host.posted_reviews) == 1  # the same finding is not posted twice


def test_a_force_push_falls_back_to_a_full_review(tmp_path: Path, origin: Origin) -> None:
    host, store = FakeHost(origin), MemoryStore()
    model = ScriptedModel([review()])
    run(tmp_path, host, model, store)
    origin.force_push({"app.py": HEAD_APP.replace("discount(items) - ", "")})
    report = run(tmp_path, host, model, store)
    assert report.incremental_since is None
    assert "no longer available" in report.summary
    assert "return sum(items) - discount(items)" in model.reasoning_prompts()[-1]


@pytest.mark.parametrize(
    ("tier", "error"),
    [
        (Tier.REASONING, LlmUnavailable("reasoning tier: timed out")),
        (Tier.CHEAP, LlmUnavailable("cheap tier: 429")),
    ],
)
def test_llm_unavailable_propagates_for_a_retry(
    tmp_path: Path, origin: Origin, tier: Tier, error: Exception
) -> None:
    host = FakeHost(origin)
    model = ScriptedModel([review(finding(line=2))], errors={tier: error})
    with pytest.raises(LlmUnavailable):
        run(tmp_path, host, model, MemoryStore())
    assert host.posted_reviews == []
    assert [s.state for s in host.statuses] == [CommitState.PENDING]


def test_host_unavailable_propagates_for_a_retry(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin, fail_with={"post_review": HostUnavailable("post_review", "503")})
    store = MemoryStore()
    with pytest.raises(HostUnavailable):
        run(tmp_path, host, ScriptedModel([review(finding(line=2))]), store)
    assert store.last == {}  # not recorded: the retry posts it


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (LlmRefused(f"reasoning tier: 401 key {SECRET}"), "refused the request"),
        (LlmInvalidAnswer("reasoning tier: not JSON"), "did not match the review schema"),
    ],
)
def test_permanent_llm_failures_end_in_an_error_status(
    tmp_path: Path, origin: Origin, error: Exception, words: str
) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(errors={Tier.REASONING: error})
    with pytest.raises(PipelineFailed) as caught:
        run(tmp_path, host, model, MemoryStore())
    assert words in str(caught.value)
    final = host.statuses[-1]
    assert final.state is CommitState.ERROR and words in final.description
    assert SECRET not in final.description and SECRET not in str(caught.value)


def test_a_forge_auth_failure_is_permanent(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin, fail_with={"git_access": HostAuthError("git_access", "401")})
    with pytest.raises(PipelineFailed, match="credentials"):
        run(tmp_path, host, ScriptedModel(), MemoryStore())


def test_an_unfetchable_repository_is_an_error_status(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin, clone_url=(tmp_path / "no-such-repository").as_uri())
    with pytest.raises(PipelineFailed, match="could not be fetched"):
        run(tmp_path, host, ScriptedModel(), MemoryStore())
    assert host.statuses[-1].state is CommitState.ERROR


def test_a_branch_moving_during_the_fetch_skips_the_old_head(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    announced = origin.head_sha
    origin.push({"later.py": "x = 1\n"})  # the ref moves after the forge answered
    origin.head_sha = announced
    report = run(tmp_path, host, ScriptedModel(), MemoryStore())
    assert report.skipped_reason == "the pull request moved on while it was being fetched"
    assert host.statuses[-1].description.startswith("skipped:")


def test_a_secret_echoed_by_the_model_never_reaches_the_forge(
    tmp_path: Path, origin: Origin
) -> None:
    leaky = finding(line=2, title=f"Token {SECRET}", body=f"Use {SECRET} to log in")
    host = FakeHost(origin)
    model = ScriptedModel([review(leaky, summary=f"the key is {SECRET}")])
    run(tmp_path, host, model, MemoryStore())
    [posted] = host.posted_reviews
    texts = [posted.body, *(c.body for c in posted.comments)]
    texts += [s.description for s in host.statuses]
    assert all(SECRET not in text for text in texts)
    assert "[REDACTED]" in posted.comments[0].body


def test_the_diff_budget_leaves_later_files_out_with_a_note(tmp_path: Path, origin: Origin) -> None:
    origin.push({"big.py": "x = 1\n" * 400, "zz.py": "y = 2\n"})
    host = FakeHost(origin)
    model = ScriptedModel([review()])
    deps_report = asyncio.run(
        review_pull_request(
            make_deps(tmp_path, host, model, MemoryStore(), max_diff_bytes=1500),
            REPO,
            1,
            expected_head=None,
            full=False,
            dry_run=True,
        )
    )
    assert "only its first files were read" in deps_report.summary
    assert "zz.py" not in model.reasoning_prompts()[0]


def test_the_diff_starts_at_the_merge_base_when_the_base_branch_moved_on(
    tmp_path: Path, origin: Origin
) -> None:
    # main changes `unchanged()` after the PR branched off; the forge reports main's tip as
    # the base. Line 6 is then different between that tip and the head, but not by the PR.
    for number in range(60):  # deeper than the first deepening step
        origin.advance_base({"notes.txt": f"note {number}\n"})
    origin.advance_base({"app.py": BASE_APP.replace("return 1", "return 2")})
    host = FakeHost(origin)
    model = ScriptedModel([review(finding(line=6, title="Returns one"), finding(line=2))])
    report = run(tmp_path, host, model, MemoryStore())
    prompt = model.reasoning_prompts()[0]
    assert "return 2" not in prompt and "notes.txt" not in prompt
    assert {d.finding.title: str(d.reason) for d in report.dropped} == {
        "Returns one": "unchanged-line"
    }
    assert [c.line for c in host.posted_reviews[0].comments] == [2]
