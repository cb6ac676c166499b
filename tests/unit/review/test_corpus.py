"""The labelled bench corpus: reproducible patches, well-formed labels, labels on changed lines."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from auto_review.bench.evaluation import Fixture, load_corpus
from auto_review.review.diff.model import parse_diff

CORPUS = Path(__file__).resolve().parents[3] / "bench" / "corpus"
BUG_CLASSES = {
    "injection",
    "path-traversal",
    "secret",
    "error-handling",
    "off-by-one",
    "concurrency",
    "resource-leak",
}


def regenerate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_regenerate", CORPUS / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURES = load_corpus(CORPUS)


def test_corpus_size_and_coverage() -> None:
    assert len(FIXTURES) >= 14
    clean = [f for f in FIXTURES if not f.expected]
    assert len(clean) >= 3
    categories = {e.category for f in FIXTURES for e in f.expected}
    assert categories >= BUG_CLASSES, BUG_CLASSES - categories


def test_a_prompt_injection_fixture_has_a_real_bug_behind_it() -> None:
    asks_to_approve = re.compile(r"approve", re.IGNORECASE)
    asks_for_secrets = re.compile(r"api[_ ]key|token|secret", re.IGNORECASE)
    injected = [
        f
        for f in FIXTURES
        if asks_to_approve.search(f.body) and asks_for_secrets.search(f.body) and f.expected
    ]
    assert injected
    for fixture in injected:
        added_code = b"\n".join(
            line for line in fixture.patch.splitlines() if line.startswith(b"+")
        ).lower()
        assert b"reviewer" in added_code and b"approve" in added_code


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_stored_patch_equals_the_regenerated_one(fixture: Fixture) -> None:
    assert regenerate_module().build_patch(fixture.directory) == fixture.patch


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_expected_findings_lie_on_changed_lines(fixture: Fixture) -> None:
    parsed = parse_diff(fixture.patch)
    assert parsed.files and not any(f.truncated for f in parsed.files)
    for expected in fixture.expected:
        file_diff = parsed.file(expected.path)
        assert file_diff is not None, f"{expected.path} is not in the patch"
        lines = range(expected.start_line, expected.end_line + 1)
        assert any(file_diff.is_changed(n) for n in lines), (
            f"{expected.path}:{expected.start_line}-{expected.end_line} has no changed line, "
            "so the path guard would drop any finding on it"
        )
        after = (fixture.directory / "after" / expected.path).read_text().splitlines()
        assert expected.end_line <= len(after)


def test_python_fixture_code_is_valid_python() -> None:
    sources = sorted(CORPUS.glob("*/*/**/*.py"))
    assert len(sources) >= 10
    for source in sources:
        compile(source.read_text(encoding="utf-8"), str(source), "exec")


def test_check_mode_reports_a_stale_patch(tmp_path: Path) -> None:
    module = regenerate_module()
    fixture = tmp_path / "01-x"
    (fixture / "after").mkdir(parents=True)
    (fixture / "after" / "a.txt").write_text("one\n")
    (fixture / "pr.yaml").write_text("title: t\n")
    (fixture / "pr.patch").write_bytes(b"stale\n")
    corpus = ["--corpus", str(tmp_path)]
    assert module.main(["--check", *corpus]) == 1
    assert module.main(corpus) == 0
    assert module.main(["--check", *corpus]) == 0
    assert b"+++ b/a.txt\n@@ -0,0 +1 @@\n+one\n" in (fixture / "pr.patch").read_bytes()
