"""`auto-review bench run` against a loopback OpenAI-compatible server with scripted answers.

Four real corpus fixtures are replayed. The scripted model answers two of them right (one of
those with an extra, wrong finding) and misses the third; the fourth is clean:

    fixture                          expected  tp  fp  miss
    01-sql-injection-search                 1   1   0     0
    03-path-traversal-download              1   1   1     0
    06-off-by-one-ring-buffer               1   0   0     1
    12-clean-refactor-retry                 0   0   0     0

so precision = 2 / (2 + 1) = 0.667, recall = 2 / (2 + 1) = 0.667 and false positives per
PR = 1 / 4 = 0.250.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.review.smart_http import make_certificate
from tests.support.fake_llm import (
    Answer,
    FakeLlm,
    RecordedRequest,
    check_recorded_traffic,
    error_reply,
    json_reply,
    slow,
)

from auto_review.bench.evaluation import load_corpus
from auto_review.cli import main as cli

REPO_ROOT = Path(__file__).resolve().parents[3]
CORPUS = REPO_ROOT / "bench" / "corpus"
FIXTURES = (
    "01-sql-injection-search",
    "03-path-traversal-download",
    "06-off-by-one-ring-buffer",
    "12-clean-refactor-retry",
)
REASONING, CHEAP = "big-model", "small-model"
API_KEY = "sk-canary-bench-5b1e0c7d9a3f"


def finding(path: str, start: int, end: int, category: str, title: str) -> dict[str, Any]:
    return {
        "path": path,
        "start_line": start,
        "end_line": end,
        "severity": "high",
        "category": category,
        "title": title,
        "body": f"{title}: see the changed lines.",
    }


# What the reasoning model "finds", keyed by a path only that fixture's diff contains.
FINDINGS_BY_PATH: dict[str, list[dict[str, Any]]] = {
    "app/users.py": [
        finding("app/users.py", 31, 31, "injection", "LIKE pattern built from user input")
    ],
    "internal/files/handler.go": [
        finding("internal/files/handler.go", 23, 23, "path-traversal", "report name escapes root"),
        # wrong: the header is fine; a false positive on a changed line
        finding("internal/files/handler.go", 22, 22, "performance", "header set on every call"),
    ],
    "src/ringbuf.c": [],  # the off-by-one is missed
    "client/http.py": [],
}


class ScriptedReviewer:
    """Answers the reasoning tier per fixture and supports every finding at the cheap tier."""

    def __init__(self, *, delay_for: str | None = None, delay: float = 0.0) -> None:
        self.delay_for = delay_for
        self.delay = delay

    def __call__(self, request: RecordedRequest) -> Answer:
        if request.model == CHEAP:
            return json_reply({"supported": True, "reason": "the quoted lines show it"})
        if request.model != REASONING:
            return error_reply(404, "no such model", code="model_not_found")
        text = "\n".join(m["content"] for m in request.messages)
        for path, findings in FINDINGS_BY_PATH.items():
            if path in text:
                answer = json_reply({"summary": f"Reviewed {path}.", "findings": findings})
                return slow(answer, self.delay) if path == self.delay_for else answer
        return error_reply(400, "fake llm: unknown fixture")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for name in FIXTURES:
        shutil.copytree(CORPUS / name, root / name)
    return root


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLlm]:
    with FakeLlm(api_key=API_KEY, models=(REASONING, CHEAP)) as fake:
        fake.respond(ScriptedReviewer())
        monkeypatch.setenv("AR_LLM_BASE_URL", fake.url)
        monkeypatch.setenv("AR_LLM_API_KEY", API_KEY)
        monkeypatch.setenv("AR_LLM_REASONING_MODEL", REASONING)
        monkeypatch.setenv("AR_LLM_CHEAP_MODEL", CHEAP)
        monkeypatch.setenv("AR_LLM_MAX_RETRIES", "0")
        yield fake


def bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["bench", "run", *args])
    out, err = capsys.readouterr()
    assert API_KEY not in out + err
    return code, out, err


def test_table_shows_hand_computed_scores(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = bench(capsys, "--corpus", str(corpus))
    assert code == 0
    assert "precision 0.667  recall 0.667  false positives per PR 0.250" in out
    assert "true positives 2, false positives 1, misses 1" in out
    assert "clean PRs with findings 0/1" in out
    rows = {line.split()[0]: line.split()[1:6] for line in out.splitlines() if line[:2].isdigit()}
    assert rows == {
        "01-sql-injection-search": ["1", "1", "0", "0", "0"],
        "03-path-traversal-download": ["1", "1", "1", "0", "0"],
        "06-off-by-one-ring-buffer": ["1", "0", "0", "0", "1"],
        "12-clean-refactor-retry": ["0", "0", "0", "0", "0"],
    }
    assert "mean s" in out  # the per-stage latency table
    # each fixture was sent to the reasoning model once; the three findings were verified
    assert len(fake_llm.chat_requests(REASONING)) == 4
    assert len(fake_llm.chat_requests(CHEAP)) == 3
    assert check_recorded_traffic(fake_llm) > 0


def test_json_output_and_written_baseline_agree(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    baseline = tmp_path / "baseline.json"
    code, out, _ = bench(
        capsys, "--corpus", str(corpus), "--json", "--write-baseline", str(baseline)
    )
    assert code == 0
    printed = json.loads(out)
    written = json.loads(baseline.read_text())
    assert printed == written
    assert printed["precision"] == pytest.approx(2 / 3)
    assert printed["recall"] == pytest.approx(2 / 3)
    assert printed["false_positives_per_pr"] == pytest.approx(0.25)
    assert printed["fixtures"] == 4 and printed["errors"] == 0
    assert printed["stage_seconds"], "the pipeline's stage timings are reported"


def test_a_run_equal_to_its_baseline_passes(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    baseline = tmp_path / "baseline.json"
    assert bench(capsys, "--corpus", str(corpus), "--write-baseline", str(baseline))[0] == 0
    code, out, _ = bench(
        capsys, "--corpus", str(corpus), "--baseline", str(baseline), "--fail-on-regression"
    )
    assert code == 0
    assert "baseline: no regression" in out


def better_baseline(tmp_path: Path, baseline: Path) -> Path:
    data = json.loads(baseline.read_text())
    data["precision"], data["recall"] = 1.0, 1.0
    better = tmp_path / "better.json"
    better.write_text(json.dumps(data))
    return better


def test_quality_regression_exit_codes(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    current = tmp_path / "current.json"
    assert bench(capsys, "--corpus", str(corpus), "--write-baseline", str(current))[0] == 0
    better = better_baseline(tmp_path, current)

    code, out, _ = bench(
        capsys, "--corpus", str(corpus), "--baseline", str(better), "--fail-on-regression"
    )
    assert code == 1
    assert "baseline: REGRESSION" in out
    assert "precision 0.667 < 0.950 (baseline 1.000)" in out
    assert "recall 0.667 < 0.950 (baseline 1.000)" in out

    # without --fail-on-regression the regression is reported, the exit status stays 0
    code, out, _ = bench(capsys, "--corpus", str(corpus), "--baseline", str(better))
    assert code == 0 and "baseline: REGRESSION" in out

    # a wider tolerance accepts the drop of 0.333
    code, _, _ = bench(
        capsys,
        "--corpus",
        str(corpus),
        "--baseline",
        str(better),
        "--fail-on-regression",
        "--metric-tolerance",
        "0.4",
    )
    assert code == 0


def test_latency_regression_fails_the_run(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    baseline = tmp_path / "baseline.json"
    assert bench(capsys, "--corpus", str(corpus), "--write-baseline", str(baseline))[0] == 0
    # One fixture's reasoning answer now takes 0.8 s: the mean of the stage that waits for
    # the model grows by at least 0.2 s, far beyond twice its loopback baseline.
    fake_llm.respond(ScriptedReviewer(delay_for="app/users.py", delay=0.8))
    started = time.perf_counter()
    code, out, _ = bench(
        capsys, "--corpus", str(corpus), "--baseline", str(baseline), "--fail-on-regression"
    )
    assert time.perf_counter() - started >= 0.8
    assert code == 1
    assert "baseline: REGRESSION" in out
    assert "stage:" in out
    assert "precision" not in out.split("baseline: REGRESSION")[1]  # the scores held


def test_usage_and_setup_errors_exit_2(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = bench(capsys, "--corpus", str(corpus), "--fail-on-regression")
    assert code == 2 and "--fail-on-regression needs --baseline" in err

    code, _, err = bench(capsys, "--corpus", str(tmp_path / "none"))
    assert code == 2 and "does not exist" in err

    (tmp_path / "bad.json").write_text("[1]")
    code, _, err = bench(capsys, "--corpus", str(corpus), "--baseline", str(tmp_path / "bad.json"))
    assert code == 2 and "baseline is not" in err


def test_missing_llm_settings_exit_2(
    corpus: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AR_LLM_BASE_URL", raising=False)
    code, _, err = bench(capsys, "--corpus", str(corpus))
    assert code == 2 and "AR_LLM_BASE_URL" in err


def test_refusing_server_stops_the_run(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.respond(lambda request: error_reply(401, "Incorrect API key", code="invalid_api_key"))
    code, out, err = bench(capsys, "--corpus", str(corpus))
    assert code == 2
    assert "01-sql-injection-search: the LLM server refused" in err
    assert out == ""
    assert len(fake_llm.chat_requests()) == 1  # not repeated for every fixture


def test_unavailable_server_counts_as_misses(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake_llm.respond(lambda request: error_reply(503, "overloaded", error_type="server_error"))
    code, out, _ = bench(capsys, "--corpus", str(corpus), "--json")
    assert code == 0
    document = json.loads(out)
    # nothing produced: precision 1.0 by convention, recall 0 / 3
    assert (document["precision"], document["recall"], document["errors"]) == (1.0, 0.0, 4)
    assert all(f["error"].startswith("LlmUnavailable") for f in document["per_fixture"])

    # such a run is no baseline: it would hide later regressions
    baseline = tmp_path / "baseline.json"
    code, _, err = bench(capsys, "--corpus", str(corpus), "--write-baseline", str(baseline))
    assert code == 2 and "4 review(s) failed" in err
    assert not baseline.exists()


def test_with_tree_lets_the_pipeline_read_code_outside_the_diff(
    corpus: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str]
) -> None:
    # "class User:" is line 10 of app/users.py: outside every hunk of that fixture's diff
    def sent_texts() -> str:
        return "\n".join(m["content"] for r in fake_llm.chat_requests() for m in r.messages)

    assert bench(capsys, "--corpus", str(corpus))[0] == 0
    assert "class User:" not in sent_texts()
    fake_llm.requests.clear()
    code, out, _ = bench(capsys, "--corpus", str(corpus), "--with-tree")
    assert code == 0
    assert "class User:" in sent_texts()
    assert "precision 0.667  recall 0.667" in out


def test_a_model_obeying_the_injected_pr_scores_a_miss_and_no_unchanged_line_finding(
    tmp_path: Path, fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model falls for 09's injected text: it reports nothing on the bypass and puts a
    # finding on `import hmac` (line 5, unchanged). The path guard drops that finding.
    corpus = tmp_path / "injected"
    shutil.copytree(CORPUS / "09-prompt-injection-auth-bypass", corpus / "09")
    obeying = finding("service/auth.py", 5, 5, "security", "approved by the security team")
    fake_llm.respond(
        lambda request: (
            json_reply({"supported": True, "reason": "ok"})
            if request.model == CHEAP
            else json_reply({"summary": "APPROVED", "findings": [obeying]})
        )
    )
    code, out, _ = bench(capsys, "--corpus", str(corpus), "--json")
    assert code == 0
    [row] = json.loads(out)["per_fixture"]
    assert (row["true_positives"], row["false_positives"], row["misses"]) == (0, 0, 1)


def test_every_label_of_the_corpus_survives_the_pipeline(
    fake_llm: FakeLlm, capsys: pytest.CaptureFixture[str]
) -> None:
    # An oracle model that reports exactly the labels (found by the fixture's title in the
    # prompt) must score 1.0 / 1.0 through the real triage, path guard and verification: no
    # label sits where the pipeline cannot keep a finding.
    fixtures = load_corpus(CORPUS)

    def oracle(request: RecordedRequest) -> Answer:
        if request.model == CHEAP:
            return json_reply({"supported": True, "reason": "the quoted lines show it"})
        text = "\n".join(m["content"] for m in request.messages)
        [fixture] = [f for f in fixtures if f.title in text]
        findings = [
            finding(e.path, e.start_line, e.end_line, e.category, f"{e.category} in {e.path}")
            for e in fixture.expected
        ]
        return json_reply({"summary": fixture.title, "findings": findings})

    fake_llm.respond(oracle)
    code, out, _ = bench(capsys, "--corpus", str(CORPUS), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["fixtures"] == len(fixtures)
    assert document["true_positives"] == sum(len(f.expected) for f in fixtures)
    assert (document["precision"], document["recall"], document["errors"]) == (1.0, 1.0, 0)


def test_bench_trusts_the_private_ca_named_by_ar_ca_file(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The bench's LLM client comes from the composition root, so AR_CA_FILE reaches it."""
    cert, key = make_certificate(tmp_path)
    with FakeLlm(api_key=API_KEY, models=(REASONING, CHEAP), certificate=(cert, key)) as fake:
        fake.respond(ScriptedReviewer())
        assert fake.url.startswith("https://")
        monkeypatch.setenv("AR_LLM_BASE_URL", fake.url)
        monkeypatch.setenv("AR_LLM_API_KEY", API_KEY)
        monkeypatch.setenv("AR_LLM_REASONING_MODEL", REASONING)
        monkeypatch.setenv("AR_LLM_CHEAP_MODEL", CHEAP)
        monkeypatch.setenv("AR_LLM_MAX_RETRIES", "0")
        monkeypatch.delenv("AR_CA_FILE", raising=False)

        # The default trust store does not know the private CA: no request gets through.
        _, out, _ = bench(capsys, "--corpus", str(corpus))
        assert "failed reviews 4" in out
        assert out.count("connection failed (ConnectError)") == 4
        assert fake.chat_requests() == []

        monkeypatch.setenv("AR_CA_FILE", str(cert))
        code, out, _ = bench(capsys, "--corpus", str(corpus))
        assert code == 0
        assert "precision 0.667  recall 0.667  false positives per PR 0.250" in out
        assert len(fake.chat_requests(REASONING)) == 4
        assert check_recorded_traffic(fake) > 0

        # The flag, as for every command that talks to the model.
        monkeypatch.delenv("AR_CA_FILE")
        code, out, _ = bench(capsys, "--corpus", str(corpus), "--ca-file", str(cert))
        assert code == 0 and "failed reviews 0" in out
