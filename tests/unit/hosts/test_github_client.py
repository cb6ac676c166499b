"""GitHubClient and GitHub App auth against the loopback GitHub, checked against GitHub's
OpenAPI description."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
import pytest
from tests.support.failure_texts import failure_texts
from tests.support.fake_github import FakeGitHub, generate_app_key
from tests.support.openapi_check import ApiSpec
from tests.support.ports import closed_port

from auto_review.core.refs import HostKind, RepoRef
from auto_review.hosts.base import HostAuthError, HostNotFound, HostUnavailable, ReviewHost
from auto_review.hosts.github import GitHubClient
from auto_review.hosts.github_auth import GitHubAppAuth, load_app_key, renew_time
from auto_review.hosts.http import ForgeHttp
from auto_review.outbound.policy import RetryPolicy

APP_ID = 31337
PRIVATE_KEY, PUBLIC_KEY = generate_app_key()
KEY_BODY_LINE = PRIVATE_KEY.splitlines()[3]  # a line of the base64 key material
HEAD = "3c" * 20
BASE = "4d" * 20
REPO = RepoRef(HostKind.GITHUB, "acme", "widgets")
FAST = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.02)
T = TypeVar("T")


@pytest.fixture(scope="module")
def spec() -> ApiSpec:
    return ApiSpec.github()


@pytest.fixture
def hub() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(APP_ID, PUBLIC_KEY)
    with fake:
        fake.install("acme", "widgets", installation_id=777)
        fake.add_pull_request("acme", "widgets", 5, head_sha=HEAD, base_sha=BASE, author="octocat")
        yield fake


def with_client(
    url: str,
    action: Callable[[GitHubClient], Awaitable[T]],
    *,
    key: str = PRIVATE_KEY,
    **options: Any,
) -> T:
    async def go() -> T:
        async with GitHubClient(str(APP_ID), key, api_url=url, retry=FAST, **options) as client:
            return await action(client)

    return asyncio.run(go())


def secrets_seen(hub: FakeGitHub) -> list[str]:
    """Every credential that crossed the wire: installation tokens and app JWTs."""
    found = [t.value for t in hub.tokens]
    for exchange in hub.exchanges:
        auth = exchange.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            found.append(auth.removeprefix("Bearer "))
    return found


def assert_secret_free(
    exc: BaseException, caplog: pytest.LogCaptureFixture, hub: FakeGitHub | None
) -> None:
    canaries = [KEY_BODY_LINE, *(secrets_seen(hub) if hub else [])]
    texts = failure_texts(exc, caplog)
    for canary in canaries:
        for text in texts:
            assert canary not in text


def test_client_satisfies_the_review_host_protocol(hub: FakeGitHub) -> None:
    client: ReviewHost = GitHubClient(str(APP_ID), PRIVATE_KEY, api_url=hub.url)
    assert client.kind is HostKind.GITHUB
    assert KEY_BODY_LINE not in repr(client)
    assert isinstance(client, GitHubClient)
    assert KEY_BODY_LINE not in repr(client.auth)


def test_app_jwt_claims(hub: FakeGitHub) -> None:
    async def go() -> str:
        http = ForgeHttp(hub.url, timeout=5, user_agent="t")
        try:
            return GitHubAppAuth(str(APP_ID), PRIVATE_KEY, http).app_jwt()
        finally:
            await http.aclose()

    before = int(time.time())
    token = asyncio.run(go())
    claims = jwt.decode(token, PUBLIC_KEY, algorithms=["RS256"])
    assert claims["iss"] == str(APP_ID)
    assert before - 61 <= claims["iat"] <= before - 59  # backdated 60 s against clock drift
    assert claims["exp"] - claims["iat"] == 600  # GitHub's ten-minute maximum
    assert jwt.get_unverified_header(token)["alg"] == "RS256"


def test_app_jwt_is_reused_then_renewed(hub: FakeGitHub) -> None:
    now = [1_800_000_000.0]

    async def go() -> list[str]:
        http = ForgeHttp(hub.url, timeout=5, user_agent="t")
        auth = GitHubAppAuth(str(APP_ID), PRIVATE_KEY, http, clock=lambda: now[0])
        first = auth.app_jwt()
        now[0] += 400  # exp is 540 s ahead: still more than a minute left
        second = auth.app_jwt()
        now[0] += 100  # 40 s left: renew
        third = auth.app_jwt()
        await http.aclose()
        return [first, second, third]

    first, second, third = asyncio.run(go())
    assert first == second != third


def test_get_pull_request_via_installation_token(hub: FakeGitHub, spec: ApiSpec) -> None:
    info = with_client(hub.url, lambda c: c.get_pull_request(REPO, 5))
    assert (info.number, info.head_sha, info.base_sha, info.author) == (5, HEAD, BASE, "octocat")
    assert (info.draft, info.state, info.title) == (False, "open", "Add a feature")
    assert [(e.method, e.path) for e in hub.exchanges] == [
        ("GET", "/repos/acme/widgets/installation"),
        ("POST", "/app/installations/777/access_tokens"),
        ("GET", "/repos/acme/widgets/pulls/5"),
    ]
    assert hub.exchanges[2].headers["authorization"] == f"Bearer {hub.tokens[0].value}"
    assert len(hub.jwt_claims) == 2
    spec.assert_conforms(hub.exchanges)


def test_tokens_and_installations_are_cached(hub: FakeGitHub) -> None:
    async def twice(client: GitHubClient) -> None:
        await client.get_pull_request(REPO, 5)
        await client.get_pull_request(RepoRef(HostKind.GITHUB, "ACME", "Widgets"), 5)
        await asyncio.gather(*(client.get_pull_request(REPO, 5) for _ in range(5)))

    with_client(hub.url, twice)
    assert len(hub.tokens) == 1
    assert len(hub.requests_to("widgets/installation")) == 1
    assert len(hub.requests_to("/pulls/5")) == 7


class Clock:
    """The client's clock, moved by the test (the fake's tokens expire in real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("lifetime", "last_reuse", "first_renewal"),
    [
        # expires_at has whole seconds and is set when the server issues the token: the
        # checks keep a few seconds away from the renewal time either way.
        (600, 440, 460),  # ten minutes: renewed when a quarter (150 s) remains
        (120, 80, 100),  # two minutes: reused for 3/4 of its life, not exchanged per call
        (40, 25, 35),
    ],
)
def test_token_is_reused_for_most_of_its_lifetime(
    hub: FakeGitHub, lifetime: float, last_reuse: float, first_renewal: float
) -> None:
    hub.token_lifetime = lifetime
    clock = Clock()
    started = clock.now
    exchanges_seen: list[int] = []

    async def calls(client: GitHubClient) -> None:
        for offset in (0, 1, last_reuse, first_renewal, first_renewal + 1):
            clock.now = started + offset
            await client.get_pull_request(REPO, 5)
            await client.get_pull_request(REPO, 5)
            exchanges_seen.append(hub.token_exchanges)

    with_client(hub.url, calls, clock=clock)
    assert exchanges_seen == [1, 1, 1, 2, 2]
    assert len(hub.requests_to("widgets/installation")) == 1


