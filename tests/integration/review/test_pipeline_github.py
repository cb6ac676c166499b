"""End to end on GitHub: a signed App webhook -> real gateway -> installation token for the
clone and the API -> review with inline comments and a commit status on the loopback GitHub,
every exchange checked against GitHub's OpenAPI description."""

from __future__ import annotations

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
    ServedRepo,
    finding,
    findings_answer,
    github_pr_payload,
    pipeline_settings,
    post_github,
    reasoning_requests,
    running_gateway,
    serve_repo,
    wait_for,
)
from tests.support.fake_github import FakeGitHub, generate_app_key
from tests.support.fake_llm import FakeLlm, check_recorded_traffic
from tests.support.openapi_check import ApiSpec

APP_ID = 31337
OWNER, NAME = "Octo-Org", "Widgets"
BASE = "def parse(text):\n    return int(text)\n"
HEAD = "def parse(text):\n    return int(text)\n\n\ndef first(items):\n    return items[1]\n"


class LatestInstallationToken(str):
    """The git server's expected password: whatever installation token the fake GitHub
    issued last (the App exchanges its JWT for one just before cloning)."""

    fake: FakeGitHub

    def __new__(cls, fake: FakeGitHub) -> LatestInstallationToken:
        token = super().__new__(cls, "")
        token.fake = fake
        return token

    def __format__(self, spec: str) -> str:
        return self.fake.tokens[-1].value if self.fake.tokens else "no-token-issued"


@pytest.fixture
def hub() -> Iterator[FakeGitHub]:
    private, public = generate_app_key()
    fake = FakeGitHub(APP_ID, public).start()
    fake.private_key_pem = private  # type: ignore[attr-defined]
    fake.install(OWNER, NAME)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def repo(tmp_path: Path, hub: FakeGitHub) -> Iterator[ServedRepo]:
    served = serve_repo(
        tmp_path,
        {"lib/parse.py": BASE},
        username="x-access-token",
        token=LatestInstallationToken(hub),
        owner=OWNER,
        name=NAME,
        number=12,
    )
    served.push({"lib/parse.py": HEAD})
    try:
        yield served
    finally:
        served.server.close()


def test_a_github_webhook_becomes_a_review_and_a_status(
    tmp_path: Path, hub: FakeGitHub, repo: ServedRepo
) -> None:
    hub.add_pull_request(
        OWNER,
        NAME,
        12,
        head_sha=repo.head_sha,
        base_sha=repo.base_sha,
        diff=repo.diff(),
        clone_url=repo.clone_url,
    )
    with FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]) as llm:
        llm.respond(
            ModelScript(
                [
                    findings_answer(
                        finding(
                            "lib/parse.py",
                            6,
                            title="Returns the second item",
                            category="off-by-one",
                        ),
                        finding("lib/parse.py", 2, title="int() may raise"),  # unchanged
                    )
                ]
            )
        )
        github = {
            "AR_GITHUB_APP_ID": str(APP_ID),
            "AR_GITHUB_APP_PRIVATE_KEY": hub.private_key_pem,  # type: ignore[attr-defined]
            "AR_GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
            "AR_GITHUB_API_URL": hub.url,
            "AR_BOT_LOGIN": hub.bot_login,
        }
        settings = pipeline_settings(llm=llm, cert=repo.server.cert, github=github)
        with (
            running_gateway(tmp_path / "gateway", settings) as gateway,
            httpx.Client(base_url=gateway.base_url, timeout=10) as client,
        ):
            payload = github_pr_payload(repo, owner=OWNER, name=NAME)
            assert post_github(client, payload, "pull_request").status_code == 202
            wait_for(
                lambda: [s for s in hub.statuses(repo.head_sha) if s.state != "pending"],
                what="the final status",
            )
        check_recorded_traffic(llm)
        assert len(reasoning_requests(llm)) == 1

    [review] = hub.posted_reviews(OWNER, NAME, 12)
    assert review.commit_id == repo.head_sha
    assert [(c.path, c.line, c.side) for c in review.comments] == [("lib/parse.py", 6, "new")]
    assert [s.state for s in hub.statuses(repo.head_sha)] == ["pending", "failure"]
    # The clone used the installation token over HTTPS, in the Authorization header only.
    assert repo.server.authorized_requests >= 1
    assert all(hub.tokens[-1].value not in line for line in repo.server.seen if " HTTP/" in line)
    logs = gateway.logs()
    assert hub.tokens and all(token.value not in logs for token in hub.tokens)
    assert "BEGIN PRIVATE KEY" not in logs
    ApiSpec.github().assert_conforms(hub.exchanges)
