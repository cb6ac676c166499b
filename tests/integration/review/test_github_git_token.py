"""A GitHub App installation token refused by git (revoked or expired before the fetch) is
dropped, a new one is minted and the fetch runs once more; a second refusal is final. Real
git against the loopback GitHub's smart HTTP, over https with a private CA."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.review.test_pipeline_setup import (
    CHEAP_MODEL,
    GITHUB_WEBHOOK_SECRET,
    LLM_KEY,
    REASONING_MODEL,
    ModelScript,
    finding,
    findings_answer,
    github_pr_payload,
    pipeline_settings,
    post_github,
    running_gateway,
    wait_for,
)
from tests.support.fake_github import FakeGitHub, generate_app_key
from tests.support.fake_llm import FakeLlm
from tests.support.https_forge import ForgeRepository, create_repository, make_private_ca

from auto_review.core.errors import is_transient
from auto_review.core.redaction import Redactor
from auto_review.core.refs import HostKind, RepoRef
from auto_review.hosts.github import GitHubClient
from auto_review.review.pipeline import describe_failure
from auto_review.review.workspace.gitenv import GitPolicy
from auto_review.review.workspace.pull_request import (
    GitCredentialsRefused,
    WorkspaceSettings,
    pr_workspace,
    renewer,
)

APP_ID = 4711
PRIVATE, PUBLIC = generate_app_key()
REPO = RepoRef(HostKind.GITHUB, "octo", "widgets")


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        tls = make_private_ca(tmp_path / "tls")
        self.tmp = tmp_path
        self.ca = tls.ca
        self.hub = FakeGitHub(APP_ID, PUBLIC).start(tls=tls.server_context())
        self.hub.install("octo", "widgets")
        self.git = self.hub.serve_git(tmp_path / "served")
        self.repo: ForgeRepository = create_repository(
            tmp_path / "served", "octo", "widgets", {"a.py": "x = 1\n"}, number=3
        )
        self.repo.push({"a.py": "x = 2\n"})
        self.hub.add_pull_request(
            "octo", "widgets", 3, head_sha=self.repo.head_sha, base_sha=self.repo.base_sha,
            clone_url=f"{self.hub.url}/octo/widgets.git",
        )  # fmt: skip
        self.settings = WorkspaceSettings(
            parent=tmp_path / "work",
            policy=GitPolicy(ca_file=self.ca),
            max_clone_bytes=50_000_000,
            max_diff_bytes=1_000_000,
        )

    def fetch(self, *, revoke_before_fetch: bool) -> tuple[str, Redactor]:
        """Details and token through the API, then the fetch (with renewal), as the
        pipeline does; returns the fetched head and the job's redactor."""
        redactor = Redactor()

        async def go() -> str:
            tls = ssl.create_default_context(cafile=str(self.ca))
            async with GitHubClient(str(APP_ID), PRIVATE, api_url=self.hub.url, tls=tls) as host:
                pr = await host.get_pull_request_details(REPO, 3)
                access = await host.git_access(REPO)
                redactor.add([access.token])
                if revoke_before_fetch:
                    self.hub.revoke_tokens()
                renew = renewer(host, REPO, redactor.add)
                async with pr_workspace(pr, access, self.settings, renew=renew) as workspace:
                    # The API calls after the fetch use the fresh token too (no 401 there).
                    await host.get_pull_request_details(REPO, 3)
                    return workspace.head_sha

        return asyncio.run(go()), redactor


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    try:
        yield made
    finally:
        made.hub.stop()


def test_a_token_revoked_before_the_fetch_is_renewed_once(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        head, redactor = setup.fetch(revoke_before_fetch=True)
    assert head == setup.repo.head_sha
    assert setup.hub.token_exchanges == 2  # the first token, and one minted after the 401
    assert setup.git.refused >= 1 and setup.git.authorized >= 1
    assert [e.status for e in setup.hub.requests_to("/pulls/3")] == [200, 200]
    assert "fetching with new ones" in caplog.text
    assert not any(t.value in caplog.text for t in setup.hub.tokens)
    # The minted token joined the job's redactor: nothing the job posts or logs can show it.
    [fresh] = setup.hub.tokens
    assert fresh.value not in redactor(f"fetched with {fresh.value}")


def test_a_token_that_git_never_accepts_fails_after_one_renewal(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    setup.hub.revoke_at_next_git(times=100)  # every git request: the token was just revoked
    with caplog.at_level(logging.DEBUG), pytest.raises(GitCredentialsRefused) as info:
        setup.fetch(revoke_before_fetch=False)
    error = info.value
    assert error.renewed and not is_transient(error)
    assert setup.hub.token_exchanges == 2  # one renewal, not a loop
    reason = describe_failure(error)
    assert reason == "git was refused (HTTP 401) the forge credentials, a freshly minted token too"
    text = "\n".join([str(error), repr(error), reason, caplog.text])
    assert "ghs_" not in text and "\n" not in str(error)


def test_a_fetch_with_a_live_token_exchanges_it_once(setup: Setup) -> None:
    head, _ = setup.fetch(revoke_before_fetch=False)
    assert head == setup.repo.head_sha
    assert setup.hub.token_exchanges == 1 and setup.git.authorized >= 1


def test_a_gateway_review_survives_a_token_revoked_before_its_fetch(setup: Setup) -> None:
    """The issue's case end to end: a signed App webhook, the API calls with the first
    token, GitHub revokes it as the clone starts, the review is still posted."""
    setup.hub.add_pull_request(
        "octo", "widgets", 3, head_sha=setup.repo.head_sha, base_sha=setup.repo.base_sha,
        diff=setup.repo.diff(), clone_url=f"{setup.hub.url}/octo/widgets.git",
    )  # fmt: skip
    setup.hub.revoke_at_next_git(times=1)
    with FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]) as llm:
        llm.respond(ModelScript([findings_answer(finding("a.py", 1, title="x is now 2"))]))
        github = {
            "AR_GITHUB_APP_ID": str(APP_ID),
            "AR_GITHUB_APP_PRIVATE_KEY": PRIVATE,
            "AR_GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
            "AR_GITHUB_API_URL": setup.hub.url,
            "AR_BOT_LOGIN": setup.hub.bot_login,
        }
        settings = pipeline_settings(llm=llm, cert=setup.ca, github=github)
        with (
            running_gateway(setup.tmp / "gateway", settings) as gateway,
            httpx.Client(base_url=gateway.base_url, timeout=10) as client,
        ):
            payload = github_pr_payload(setup.repo, owner="octo", name="widgets")  # type: ignore[arg-type]
            assert post_github(client, payload, "pull_request").status_code == 202
            wait_for(
                lambda: [
                    s for s in setup.hub.statuses(setup.repo.head_sha) if s.state != "pending"
                ],
                what="the final status",
            )
            logs = gateway.logs()
    states = [s.state for s in setup.hub.statuses(setup.repo.head_sha)]
    assert states[0] == "pending" and states[-1] in ("success", "failure")
    assert len(setup.hub.posted_reviews("octo", "widgets", 3)) == 1
    assert setup.hub.token_exchanges == 2  # the revoked token and the one minted after the 401
    assert "fetching with new ones" in logs
    assert "ghs_" not in logs
