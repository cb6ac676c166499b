"""`auto-review review diff` and `review once` as an operator runs them: a subprocess with
AR_* settings, against the loopback LLM (and forge), exit status and output checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from tests.integration.review.test_pipeline_setup import (
    BOT,
    CHEAP_MODEL,
    FORGE_TOKEN,
    LLM_KEY,
    REASONING_MODEL,
    ModelScript,
    ServedRepo,
    assert_no_canary,
    finding,
    findings_answer,
    serve_repo,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import FakeLlm
from tests.support.openapi_check import ApiSpec

PATCH = "\n".join(
    [
        "diff --git a/calc.py b/calc.py",
        "index 1111111..2222222 100644",
        "--- a/calc.py",
        "+++ b/calc.py",
        "@@ -1,2 +1,3 @@",
        " def mean(values):",
        "-    return sum(values) / len(values)",
        "+    total = sum(values)",
        "+    return total / (len(values) - 1)",
        "",
    ]
)
OFF_BY_ONE = finding(
    "calc.py",
    3,
    title="Divides by one less than the count",
    category="off-by-one",
    body=f"Also, the key {LLM_KEY} is visible. \x1b[31mred\x1b[0m",
)


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    with FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]) as fake:
        yield fake


def run_cli(
    args: list[str], settings: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AR_")}
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "review", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def llm_settings(llm: FakeLlm, state: Path, key: str = LLM_KEY) -> dict[str, str]:
    return {
        "AR_LLM_BASE_URL": llm.url,
        "AR_LLM_API_KEY": key,
        "AR_LLM_REASONING_MODEL": REASONING_MODEL,
        "AR_LLM_CHEAP_MODEL": CHEAP_MODEL,
        "AR_LLM_MAX_RETRIES": "0",
        "AR_STATE_DIR": str(state),
    }


def test_review_diff_prints_findings_and_exits_1(tmp_path: Path, llm: FakeLlm) -> None:
    patch = tmp_path / "change.patch"
    patch.write_text(PATCH)
    llm.respond(ModelScript([findings_answer(OFF_BY_ONE, summary="One bug.")]))
    done = run_cli(["diff", str(patch)], llm_settings(llm, tmp_path / "state"), tmp_path)
    assert done.returncode == 1, done.stderr
    assert "findings kept: 1" in done.stdout
    assert "calc.py:3  Divides by one less than the count" in done.stdout
    assert "stages: diff" in done.stdout and "tokens: reasoning" in done.stdout
    assert_no_canary(done.stdout + done.stderr, "the command's output")
    assert "\x1b" not in done.stdout  # no terminal escape from model text


def test_review_diff_json_and_a_clean_patch(tmp_path: Path, llm: FakeLlm) -> None:
    patch = tmp_path / "change.patch"
    patch.write_text(PATCH)
    llm.respond(ModelScript([findings_answer(summary="Fine.")]))
    done = run_cli(["diff", "--json", str(patch)], llm_settings(llm, tmp_path / "s"), tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kept"] == [] and report["summary"] == "Fine."
    assert set(report["stage_seconds"]) >= {"diff", "triage", "context", "llm"}


def test_review_diff_applies_a_config_file(tmp_path: Path, llm: FakeLlm) -> None:
    patch, config = tmp_path / "change.patch", tmp_path / ".auto_review.yaml"
    patch.write_text(PATCH)
    config.write_text("severity_floor: critical\n")
    llm.respond(ModelScript([findings_answer(OFF_BY_ONE)]))
    args = ["diff", "--json", "--config", str(config), str(patch)]
    done = run_cli(args, llm_settings(llm, tmp_path / "s"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert [d["reason"] for d in json.loads(done.stdout)["dropped"]] == ["below-floor"]


@pytest.mark.parametrize(
    ("args", "settings", "status", "message"),
    [
        (["diff", "not-a.patch"], {}, 2, "cannot read the patch"),
        (["diff", "garbage.patch"], {}, 2, "not a unified diff"),
        (["diff", "change.patch"], {"AR_LLM_REASONING_MODEL": ""}, 2, "AR_LLM_REASONING_MODEL"),
        (["diff", "change.patch"], {"AR_LLM_API_KEY": "wrong-key-123"}, 3, "review failed"),
        (["once", "--repo", "not a repo", "--pr", "1"], {}, 2, "--repo must be"),
        (["once", "--repo", "acme/shop", "--pr", "1"], {}, 2, "no forgejo forge"),
    ],
)
def test_review_errors_have_documented_exit_codes(
    tmp_path: Path,
    llm: FakeLlm,
    args: list[str],
    settings: dict[str, str],
    status: int,
    message: str,
) -> None:
    (tmp_path / "change.patch").write_text(PATCH)
    (tmp_path / "garbage.patch").write_text("diff --cc calc.py\n")
    llm.respond(ModelScript([findings_answer()]))
    done = run_cli(args, {**llm_settings(llm, tmp_path / "s"), **settings}, tmp_path)
    assert done.returncode == status, done.stdout + done.stderr
    assert message in done.stderr
    assert_no_canary(done.stdout + done.stderr, "the command's output")


@pytest.fixture
def forge_pr(tmp_path: Path) -> Iterator[tuple[FakeForgejo, ServedRepo]]:
    repo = serve_repo(
        tmp_path, {"calc.py": "def mean(values):\n    return 0\n"}, username=BOT, token=FORGE_TOKEN
    )
    head = "def mean(values):\n    total = sum(values)\n    return total / (len(values) - 1)\n"
    repo.push({"calc.py": head})
    forge = FakeForgejo(FORGE_TOKEN, bot_login=BOT).start()
    forge.add_pull_request(
        "acme",
        "shop",
        1,
        head_sha=repo.head_sha,
        base_sha=repo.base_sha,
        diff=repo.diff(),
        clone_url=repo.clone_url,
    )
    try:
        yield forge, repo
    finally:
        forge.stop()
        repo.server.close()


def once_settings(
    llm: FakeLlm, forge: FakeForgejo, repo: ServedRepo, state: Path
) -> dict[str, str]:
    return {
        **llm_settings(llm, state),
        "AR_FORGEJO_URL": forge.url,
        "AR_FORGEJO_TOKEN": FORGE_TOKEN,
        "AR_BOT_LOGIN": BOT,
        "AR_CA_FILE": str(repo.server.cert),
        "HTTPS_PROXY": "",
    }


def test_review_once_dry_run_prints_the_plan_and_posts_nothing(
    tmp_path: Path, llm: FakeLlm, forge_pr: tuple[FakeForgejo, ServedRepo]
) -> None:
    forge, repo = forge_pr
    llm.respond(ModelScript([findings_answer(OFF_BY_ONE)]))
    settings = once_settings(llm, forge, repo, tmp_path / "state")
    args = ["once", "--repo", "forgejo:acme/shop", "--pr", "1", "--dry-run"]
    done = run_cli(args, settings, tmp_path)
    assert done.returncode == 1, done.stderr
    assert "would post (dry run):" in done.stdout
    assert "comment on calc.py:3:" in done.stdout
    assert "status: failure" in done.stdout
    assert forge.posted_reviews("acme", "shop", 1) == [] and forge.statuses(repo.head_sha) == []
    assert_no_canary(done.stdout + done.stderr, "the command's output")

    # Without --dry-run the same command posts, and a second run has nothing new to say.
    done = run_cli(args[:-1], settings, tmp_path)
    assert done.returncode == 1, done.stderr
    [review] = forge.posted_reviews("acme", "shop", 1)
    assert [(c.path, c.line) for c in review.comments] == [("calc.py", 3)]
    again = run_cli([*args[:-1], "--json"], settings, tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped_reason"] == "this commit was already reviewed"
    ApiSpec.gitea().assert_conforms(forge.exchanges)
