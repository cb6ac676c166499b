"""The pipeline claims its findings in the review store before posting them: a finding
another worker claimed meanwhile is left out, and a post that fails gives its claims back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.unit.review.test_pipeline_fakes import (
    FakeHost,
    MemoryStore,
    Origin,
    ScriptedModel,
    finding,
    make_origin,
    review,
)
from tests.unit.review.test_pipeline_pr import HEAD_APP, run

from auto_review.hosts.base import HostUnavailable

KEY = "forgejo|acme/shop"


class RacedStore(MemoryStore):
    """Another worker claims the findings titled `stolen` just before this one does."""

    stolen: set[str]

    def claim_fingerprints(self, repo_key: str, pr: int, fingerprints: Any) -> set[str]:
        super().claim_fingerprints(repo_key, pr, set(fingerprints) & self.stolen)
        return super().claim_fingerprints(repo_key, pr, fingerprints)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    origin = make_origin(tmp_path)
    origin.push({"app.py": HEAD_APP})
    return origin


def two_findings() -> ScriptedModel:
    return ScriptedModel(
        [
            review(
                finding(line=2, title="Discount applied twice"),
                finding(line=10, severity="medium", title="Length is not a discount"),
            )
        ]
    )


def test_a_finding_another_worker_claimed_meanwhile_is_not_posted(
    tmp_path: Path, origin: Origin
) -> None:
    host, store = FakeHost(origin), RacedStore()
    planned = run(tmp_path, host, two_findings(), MemoryStore(), dry_run=True)
    by_line = {f.start_line: f.fingerprint for f in planned.kept}
    store.stolen = {by_line[2]}
    host.calls.clear()

    report = run(tmp_path, host, two_findings(), store)
    [posted] = host.posted_reviews
    assert [c.line for c in posted.comments] == [10]
    assert report.planned is not None and report.planned.new_fingerprints == [by_line[10]]
    assert store.fingerprints[(KEY, 1)] == set(by_line.values())


def test_a_failed_post_gives_its_claims_back_and_the_retry_posts_them(
    tmp_path: Path, origin: Origin
) -> None:
    host, store = FakeHost(origin), MemoryStore()
    host.fail_with["post_review"] = HostUnavailable("post_review", "503")
    with pytest.raises(HostUnavailable):
        run(tmp_path, host, two_findings(), store)
    assert store.fingerprints.get((KEY, 1), set()) == set()
    del host.fail_with["post_review"]
    host.calls.clear()  # the fake records the refused post too: it is not on the forge
    run(tmp_path, host, two_findings(), store)
    [posted] = host.posted_reviews
    assert sorted(c.line for c in posted.comments) == [2, 10]
    assert len(store.fingerprints[(KEY, 1)]) == 2


def test_a_dry_run_claims_nothing(tmp_path: Path, origin: Origin) -> None:
    host, store = FakeHost(origin), MemoryStore()
    report = run(tmp_path, host, two_findings(), store, dry_run=True)
    assert report.planned is not None and len(report.planned.new_fingerprints) == 2
    assert store.fingerprints.get((KEY, 1), set()) == set()
