"""ForgejoClient against the loopback Forgejo, checked against Gitea's API description."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from tests.support.failure_texts import failure_texts
from tests.support.fake_forgejo import FakeForgejo
from tests.support.openapi_check import ApiSpec
from tests.support.ports import closed_port

from auto_review.core.refs import HostKind, RepoRef
from auto_review.hosts.base import (
    HostAuthError,
    HostError,
    HostNotFound,
    HostUnavailable,
    ReviewHost,
)
from auto_review.hosts.forgejo import ForgejoClient, api_root
from auto_review.outbound.policy import RetryPolicy

TOKEN = "canary-forgejo-token-5d1e8b77a0"
HEAD = "1f" * 20
BASE = "2e" * 20
REPO = RepoRef(HostKind.FORGEJO, "acme", "widgets")
FAST = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.02)
T = TypeVar("T")


@pytest.fixture(scope="module")
def spec() -> ApiSpec:
    return ApiSpec.gitea()


@pytest.fixture
def forge() -> Iterator[FakeForgejo]:
    fake = FakeForgejo(TOKEN)
    with fake:
        fake.add_pull_request("acme", "widgets", 7, head_sha=HEAD, base_sha=BASE, author="alice")
        yield fake


def with_client(
    url: str,
    action: Callable[[ForgejoClient], Awaitable[T]],
    *,
    token: str = TOKEN,
    **options: Any,
) -> T:
    async def go() -> T:
        async with ForgejoClient(url, token, retry=FAST, **options) as client:
            return await action(client)

    return asyncio.run(go())


def assert_secret_free(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    for text in failure_texts(exc, caplog):
        assert TOKEN not in text


def test_client_satisfies_the_review_host_protocol(forge: FakeForgejo) -> None:
    forgejo = ForgejoClient(forge.url, TOKEN)
    client: ReviewHost = forgejo  # mypy checks every protocol method's signature here
    assert client.kind is HostKind.FORGEJO
    assert TOKEN not in repr(client)
    assert TOKEN not in str(vars(forgejo._http))  # not even on the HTTP wrapper
    assert TOKEN not in str(vars(forgejo)) and TOKEN not in f"{forgejo._token}"


def test_get_pull_request(forge: FakeForgejo, spec: ApiSpec) -> None:
    info = with_client(forge.url, lambda c: c.get_pull_request(REPO, 7))
    assert (info.number, info.head_sha, info.base_sha) == (7, HEAD, BASE)
    assert (info.author, info.draft, info.state, info.title) == (
        "alice",
        False,
        "open",
        "Add a feature",
    )
    assert info.repo == REPO
    (exchange,) = forge.exchanges
    assert exchange.path == "/api/v1/repos/acme/widgets/pulls/7"
    assert exchange.headers["authorization"] == f"token {TOKEN}"
    spec.assert_conforms(forge.exchanges)


def test_merged_pull_request_reports_merged(forge: FakeForgejo) -> None:
    forge.add_pull_request(
        "acme", "widgets", 8, head_sha=HEAD, base_sha=BASE, state="closed", merged=True
    )
    assert with_client(forge.url, lambda c: c.get_pull_request(REPO, 8)).state == "merged"


def test_old_gitea_draft_comes_from_the_wip_title(forge: FakeForgejo, spec: ApiSpec) -> None:
    forge.add_pull_request(
        "acme", "widgets", 9, head_sha=HEAD, base_sha=BASE, draft=None, title="WIP: half done"
    )
    forge.add_pull_request(
        "acme", "widgets", 10, head_sha=HEAD, base_sha=BASE, draft=None, title="Done"
    )
    assert with_client(forge.url, lambda c: c.get_pull_request(REPO, 9)).draft is True
    assert with_client(forge.url, lambda c: c.get_pull_request(REPO, 10)).draft is False
    spec.assert_conforms(forge.exchanges)


def test_pull_request_with_a_bad_sha_is_refused(forge: FakeForgejo) -> None:
    forge.add_pull_request("acme", "widgets", 11, head_sha="--upload-pack=x", base_sha=BASE)
    with pytest.raises(HostError, match=r"head\.sha is no SHA"):
        with_client(forge.url, lambda c: c.get_pull_request(REPO, 11))


def test_missing_pull_request_is_not_found(
    forge: FakeForgejo, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(HostNotFound) as info:
        with_client(forge.url, lambda c: c.get_pull_request(REPO, 99))
    assert str(info.value) == "forgejo get pull request: HTTP 404 (not found)"
    assert_secret_free(info.value, caplog)


def test_wrong_token_is_an_auth_error(forge: FakeForgejo, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "canary-wrong-token-0c9d11"
    with caplog.at_level(logging.DEBUG), pytest.raises(HostAuthError) as info:
        with_client(forge.url, lambda c: c.get_pull_request(REPO, 7), token=wrong)
    assert str(info.value) == "forgejo get pull request: HTTP 401 (credentials refused)"
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert len(forge.exchanges) == 1  # auth failures are not retried


def test_forbidden_is_an_auth_error(forge: FakeForgejo, caplog: pytest.LogCaptureFixture) -> None:
    forge.fail(403, body={"message": "token does not have required scope", "url": TOKEN})
    with caplog.at_level(logging.DEBUG), pytest.raises(HostAuthError) as info:
        with_client(forge.url, lambda c: c.get_pull_request(REPO, 7))
    assert info.value.status == 403
    assert_secret_free(info.value, caplog)


def test_server_errors_exhaust_retries(
    forge: FakeForgejo, caplog: pytest.LogCaptureFixture
) -> None:
    forge.fail(500, times=5)
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        with_client(forge.url, lambda c: c.get_pull_request(REPO, 7))
    assert str(info.value) == "forgejo get pull request: HTTP 500 after 2 attempt(s)"
    assert_secret_free(info.value, caplog)


def test_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        with_client(f"http://127.0.0.1:{closed_port()}", lambda c: c.ping())
    assert str(info.value) == "forgejo ping: connection failed (ConnectError)"
    assert_secret_free(info.value, caplog)


def test_timeout(forge: FakeForgejo, caplog: pytest.LogCaptureFixture) -> None:
    forge.delay(1.0, times=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        with_client(forge.url, lambda c: c.get_pull_request(REPO, 7), timeout=0.2)
    assert str(info.value) == "forgejo get pull request: timed out after 2 attempt(s)"
    assert_secret_free(info.value, caplog)


def test_list_comments_keeps_pr_comments_only(forge: FakeForgejo, spec: ApiSpec) -> None:
    now = datetime.now(UTC)
    first = forge.add_comment(
        "acme",
        "widgets",
        7,
        author="bob",
        body="@auto-review help",
        updated_at=now - timedelta(seconds=30),
    )
    forge.add_comment(
        "acme",
        "widgets",
        3,
        author="bob",
        body="on an issue",
        on_pull=False,
        updated_at=now - timedelta(seconds=20),
    )
    second = forge.add_comment(
        "acme", "widgets", 7, author="carol", body="thanks", updated_at=now - timedelta(seconds=10)
    )
    forge.add_comment("acme", "other", 7, author="bob", body="other repo", updated_at=now)
    events = with_client(
        forge.url, lambda c: c.list_recent_pr_comments(REPO, now - timedelta(minutes=1))
    )
    assert [(e.comment_id, e.pr_number, e.author, e.body) for e in events] == [
        (first, 7, "bob", "@auto-review help"),
        (second, 7, "carol", "thanks"),
    ]
    assert all(e.is_pull_request and e.repo == REPO for e in events)
    (exchange,) = forge.exchanges
    assert exchange.query["since"] == [(now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    spec.assert_conforms(forge.exchanges)


def test_list_comments_honours_since(forge: FakeForgejo) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    forge.add_comment(
        "acme", "widgets", 7, author="bob", body="old", updated_at=now - timedelta(hours=2)
    )
    new = forge.add_comment("acme", "widgets", 7, author="bob", body="new", updated_at=now)
    events = with_client(
        forge.url, lambda c: c.list_recent_pr_comments(REPO, now - timedelta(hours=1))
    )
    assert [e.comment_id for e in events] == [new]


def test_list_comments_follows_pages(forge: FakeForgejo, spec: ApiSpec) -> None:
    now = datetime.now(UTC)
    ids = [
        forge.add_comment(
            "acme",
            "widgets",
            7,
            author="bob",
            body=f"c{i}",
            updated_at=now - timedelta(seconds=60 - i),
        )
        for i in range(7)
    ]
    events = with_client(
        forge.url,
        lambda c: c.list_recent_pr_comments(REPO, now - timedelta(minutes=5)),
        page_size=3,
    )
    assert [e.comment_id for e in events] == ids
    assert [e.query["page"] for e in forge.exchanges] == [["1"], ["2"], ["3"]]
    assert all(e.query["limit"] == ["3"] for e in forge.exchanges)
    spec.assert_conforms(forge.exchanges)


def test_list_comments_stops_at_the_page_cap(
    forge: FakeForgejo, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    for i in range(10):
        forge.add_comment("acme", "widgets", 7, author="bob", body=f"c{i}", updated_at=now)
    with caplog.at_level(logging.WARNING):
        events = with_client(
            forge.url,
            lambda c: c.list_recent_pr_comments(REPO, now - timedelta(minutes=1)),
            page_size=2,
            max_pages=3,
        )
    assert len(events) == 6 and len(forge.exchanges) == 3
    assert "truncated" in caplog.text


def test_page_size_above_the_server_maximum_still_reads_everything(forge: FakeForgejo) -> None:
    # Gitea caps limit at MAX_RESPONSE_ITEMS: the client follows Link, not its own page size.
    now = datetime.now(UTC)
    for i in range(FakeForgejo.MAX_PAGE_SIZE + 5):
        forge.add_comment("acme", "widgets", 7, author="bob", body=f"c{i}", updated_at=now)
    events = with_client(
        forge.url,
        lambda c: c.list_recent_pr_comments(REPO, now - timedelta(minutes=1)),
        page_size=100,
    )
    assert len(events) == FakeForgejo.MAX_PAGE_SIZE + 5


def test_malformed_comment_is_skipped_not_fatal(
    forge: FakeForgejo, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    good = forge.add_comment("acme", "widgets", 7, author="bob", body="fine", updated_at=now)
    forge.add_comment("acme", "widgets", 7, author="bad login!", body="x", updated_at=now)
    with caplog.at_level(logging.WARNING):
        events = with_client(
            forge.url, lambda c: c.list_recent_pr_comments(REPO, now - timedelta(minutes=1))
        )
    assert [e.comment_id for e in events] == [good]
    assert "skipping a malformed comment" in caplog.text


def test_since_must_be_timezone_aware(forge: FakeForgejo) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        with_client(forge.url, lambda c: c.list_recent_pr_comments(REPO, datetime(2026, 1, 1)))


def test_ping_checks_the_token(forge: FakeForgejo, spec: ApiSpec) -> None:
    with_client(forge.url, lambda c: c.ping())
    assert forge.exchanges[0].path == "/api/v1/user"
    spec.assert_conforms(forge.exchanges)
    with pytest.raises(HostAuthError, match="forgejo ping: HTTP 401"):
        with_client(forge.url, lambda c: c.ping(), token="canary-revoked-token-xx")


def test_api_root_accepts_both_spellings() -> None:
    assert api_root("https://forge.example/") == "https://forge.example/api/v1"
    assert api_root("https://forge.example/git/api/v1") == "https://forge.example/git/api/v1"
    with pytest.raises(ValueError) as info:
        ForgejoClient(f"https://bot:{TOKEN}@forge.example", TOKEN)
    assert TOKEN not in str(info.value)
