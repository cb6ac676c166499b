"""GitHubClient's review-pipeline operations against the loopback GitHub; every exchange is
checked against GitHub's OpenAPI description (paths, parameters, media types, request body
fields, responses)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from tests.support.failure_texts import failure_texts
from tests.support.fake_github import FakeGitHub, generate_app_key
from tests.support.openapi_check import ApiSpec
from tests.unit.hosts.conftest import PullDiff

from auto_review.core.refs import HostKind, RepoRef
from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostResponseTooLarge,
    HostUnavailable,
)
from auto_review.hosts.github import GitHubClient
from auto_review.hosts.review_types import (
    CommitState,
    CommitStatus,
    FileChange,
    InlineComment,
    LineSide,
    ReviewDraft,
)
from auto_review.outbound.policy import RetryPolicy

APP_ID = 4711
PRIVATE_KEY, PUBLIC_KEY = generate_app_key()
KEY_BODY_LINE = PRIVATE_KEY.splitlines()[3]
REPO = RepoRef(HostKind.GITHUB, "Acme", "Widgets")  # GitHub names are case-insensitive
FAST = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02, max_retry_after=5)
T = TypeVar("T")


@pytest.fixture(scope="module")
def spec() -> ApiSpec:
    return ApiSpec.github()


@pytest.fixture
def hub(pull_diff: PullDiff) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(APP_ID, PUBLIC_KEY, contents_inline_limit=64)
    with fake:
        fake.install("acme", "widgets", installation_id=99)
        fake.add_pull_request(
            "acme",
            "widgets",
            5,
            head_sha=pull_diff.head_sha,
            base_sha=pull_diff.base_sha,
            author="octocat",
            body=None,
            labels=("security",),
            diff=pull_diff.diff,
        )
        yield fake


def run(url: str, action: Callable[[GitHubClient], Awaitable[T]], **options: Any) -> T:
    async def go() -> T:
        options.setdefault("retry", FAST)
        async with GitHubClient(str(APP_ID), PRIVATE_KEY, api_url=url, **options) as client:
            return await action(client)

    return asyncio.run(go())


def assert_secret_free(
    exc: BaseException, caplog: pytest.LogCaptureFixture, hub: FakeGitHub
) -> None:
    """No installation token, app JWT or key material in any text the failure left."""
    canaries = [KEY_BODY_LINE, *(t.value for t in hub.tokens)]
    canaries += [
        e.headers["authorization"].removeprefix("Bearer ")
        for e in hub.exchanges
        if "authorization" in e.headers
    ]
    assert len(canaries) > 1
    for text in failure_texts(exc, caplog):
        for canary in canaries:
            assert canary not in text
    assert exc.__cause__ is None


def draft(pull_diff: PullDiff, *comments: InlineComment) -> ReviewDraft:
    return ReviewDraft(commit_sha=pull_diff.head_sha, body="Review summary", comments=comments)


# --- reads -----------------------------------------------------------------------------------


def test_pull_request_details(hub: FakeGitHub, spec: ApiSpec, pull_diff: PullDiff) -> None:
    details = run(hub.url, lambda c: c.get_pull_request_details(REPO, 5))
    assert (details.head_sha, details.base_sha) == (pull_diff.head_sha, pull_diff.base_sha)
    assert details.head_ref == "refs/pull/5/head" and details.base_branch == "main"
    assert details.body == ""  # GitHub sends null for an empty description
    assert details.labels == ("security",)
    assert details.clone_url == "https://github.com/acme/widgets.git"
    spec.assert_conforms(hub.exchanges)


def test_diff_uses_the_diff_media_type(hub: FakeGitHub, spec: ApiSpec, pull_diff: PullDiff) -> None:
    assert run(hub.url, lambda c: c.get_diff(REPO, 5, max_bytes=1 << 20)) == pull_diff.diff
    (exchange,) = hub.requests_to("/pulls/5")
    assert exchange.headers["accept"] == "application/vnd.github.diff"
    spec.assert_conforms(hub.exchanges)


def test_diff_over_the_cap(hub: FakeGitHub, pull_diff: PullDiff) -> None:
    with pytest.raises(HostResponseTooLarge):
        run(hub.url, lambda c: c.get_diff(REPO, 5, max_bytes=100))


def test_changed_files_follow_pages(hub: FakeGitHub, spec: ApiSpec) -> None:
    files = run(hub.url, lambda c: c.list_changed_files(REPO, 5), page_size=4)
    by_path = {f.path: f for f in files}
    assert len(by_path) == 6
    assert by_path["gone.txt"].change is FileChange.DELETED
    assert by_path["app.py"].change is FileChange.MODIFIED
    assert by_path["run.sh"].change is FileChange.CHANGED
    assert by_path["new_name.txt"].previous_path == "old_name.txt"
    assert len(hub.requests_to("/pulls/5/files")) == 2
    spec.assert_conforms(hub.exchanges)


def test_get_file_inline_raw_and_missing(
    hub: FakeGitHub, spec: ApiSpec, pull_diff: PullDiff
) -> None:
    small, large = b"ignore:\n  - vendor/**\n", bytes(range(256)) * 4
    hub.add_file("acme", "widgets", pull_diff.head_sha, ".auto_review.yaml", small)
    hub.add_file("acme", "widgets", pull_diff.head_sha, "docs dir/blob.bin", large)

    async def read(client: GitHubClient) -> list[bytes | None]:
        head = pull_diff.head_sha
        return [
            await client.get_file(REPO, ".auto_review.yaml", head, max_bytes=4096),
            await client.get_file(REPO, "docs dir/blob.bin", head, max_bytes=4096),
            await client.get_file(REPO, "absent.txt", head, max_bytes=4096),
        ]

    assert run(hub.url, read) == [small, large, None]
    raw = [e for e in hub.requests_to("/contents/") if e.response_content_type != ""]
    accepts = [e.headers["accept"] for e in hub.requests_to("/contents/docs%20dir/blob.bin")]
    assert accepts == ["application/vnd.github+json", "application/vnd.github.raw+json"]
    assert raw
    spec.assert_conforms(hub.exchanges)


def test_get_file_over_the_cap_is_refused_from_the_size(hub: FakeGitHub) -> None:
    hub.add_file("acme", "widgets", "main", "notes.txt", b"n" * 40)
    with pytest.raises(HostResponseTooLarge):
        run(hub.url, lambda c: c.get_file(REPO, "notes.txt", "main", max_bytes=39))


def test_get_file_of_an_uninstalled_repository_is_not_found(hub: FakeGitHub) -> None:
    other = RepoRef(HostKind.GITHUB, "acme", "elsewhere")
    with pytest.raises(HostNotFound, match="installation lookup"):
        run(hub.url, lambda c: c.get_file(other, "a.txt", "main", max_bytes=10))


def test_git_access_is_the_cached_installation_token(hub: FakeGitHub, spec: ApiSpec) -> None:
    async def access(client: GitHubClient) -> list[Any]:
        return [await client.git_access(REPO), await client.git_access(REPO)]

    first, second = run(hub.url, access)
    assert first.username == "x-access-token"
    assert first.token == hub.tokens[0].value and second == first
    assert len(hub.tokens) == 1 and first.token not in repr(first)
    spec.assert_conforms(hub.exchanges)


def test_concurrent_git_access_shares_one_token_exchange(hub: FakeGitHub) -> None:
    async def together(client: GitHubClient) -> list[Any]:
        return list(await asyncio.gather(*(client.git_access(REPO) for _ in range(3))))

    accesses = run(hub.url, together)
    assert len(hub.tokens) == 1 and {a.token for a in accesses} == {hub.tokens[0].value}


def test_git_access_renews_a_token_near_expiry(hub: FakeGitHub) -> None:
    hub.token_lifetime = 120
    now = [time.time()]

    async def sequential(client: GitHubClient) -> list[Any]:
        first = await client.git_access(REPO)
        now[0] += 95  # less than a quarter of its two minutes left
        return [first, await client.git_access(REPO)]

    first, second = run(hub.url, sequential, clock=lambda: now[0])
    assert first.token != second.token
    assert [t.value for t in hub.tokens] == [first.token, second.token]


def test_renewed_git_access_is_a_new_token(hub: FakeGitHub) -> None:
    async def refused(client: GitHubClient) -> list[Any]:
        first = await client.git_access(REPO)
        renewed = await client.renew_git_access(REPO, first)
        return [first, renewed, await client.git_access(REPO)]

    first, renewed, cached = run(hub.url, refused)
    assert renewed is not None and renewed.token != first.token
    assert cached == renewed and hub.token_exchanges == 2


def test_jobs_refused_the_same_token_share_one_renewal(hub: FakeGitHub) -> None:
    async def together(client: GitHubClient) -> list[Any]:
        first = await client.git_access(REPO)
        renewed = await asyncio.gather(*(client.renew_git_access(REPO, first) for _ in range(4)))
        late = await client.renew_git_access(REPO, first)  # refused long ago: no new token
        return [first, *renewed, late]

    first, *renewed = run(hub.url, together)
    assert len({access.token for access in renewed}) == 1
    assert renewed[0].token != first.token and hub.token_exchanges == 2


# --- writes, read back through the listings ------------------------------------------------


def test_posted_review_is_read_back(hub: FakeGitHub, spec: ApiSpec, pull_diff: PullDiff) -> None:
    new_path, new_line = pull_diff.changed_new_line
    old_path, old_line = pull_diff.removed_old_line
    review = draft(
        pull_diff,
        InlineComment(new_path, new_line, LineSide.NEW, "Unchecked input."),
        InlineComment(old_path, old_line, LineSide.OLD, "Removed validation."),
    )
    hub.add_review("acme", "widgets", 5, author="hubot", body="ok", commit_id=pull_diff.base_sha)

    async def post_and_list(client: GitHubClient) -> tuple[int, Any, Any]:
        review_id = await client.post_review(REPO, 5, review)
        reviews = await client.list_reviews(REPO, 5)
        return review_id, reviews, await client.list_review_comments(REPO, 5)

    review_id, reviews, comments = run(hub.url, post_and_list, page_size=1)
    sent = hub.requests_to("/pulls/5/reviews", "POST")[0].json_body()
    assert sent == {
        "commit_id": pull_diff.head_sha,
        "body": "Review summary",
        "event": "COMMENT",
        "comments": [
            {"path": "app.py", "line": 30, "side": "RIGHT", "body": "Unchecked input."},
            {"path": "app.py", "line": 3, "side": "LEFT", "body": "Removed validation."},
        ],
    }
    (posted,) = hub.posted_reviews("acme", "widgets", 5)
    assert posted.id == review_id and posted.author == "auto-review[bot]"
    assert [(r.author, r.commit_sha) for r in reviews] == [
        ("hubot", pull_diff.base_sha),
        ("auto-review[bot]", pull_diff.head_sha),
    ]
    assert [(c.path, c.line, c.body) for c in comments] == [
        ("app.py", 30, "Unchecked input."),
        ("app.py", 3, "Removed validation."),
    ]
    spec.assert_conforms(hub.exchanges)


def test_review_on_an_unchanged_line_is_refused_once(hub: FakeGitHub, pull_diff: PullDiff) -> None:
    path, line = pull_diff.unchanged_line
    with pytest.raises(HostError, match="HTTP 422"):
        run(
            hub.url,
            lambda c: c.post_review(
                REPO, 5, draft(pull_diff, InlineComment(path, line, LineSide.NEW, "x"))
            ),
        )
    assert len(hub.requests_to("/reviews", "POST")) == 1


def test_post_status_and_issue_comment(hub: FakeGitHub, spec: ApiSpec, pull_diff: PullDiff) -> None:
    status = CommitStatus(CommitState.SUCCESS, "no findings " * 20)

    async def post(client: GitHubClient) -> tuple[int, Any]:
        await client.post_status(REPO, pull_diff.head_sha, status)
        comment_id = await client.post_issue_comment(REPO, 5, "Answer to your question.")
        return comment_id, await client.list_issue_comments(REPO, 5)

    comment_id, listed = run(hub.url, post)
    (stored,) = hub.statuses(pull_diff.head_sha)
    assert (stored.state, stored.context, len(stored.description)) == (
        "success",
        "auto-review",
        140,
    )
    assert "target_url" not in hub.requests_to("/statuses/")[0].json_body()
    assert [(c.id, c.author, c.body) for c in listed] == [
        (comment_id, "auto-review[bot]", "Answer to your question.")
    ]
    spec.assert_conforms(hub.exchanges)


def test_revoked_token_on_a_post_is_replaced_and_posted_once(
    hub: FakeGitHub, pull_diff: PullDiff
) -> None:
    async def twice(client: GitHubClient) -> None:
        await client.post_issue_comment(REPO, 5, "first")
        hub.revoke_tokens()
        await client.post_review(REPO, 5, draft(pull_diff))

    run(hub.url, twice)
    assert [e.status for e in hub.requests_to("/pulls/5/reviews", "POST")] == [401, 200]
    assert len(hub.posted_reviews("acme", "widgets", 5)) == 1
    assert len(hub.tokens) == 1  # the revoked one is gone, a fresh one was issued


def test_rate_limited_review_post_waits_then_posts(hub: FakeGitHub, pull_diff: PullDiff) -> None:
    hub.fail(
        403,
        path_contains="/reviews",
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()))},
    )
    hub.fail(429, path_contains="/reviews", headers={"Retry-After": "0"})
    run(hub.url, lambda c: c.post_review(REPO, 5, draft(pull_diff)))
    assert [e.status for e in hub.requests_to("/reviews", "POST")] == [403, 429, 200]
    assert len(hub.posted_reviews("acme", "widgets", 5)) == 1


def test_review_post_is_not_repeated_after_502(
    hub: FakeGitHub, pull_diff: PullDiff, caplog: pytest.LogCaptureFixture
) -> None:
    hub.fail(502, path_contains="/reviews")
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        run(hub.url, lambda c: c.post_review(REPO, 5, draft(pull_diff)))
    assert str(info.value) == "github post review: HTTP 502"
    assert len(hub.requests_to("/reviews", "POST")) == 1
    assert_secret_free(info.value, caplog, hub)


# --- failures ---------------------------------------------------------------------------------

OPERATIONS: dict[str, Callable[[GitHubClient, PullDiff], Awaitable[Any]]] = {
    "details": lambda c, d: c.get_pull_request_details(REPO, 5),
    "diff": lambda c, d: c.get_diff(REPO, 5, max_bytes=1 << 20),
    "files": lambda c, d: c.list_changed_files(REPO, 5),
    "reviews": lambda c, d: c.list_reviews(REPO, 5),
    "review comments": lambda c, d: c.list_review_comments(REPO, 5),
    "issue comments": lambda c, d: c.list_issue_comments(REPO, 5),
    "file": lambda c, d: c.get_file(REPO, "a.txt", "main", max_bytes=10),
    "review": lambda c, d: c.post_review(REPO, 5, draft(d)),
    "status": lambda c, d: c.post_status(REPO, d.head_sha, CommitStatus(CommitState.ERROR, "x")),
    "comment": lambda c, d: c.post_issue_comment(REPO, 5, "hi"),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
@pytest.mark.parametrize(
    ("status", "error"),
    [(401, HostAuthError), (403, HostAuthError), (404, HostNotFound), (503, HostUnavailable)],
)
def test_every_operation_maps_failures_without_leaking_credentials(
    hub: FakeGitHub,
    pull_diff: PullDiff,
    caplog: pytest.LogCaptureFixture,
    name: str,
    status: int,
    error: type[HostError],
) -> None:
    # fail the API call itself, not the installation lookup and token exchange before it
    for prefix in ("pulls", "issues", "contents", "statuses"):
        hub.fail(status, times=10, path_contains=f"/repos/Acme/Widgets/{prefix}")
    if name == "file" and status == 404:
        assert run(hub.url, lambda c: OPERATIONS[name](c, pull_diff)) is None
        return
    with caplog.at_level(logging.DEBUG), pytest.raises(error) as info:
        run(hub.url, lambda c: OPERATIONS[name](c, pull_diff))
    assert info.value.status == status and info.value.operation.startswith("github ")
    assert_secret_free(info.value, caplog, hub)
    if status == 401:  # one fresh token, then the answer stands
        assert len(hub.tokens) == 2


def test_a_diff_github_will_not_render_is_too_large(
    hub: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    body = {
        "message": "Sorry, the diff exceeded the maximum number of files (300).",
        "documentation_url": "https://docs.github.com/rest",
    }
    hub.fail(406, path_contains="/pulls/5", body=body)
    with caplog.at_level(logging.DEBUG), pytest.raises(HostResponseTooLarge) as info:
        run(hub.url, lambda c: c.get_diff(REPO, 5, max_bytes=1 << 20))
    assert str(info.value) == (
        "github get diff: GitHub will not render a diff this large (HTTP 406)"
    )
    assert len(hub.requests_to("/pulls/5")) == 1
    assert_secret_free(info.value, caplog, hub)


def test_diff_over_the_cap_leaks_nothing(hub: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(HostResponseTooLarge) as info:
        run(hub.url, lambda c: c.get_diff(REPO, 5, max_bytes=10))
    assert_secret_free(info.value, caplog, hub)
