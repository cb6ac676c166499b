"""review_patch: a local patch through triage, context, model and verification, no forge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.review.test_pipeline_fakes import ScriptedModel, finding, review

from auto_review.llm.api import Tier
from auto_review.review.diff.model import DiffParseError
from auto_review.review.pipeline import review_patch
from auto_review.review.policy.repo_config import DEFAULT_REPO_CONFIG, parse_repo_config
from auto_review.review.workspace.confined import ConfinedTree

PATCH = "\n".join(
    [
        "diff --git a/calc.py b/calc.py",
        "index 1111111..2222222 100644",
        "--- a/calc.py",
        "+++ b/calc.py",
        "@@ -1,3 +1,4 @@",
        " def mean(values):",
        "-    return sum(values) / len(values)",
        "+    total = sum(values)",
        "+    return total / (len(values) - 1)",
        " ",
        "diff --git a/package-lock.json b/package-lock.json",
        "index 1111111..2222222 100644",
        "--- a/package-lock.json",
        "+++ b/package-lock.json",
        "@@ -1 +1 @@",
        '-{"lockfileVersion": 2}',
        '+{"lockfileVersion": 3}',
        "",
    ]
).encode()


def test_a_patch_is_reviewed_from_its_hunks() -> None:
    model = ScriptedModel(
        [
            review(
                finding("calc.py", 3, title="Off by one in the divisor", category="off-by-one"),
                finding("calc.py", 1, title="Unchanged signature"),
            )
        ]
    )
    report = asyncio.run(review_patch(PATCH, llm=model, repo_config=DEFAULT_REPO_CONFIG))
    assert [(f.path, f.end_line, f.title) for f in report.kept] == [
        ("calc.py", 3, "Off by one in the divisor")
    ]
    assert [str(d.reason) for d in report.dropped] == ["unchanged-line"]
    prompt = model.reasoning_prompts()[0]
    assert "len(values) - 1" in prompt
    assert "lockfileVersion" not in prompt  # triaged out as a lock file
    assert "package-lock.json" in prompt  # but still named in the changed-file list
    assert any("package-lock.json" in note for note in report.notes)
    # The verifier saw the code from the hunks (no checkout in patch mode).
    cheap = [m for tier, m in model.prompts if tier is Tier.CHEAP]
    assert len(cheap) == 1 and "len(values) - 1" in cheap[0][-1].content
    assert set(report.stage_seconds) >= {"diff", "triage", "context", "llm", "verify"}


def test_the_repo_config_floor_applies_to_a_patch() -> None:
    config = parse_repo_config("severity_floor: critical\n")
    model = ScriptedModel([review(finding("calc.py", 3, severity="high"))])
    report = asyncio.run(review_patch(PATCH, llm=model, repo_config=config))
    assert report.kept == [] and [str(d.reason) for d in report.dropped] == ["below-floor"]


def test_a_patch_with_nothing_reviewable_asks_no_model() -> None:
    lock_only = PATCH[PATCH.index(b"diff --git a/package-lock.json") :]
    model = ScriptedModel()
    report = asyncio.run(review_patch(lock_only, llm=model, repo_config=DEFAULT_REPO_CONFIG))
    assert report.skipped_reason is not None and model.prompts == []


def test_input_that_is_no_diff_is_refused() -> None:
    with pytest.raises(DiffParseError):
        asyncio.run(
            review_patch(b"diff --cc a.py\n", llm=ScriptedModel(), repo_config=DEFAULT_REPO_CONFIG)
        )


def test_a_tree_lends_surrounding_code_to_context_and_verification(tmp_path: Path) -> None:
    lines = [f"CONSTANT_{n} = {n}" for n in range(1, 40)]
    lines[19] = "def mean(values):"
    (tmp_path / "calc.py").write_text("\n".join(lines) + "\n")
    patch = "\n".join(
        [
            "diff --git a/calc.py b/calc.py",
            "--- a/calc.py",
            "+++ b/calc.py",
            "@@ -20 +20 @@",
            "-def average(values):",
            "+def mean(values):",
            "",
        ]
    ).encode()
    model = ScriptedModel([review(finding("calc.py", 20, title="Renamed without callers"))])
    report = asyncio.run(
        review_patch(patch, llm=model, repo_config=DEFAULT_REPO_CONFIG, tree=ConfinedTree(tmp_path))
    )
    assert len(report.kept) == 1
    verifier_prompt = next(m for tier, m in model.prompts if tier is Tier.CHEAP)[-1].content
    assert "CONSTANT_30 = 30" in verifier_prompt  # read from the tree, not in the hunk
