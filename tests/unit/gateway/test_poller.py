"""ChatPoller with real forge clients against the loopback Forgejo and GitHub."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_github import FakeGitHub, generate_app_key

from auto_review.core.refs import HostKind, RepoRef
from auto_review.gateway.poller import ChatPoller, InMemoryWatermarkStore, watermark_key
from auto_review.hosts.base import ReviewHost
from auto_review.hosts.events import CommentEvent
from auto_review.hosts.forgejo import ForgejoClient
from auto_review.hosts.github import GitHubClient
from auto_review.outbound.policy import RetryPolicy

TOKEN = "canary-poller-token-44be0912"
REPO = RepoRef(HostKind.FORGEJO, "acme", "widgets")
OTHER = RepoRef(HostKind.FORGEJO, "acme", "gadgets")
FAST = RetryPolicy(attempts=1)


@pytest.fixture
def forge() -> Iterator[FakeForgejo]:
    with FakeForgejo(TOKEN) as fake:
        yield fake


class Intake:
    """Records what the poller hands over; can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[CommentEvent]] = []
        self.fail_next = 0

    async def __call__(self, events: list[CommentEvent]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("intake store unavailable")
        self.batches.append(events)

    @property
    def ids(self) -> list[int]:
        return [e.comment_id for batch in self.batches for e in batch]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_poller(
    hosts: dict[HostKind, ReviewHost],
    repos: list[RepoRef],
    intake: Intake,
    store: InMemoryWatermarkStore | None = None,
    **options: Any,
) -> ChatPoller:
    return ChatPoller(
        hosts,
        repos,
        options.pop("interval", 30.0),
        intake,
        store or InMemoryWatermarkStore(),
        **options,
    )


def forgejo(forge: FakeForgejo, **options: Any) -> ForgejoClient:
    return ForgejoClient(forge.url, TOKEN, retry=FAST, **options)


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def test_new_comments_are_handed_over_once(forge: FakeForgejo) -> None:
    intake, store = Intake(), InMemoryWatermarkStore()

    async def go() -> list[int]:
        client = forgejo(forge)
        poller = make_poller({HostKind.FORGEJO: client}, [REPO], intake, store)
        first = forge.add_comment(
            "acme", "widgets", 7, author="bob", body="@auto-review help", updated_at=ago(10)
        )
        forge.add_comment(
            "acme", "widgets", 3, author="bob", body="issue", on_pull=False, updated_at=ago(5)
        )
        counts = [await poller.poll_once()]
        counts.append(await poller.poll_once())  # nothing new
        second = forge.add_comment(
            "acme", "widgets", 7, author="carol", body="again", updated_at=ago(0)
        )
        counts.append(await poller.poll_once())
        await client.aclose()
        assert intake.ids == [first, second]
        return counts

    assert asyncio.run(go()) == [1, 0, 1]
    assert len(intake.batches) == 2  # no empty hand-over
    mark = store.values[watermark_key(REPO)]
    assert datetime.now(UTC) - mark < timedelta(seconds=10)
    assert len(forge.exchanges) == 3


def test_first_start_looks_back_only_the_overlap(forge: FakeForgejo) -> None:
    forge.add_comment("acme", "widgets", 7, author="bob", body="last week", updated_at=ago(3600))
    recent = forge.add_comment(
        "acme", "widgets", 7, author="bob", body="just now", updated_at=ago(30)
    )
    intake = Intake()

    async def go() -> None:
        async with forgejo(forge) as client:
            await make_poller({HostKind.FORGEJO: client}, [REPO], intake, overlap=120).poll_once()

    asyncio.run(go())
    assert intake.ids == [recent]


def test_forge_clock_behind_within_overlap_is_caught(forge: FakeForgejo) -> None:
    intake = Intake()

    async def go() -> None:
        async with forgejo(forge) as client:
            poller = make_poller({HostKind.FORGEJO: client}, [REPO], intake, overlap=120)
            await poller.poll_once()
            # Written after the round, but the forge's clock is 90 s behind ours.
            late = forge.add_comment(
                "acme", "widgets", 7, author="bob", body="late", updated_at=ago(90)
            )
            await poller.poll_once()
            assert intake.ids == [late]

    asyncio.run(go())


def test_restart_resumes_from_the_durable_watermark(forge: FakeForgejo) -> None:
    store = InMemoryWatermarkStore()
    seen_before = forge.add_comment(
        "acme", "widgets", 7, author="bob", body="one", updated_at=ago(400)
    )

    async def go() -> tuple[Intake, Intake]:
        async with forgejo(forge) as client:
            before, after = Intake(), Intake()
            await make_poller(
                {HostKind.FORGEJO: client}, [REPO], before, store, overlap=600
            ).poll_once()
            # A new poller (a restart) with the same store starts from the stored
            # watermark: the old comment is behind it and its short overlap.
            restarted = make_poller({HostKind.FORGEJO: client}, [REPO], after, store, overlap=60)
            new = forge.add_comment(
                "acme", "widgets", 7, author="bob", body="two", updated_at=ago(1)
            )
            await restarted.poll_once()
            assert after.ids == [new]
            return before, after

    before, _ = asyncio.run(go())
    assert before.ids == [seen_before]
    assert forge.exchanges[-1].query["since"][0] > forge.exchanges[0].query["since"][0]


def test_watermark_ahead_of_the_clock_does_not_hide_comments(forge: FakeForgejo) -> None:
    store = InMemoryWatermarkStore()
    store.values[watermark_key(REPO)] = datetime.now(UTC) + timedelta(days=1)  # clock set back
    comment = forge.add_comment("acme", "widgets", 7, author="bob", body="hi", updated_at=ago(5))
    intake = Intake()

    async def go() -> None:
        async with forgejo(forge) as client:
            await make_poller({HostKind.FORGEJO: client}, [REPO], intake, store).poll_once()

    asyncio.run(go())
    assert intake.ids == [comment]
    assert store.values[watermark_key(REPO)] < datetime.now(UTC)


def test_outage_backs_off_and_recovers(
    forge: FakeForgejo, caplog: pytest.LogCaptureFixture
) -> None:
    intake, store, clock = Intake(), InMemoryWatermarkStore(), Clock()

    async def go() -> None:
        async with forgejo(forge) as client:
            poller = make_poller(
                {HostKind.FORGEJO: client}, [REPO], intake, store, interval=30, monotonic=clock
            )
            await poller.poll_once()
            mark = store.values[watermark_key(REPO)]
            forge.fail(503, times=1000)
            written_during_outage = forge.add_comment(
                "acme", "widgets", 7, author="bob", body="hi", updated_at=ago(0)
            )

            assert await poller.poll_once() == 0
            state = poller.states[REPO]
            assert state.failures == 1 and state.next_attempt == 60
            assert state.last_error == "forgejo list comments: HTTP 503 after 1 attempt(s)"
            requests = len(forge.exchanges)
            clock.now = 59
            await poller.poll_once()
            assert len(forge.exchanges) == requests  # still backing off: no request
            clock.now = 60
            await poller.poll_once()
            assert state.failures == 2 and state.next_attempt == 60 + 120
            assert store.values[watermark_key(REPO)] == mark  # never moved during the outage

            forge.clear_faults()
            clock.now = 180
            assert await poller.poll_once() == 1
            assert intake.ids == [written_during_outage]
            assert state.failures == 0 and state.next_attempt == 0
            assert store.values[watermark_key(REPO)] > mark

    with caplog.at_level(logging.INFO, logger="auto_review"):
        asyncio.run(go())
    warnings = [
        r for r in caplog.records if r.getMessage() == "chat poller could not poll repository"
    ]
    assert len(warnings) == 2
    assert warnings[0].__dict__["repo"] == "forgejo:acme/widgets"
    assert any(r.getMessage() == "chat poller recovered" for r in caplog.records)


def test_backoff_is_capped(forge: FakeForgejo) -> None:
    clock = Clock()

    async def go() -> float:
        async with forgejo(forge) as client:
            poller = make_poller(
                {HostKind.FORGEJO: client},
                [REPO],
                Intake(),
                interval=30,
                max_backoff=100,
                monotonic=clock,
            )
            forge.fail(500, times=1000)
            for _ in range(5):
                clock.now = poller.states[REPO].next_attempt
                await poller.poll_once()
            return poller.states[REPO].next_attempt - clock.now

    assert asyncio.run(go()) == 100


def test_auth_failure_is_logged_without_the_token(
    forge: FakeForgejo, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async with ForgejoClient(forge.url, TOKEN + "-revoked", retry=FAST) as client:
            await make_poller({HostKind.FORGEJO: client}, [REPO], Intake()).poll_once()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(go())
    (warning,) = [r for r in caplog.records if r.name == "auto_review.gateway.poller"]
    assert warning.__dict__["error"] == "forgejo list comments: HTTP 401 (credentials refused)"
    assert TOKEN not in caplog.text
    assert all(TOKEN not in repr(r.__dict__) for r in caplog.records)


def test_intake_failure_keeps_the_watermark_and_retries(forge: FakeForgejo) -> None:
    intake, store, clock = Intake(), InMemoryWatermarkStore(), Clock()
    intake.fail_next = 1
    comment = forge.add_comment("acme", "widgets", 7, author="bob", body="x", updated_at=ago(5))

    async def go() -> None:
        async with forgejo(forge) as client:
            poller = make_poller({HostKind.FORGEJO: client}, [REPO], intake, store, monotonic=clock)
            assert await poller.poll_once() == 0
            assert watermark_key(REPO) not in store.values
            assert poller.states[REPO].last_error == "unexpected RuntimeError"
            clock.now = poller.states[REPO].next_attempt
            assert await poller.poll_once() == 1

    asyncio.run(go())
    assert intake.ids == [comment]


def test_one_failing_repository_does_not_stop_the_others(forge: FakeForgejo) -> None:
    intake = Intake()
    forge.fail(502, times=100, path_contains="/repos/acme/widgets/")
    other = forge.add_comment("acme", "gadgets", 1, author="bob", body="fine", updated_at=ago(3))

    async def go() -> ChatPoller:
        async with forgejo(forge) as client:
            poller = make_poller({HostKind.FORGEJO: client}, [REPO, OTHER], intake)
            await poller.poll_once()
            return poller

    poller = asyncio.run(go())
    assert intake.ids == [other]
    assert poller.states[REPO].failures == 1 and poller.states[OTHER].failures == 0


def test_polls_forgejo_and_github_side_by_side(forge: FakeForgejo) -> None:
    private, public = generate_app_key()
    gh_repo = RepoRef(HostKind.GITHUB, "octo", "app")
    intake = Intake()
    with FakeGitHub(99, public) as hub:
        hub.install("octo", "app")
        gh_comment = hub.add_comment(
            "octo", "app", 12, author="octocat", body="@auto-review help", updated_at=ago(4)
        )
        fj_comment = forge.add_comment(
            "acme", "widgets", 7, author="bob", body="@auto-review help", updated_at=ago(4)
        )

        async def go() -> None:
            async with forgejo(forge) as fj, GitHubClient("99", private, api_url=hub.url) as gh:
                poller = make_poller(
                    {HostKind.FORGEJO: fj, HostKind.GITHUB: gh}, [REPO, gh_repo], intake
                )
                await poller.poll_once()

        asyncio.run(go())
    handed = {(e.repo.host, e.comment_id, e.pr_number) for b in intake.batches for e in b}
    assert handed == {(HostKind.FORGEJO, fj_comment, 7), (HostKind.GITHUB, gh_comment, 12)}


def test_run_polls_every_interval_and_stops_cleanly(forge: FakeForgejo) -> None:
    intake = Intake()

    async def go() -> None:
        async with forgejo(forge) as client:
            poller = make_poller({HostKind.FORGEJO: client}, [REPO], intake, interval=0.05)
            task = poller.start()
            await asyncio.sleep(0.2)
            comment = forge.add_comment(
                "acme", "widgets", 7, author="bob", body="hi", updated_at=ago(0)
            )
            deadline = time.monotonic() + 5
            while comment not in intake.ids and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert intake.ids == [comment]
            await poller.stop()
            assert task.done() and not task.cancelled()
            rounds = len(forge.exchanges)
            await asyncio.sleep(0.2)
            assert len(forge.exchanges) == rounds  # nothing polls after stop
            assert rounds >= 3

    asyncio.run(go())


def test_stop_cancels_a_round_stuck_on_the_forge(forge: FakeForgejo) -> None:
    store = InMemoryWatermarkStore()
    forge.delay(3.0)

    async def go() -> float:
        async with forgejo(forge, timeout=10) as client:
            poller = make_poller(
                {HostKind.FORGEJO: client}, [REPO], Intake(), store, stop_grace=0.2
            )
            task = poller.start()
            while not forge.exchanges:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            await poller.stop()
            assert task.cancelled()
            return time.monotonic() - started

    assert asyncio.run(go()) < 1.5
    assert store.values == {}  # the interrupted round moved nothing


def test_configuration_errors_are_clear(forge: FakeForgejo) -> None:
    client = forgejo(forge)
    with pytest.raises(ValueError, match="interval must be positive"):
        make_poller({HostKind.FORGEJO: client}, [REPO], Intake(), interval=0)
    with pytest.raises(ValueError, match="github:octo/app has no configured github client"):
        make_poller({HostKind.FORGEJO: client}, [RepoRef(HostKind.GITHUB, "octo", "app")], Intake())
    asyncio.run(client.aclose())