def test_renewal_time_is_a_quarter_of_the_lifetime_at_most_the_margin() -> None:
    assert renew_time(1000.0, 1000.0 + 3600, 300) == 1000.0 + 3300  # the margin bounds it
    assert renew_time(1000.0, 1000.0 + 600, 300) == 1000.0 + 450
    assert renew_time(1000.0, 1000.0 + 120, 300) == 1000.0 + 90
    assert renew_time(1000.0, 990.0, 300) == 990.0  # arrived expired: never reused


def test_an_already_expired_token_is_not_reused(hub: FakeGitHub) -> None:
    hub.token_lifetime = -5  # the server's clock is ahead: the token arrives expired

    async def twice(client: GitHubClient) -> None:
        await client.auth.installation_token(REPO)
        await client.auth.installation_token(REPO)

    with_client(hub.url, twice)
    assert hub.token_exchanges == 2


def test_revoked_token_is_replaced_once(hub: FakeGitHub) -> None:
    async def revoke_between(client: GitHubClient) -> None:
        await client.get_pull_request(REPO, 5)
        hub.revoke_tokens()
        await client.get_pull_request(REPO, 5)

    with_client(hub.url, revoke_between)
    assert len(hub.tokens) == 1  # the new one; the revoked one was cleared
    assert [e.status for e in hub.requests_to("/pulls/5")] == [200, 401, 200]


