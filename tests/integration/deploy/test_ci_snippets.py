"""The Forgejo Actions and GitHub Actions snippets in deploy/ci/ run against a real gateway.

The test takes each workflow's `auto-review` step, fills its `env:` expressions the way the
CI runner would (the pull request of the event, the repository's variable and secret), and
runs its `run:` script with bash and the real curl. The gateway, with a loopback Forgejo
and a loopback GitHub behind it, must queue exactly the review the snippet asked for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.gateway.conftest import (
    CI_TOKEN,
    FORGEJO_TOKEN,
    base_settings,
    stop_and_check,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_github import FakeGitHub, generate_app_key
from tests.support.gateway_process import GatewayProcess, start_gateway

SNIPPETS = Path(__file__).resolve().parents[3] / "deploy" / "ci"
APP_ID = 4711
HEAD = "a" * 40
BASE = "b" * 40
EXPRESSION = re.compile(r"\$\{\{\s*([\w.]+)\s*\}\}")


@pytest.fixture(scope="module")
def forges() -> Iterator[tuple[FakeForgejo, FakeGitHub]]:
    private, public = generate_app_key()
    with FakeForgejo(FORGEJO_TOKEN) as forgejo:
        hub = FakeGitHub(APP_ID, public).start()
        hub.private_key_pem = private  # type: ignore[attr-defined]
        try:
            forgejo.add_pull_request("acme", "widgets", 7, head_sha=HEAD, base_sha=BASE)
            hub.add_pull_request("octo", "gadgets", 9, head_sha=HEAD, base_sha=BASE)
            hub.install("octo", "gadgets")
            yield forgejo, hub
        finally:
            hub.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, forges: tuple[FakeForgejo, FakeGitHub]
) -> Iterator[GatewayProcess]:
    forgejo, hub = forges
    settings = {
        **base_settings(forgejo.url),
        "AR_GITHUB_APP_ID": str(APP_ID),
        "AR_GITHUB_APP_PRIVATE_KEY": hub.private_key_pem,  # type: ignore[attr-defined]
        "AR_GITHUB_API_URL": hub.url,
    }
    process = start_gateway(tmp_path_factory.mktemp("ci-snippets"), settings)
    try:
        yield process
    finally:
        stop_and_check(process)


def review_step(snippet: str) -> dict[str, Any]:
    workflow = yaml.safe_load((SNIPPETS / snippet).read_text(encoding="utf-8"))
    job = workflow["jobs"]["auto-review"]
    # It runs only after the project's own checks.
    assert job["needs"] == "test"
    (step,) = [step for step in job["steps"] if step.get("id") == "auto-review"]
    return step


def run_step(
    step: dict[str, Any], context: dict[str, str], workdir: Path
) -> subprocess.CompletedProcess[str]:
    if shutil.which("curl") is None:
        pytest.fail("curl not found: install Debian's `curl` package (the snippets use it)")
    env = {"PATH": "/usr/bin:/bin"}
    for name, value in step["env"].items():
        env[name] = EXPRESSION.sub(lambda match: context[match.group(1)], str(value))
    # The script must not paste expressions in itself: only its env: carries them.
    assert "${{" not in step["run"]
    return subprocess.run(
        ["bash", "-c", step["run"]],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def event_context(
    gateway: GatewayProcess, owner: str, repo: str, pr: int, head: str, token: str = CI_TOKEN
) -> dict[str, str]:
    return {
        "vars.AUTO_REVIEW_URL": gateway.base_url,
        "secrets.AUTO_REVIEW_CI_TOKEN": token,
        "github.repository_owner": owner,
        "github.event.repository.name": repo,
        "github.event.pull_request.number": str(pr),
        "github.event.pull_request.head.sha": head,
    }


def ci_jobs(gateway: GatewayProcess, repo: str) -> list[dict[str, Any]]:
    return [job for job in gateway.queued_jobs(source="ci") if f"|{repo}|" in job["dedup_key"]]


@pytest.mark.parametrize(
    ("snippet", "host", "owner", "repo", "pr"),
    [
        ("forgejo-actions.yml", "forgejo", "acme", "widgets", 7),
        ("github-actions.yml", "github", "octo", "gadgets", 9),
    ],
)
def test_the_snippet_queues_the_review_of_the_pull_requests_head(
    gateway: GatewayProcess, tmp_path: Path, snippet: str, host: str, owner: str, repo: str, pr: int
) -> None:
    step = review_step(snippet)
    assert step["env"]["REVIEW_HOST"] == host
    result = run_step(step, event_context(gateway, owner, repo, pr, HEAD), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "auto-review: review requested" in result.stdout
    [job] = ci_jobs(gateway, f"{owner}/{repo}")
    assert job["dedup_key"] == f"{host}|{owner}/{repo}|{pr}|{HEAD}|review"
    # A second run of the pipeline (a re-run) is a duplicate, still a success.
    again = run_step(step, event_context(gateway, owner, repo, pr, HEAD), tmp_path)
    assert again.returncode == 0 and '"duplicate"' in again.stdout
    assert len(ci_jobs(gateway, f"{owner}/{repo}")) == 1


def test_a_head_that_moved_on_passes_without_a_review(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    step = review_step("forgejo-actions.yml")
    moved = "c" * 40
    result = run_step(step, event_context(gateway, "acme", "widgets", 7, moved), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "moved on" in result.stdout
    assert not [job for job in ci_jobs(gateway, "acme/widgets") if moved in job["dedup_key"]]


def test_a_wrong_token_fails_the_step_and_is_not_echoed(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    step = review_step("github-actions.yml")
    wrong = "CANARY-wrong-ci-token-Zq8Wx3Lp0Vn6Rt2Ym9Kb5Hs1"
    result = run_step(step, event_context(gateway, "octo", "gadgets", 9, HEAD, wrong), tmp_path)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert wrong not in result.stdout + result.stderr