def test_reinstalled_app_is_found_again(hub: FakeGitHub) -> None:
    hub.token_lifetime = 120
    clock = Clock()

    async def reinstall_between(client: GitHubClient) -> None:
        await client.get_pull_request(REPO, 5)
        hub.install("acme", "widgets", installation_id=888)  # old id 777 is gone
        clock.now += 100  # the cached token is due for renewal: the next call exchanges
        await client.get_pull_request(REPO, 5)

    with_client(hub.url, reinstall_between, clock=clock)
    exchanges = [(e.path, e.status) for e in hub.requests_to("/installation")]
    assert exchanges == [
        ("/repos/acme/widgets/installation", 200),
        ("/app/installations/777/access_tokens", 201),
        ("/app/installations/777/access_tokens", 404),
        ("/repos/acme/widgets/installation", 200),
        ("/app/installations/888/access_tokens", 201),
    ]


def test_persistent_401_is_an_auth_error(hub: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    hub.fail(401, times=10, path_contains="/pulls/")
    with caplog.at_level(logging.DEBUG), pytest.raises(HostAuthError) as info:
        with_client(hub.url, lambda c: c.get_pull_request(REPO, 5))
    assert str(info.value) == "github get pull request: HTTP 401 (credentials refused)"
    assert len(hub.requests_to("/pulls/5")) == 2
    assert_secret_free(info.value, caplog, hub)


def test_app_not_installed_is_not_found(hub: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    other = RepoRef(HostKind.GITHUB, "acme", "secret-project")
    with caplog.at_level(logging.DEBUG), pytest.raises(HostNotFound) as info:
        with_client(hub.url, lambda c: c.get_pull_request(other, 1))
    assert str(info.value) == "github installation lookup: HTTP 404 (not found)"
    assert_secret_free(info.value, caplog, hub)


def test_missing_pull_request_is_not_found(hub: FakeGitHub, spec: ApiSpec) -> None:
    with pytest.raises(HostNotFound, match="github get pull request: HTTP 404"):
        with_client(hub.url, lambda c: c.get_pull_request(REPO, 404))
    spec.assert_conforms(hub.exchanges)


def test_wrong_app_key_is_an_auth_error(hub: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    other_key, _ = generate_app_key()
    with caplog.at_level(logging.DEBUG), pytest.raises(HostAuthError) as info:
        with_client(hub.url, lambda c: c.ping(), key=other_key)
    assert str(info.value) == "github ping: HTTP 401 (credentials refused)"
    assert hub.jwt_claims == []
    assert_secret_free(info.value, caplog, hub)
    assert other_key.splitlines()[3] not in caplog.text


def test_token_exchange_forbidden(hub: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    hub.fail(403, path_contains="/access_tokens", body={"message": "suspended"})
    with caplog.at_level(logging.DEBUG), pytest.raises(HostAuthError) as info:
        with_client(hub.url, lambda c: c.get_pull_request(REPO, 5))
    assert str(info.value) == "github installation token: HTTP 403 (credentials refused)"
    assert_secret_free(info.value, caplog, hub)


def test_token_exchange_5xx_is_retried(hub: FakeGitHub, spec: ApiSpec) -> None:
    hub.fail(502, path_contains="/access_tokens")
    assert with_client(hub.url, lambda c: c.get_pull_request(REPO, 5)).number == 5
    assert [e.status for e in hub.requests_to("/access_tokens")] == [502, 201]


def test_5xx_exhausted(hub: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    hub.fail(503, times=10, path_contains="/pulls/")
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        with_client(hub.url, lambda c: c.get_pull_request(REPO, 5))
    assert str(info.value) == "github get pull request: HTTP 503 after 2 attempt(s)"
    assert_secret_free(info.value, caplog, hub)


def test_timeout(hub: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    hub.delay(1.0, times=2, path_contains="/pulls/")
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        with_client(hub.url, lambda c: c.get_pull_request(REPO, 5), timeout=0.2)
    assert str(info.value) == "github get pull request: timed out after 2 attempt(s)"
    assert_secret_free(info.value, caplog, hub)


def test_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(HostUnavailable) as info:
        with_client(f"http://127.0.0.1:{closed_port()}", lambda c: c.get_pull_request(REPO, 5))
    assert str(info.value) == "github installation lookup: connection failed (ConnectError)"
    assert_secret_free(info.value, caplog, None)


def test_unreadable_key_fails_without_quoting_it() -> None:
    broken = PRIVATE_KEY.replace(KEY_BODY_LINE, KEY_BODY_LINE[::-1])
    with pytest.raises(HostAuthError) as info:
        load_app_key(broken)
    assert str(info.value) == "github app key: not a readable PEM private key"
    assert KEY_BODY_LINE[::-1] not in str(info.value)
    # the parser's own exception (which could quote input) is not chained onto ours
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(ValueError, match="numeric"):
        GitHubClient("my-app", PRIVATE_KEY)


def test_list_comments_keeps_pr_comments_only(hub: FakeGitHub, spec: ApiSpec) -> None:
    now = datetime.now(UTC)
    first = hub.add_comment(
        "acme",
        "widgets",
        5,
        author="bob",
        body="@auto-review help",
        updated_at=now - timedelta(seconds=30),
    )
    hub.add_comment(
        "acme",
        "widgets",
        2,
        author="bob",
        body="issue",
        on_pull=False,
        updated_at=now - timedelta(seconds=20),
    )
    second = hub.add_comment(
        "acme",
        "widgets",
        5,
        author="dependabot[bot]",
        body="bump",
        updated_at=now - timedelta(seconds=10),
    )
    hub.add_comment(
        "acme", "widgets", 5, author="bob", body="too old", updated_at=now - timedelta(hours=3)
    )
    events = with_client(
        hub.url, lambda c: c.list_recent_pr_comments(REPO, now - timedelta(minutes=1))
    )
    assert [(e.comment_id, e.pr_number, e.author, e.body) for e in events] == [
        (first, 5, "bob", "@auto-review help"),
        (second, 5, "dependabot[bot]", "bump"),
    ]
    (listing,) = hub.requests_to("/issues/comments")
    assert listing.query["sort"] == ["updated"] and listing.query["direction"] == ["asc"]
    spec.assert_conforms(hub.exchanges)


def test_list_comments_follows_pages(hub: FakeGitHub, spec: ApiSpec) -> None:
    now = datetime.now(UTC)
    ids = [
        hub.add_comment(
            "acme",
            "widgets",
            5,
            author="bob",
            body=f"c{i}",
            updated_at=now - timedelta(seconds=50 - i),
        )
        for i in range(5)
    ]
    events = with_client(
        hub.url, lambda c: c.list_recent_pr_comments(REPO, now - timedelta(minutes=5)), page_size=2
    )
    assert [e.comment_id for e in events] == ids
    assert [e.query["page"] for e in hub.requests_to("/issues/comments")] == [["1"], ["2"], ["3"]]
    assert len(hub.tokens) == 1
    spec.assert_conforms(hub.exchanges)


def test_ping_uses_the_app_jwt(hub: FakeGitHub, spec: ApiSpec) -> None:
    with_client(hub.url, lambda c: c.ping())
    (exchange,) = hub.exchanges
    assert exchange.path == "/app" and hub.tokens == []
    spec.assert_conforms(hub.exchanges)


def test_rate_limited_listing_honours_retry_after(hub: FakeGitHub) -> None:
    hub.fail(429, path_contains="/issues/comments", headers={"Retry-After": "1"})
    started = time.monotonic()
    events = with_client(
        hub.url, lambda c: c.list_recent_pr_comments(REPO, datetime.now(UTC) - timedelta(minutes=1))
    )
    assert events == [] and time.monotonic() - started >= 0.9
