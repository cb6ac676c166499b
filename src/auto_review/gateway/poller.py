"""Chat poller: finds new pull-request comments by asking the forges, for setups where
webhooks are missing or lossy.

Every ``interval`` seconds, for each configured repository, it lists the PR conversation
comments updated since that repository's watermark and hands the new ones to
``on_comments`` (the intake, which turns mentions into jobs; job dedup keys on the comment id
make a comment seen by both the webhook and the poller one job).

Watermarks are our own clock at the start of the last successful round, kept in a
:class:`WatermarkStore` (durable in the gateway). Each query reaches ``overlap`` seconds
further back than the watermark, so comments are not lost to clock skew between the gateway
and the forge or to comments written while a round was running; comments already handed
over are remembered per repository and not handed over twice. After downtime the poller
catches up at most ``max_lookback`` seconds.

Failure handling: a forge error (or an ``on_comments`` failure) leaves the watermark where
it was, logs one line naming the repository and the error, and backs that repository off
exponentially (``interval * 2**failures``, capped at ``max_backoff``); other repositories
keep being polled. ``stop()`` ends the loop between rounds, or cancels a round still in
flight after a grace period; nothing is lost because watermarks only move after
``on_comments`` returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from auto_review.core.refs import HostKind, RepoRef
from auto_review.hosts.base import HostError, PullRequestSource
from auto_review.hosts.events import CommentEvent

log = logging.getLogger(__name__)

OnComments = Callable[[list[CommentEvent]], Awaitable[None]]


class WatermarkStore(Protocol):
    """Durable per-repository position of the poller."""

    async def get(self, key: str) -> datetime | None: ...

    async def set(self, key: str, value: datetime) -> None: ...


class InMemoryWatermarkStore:
    """Volatile WatermarkStore (tests, and a gateway without a state directory)."""

    def __init__(self) -> None:
        self.values: dict[str, datetime] = {}

    async def get(self, key: str) -> datetime | None:
        return self.values.get(key)

    async def set(self, key: str, value: datetime) -> None:
        self.values[key] = value


def watermark_key(repo: RepoRef) -> str:
    return f"chat-poller:{repo.host.value}:{repo.owner}/{repo.name}"


@dataclass(slots=True)
class RepoPollState:
    failures: int = 0
    next_attempt: float = 0.0  # monotonic seconds; 0 = due now
    last_error: str | None = None
    last_success: datetime | None = None
    # comment id -> start of the round that handed it over
    handed_over: dict[int, datetime] = field(default_factory=dict)


class ChatPoller:
    def __init__(
        self,
        hosts: Mapping[HostKind, PullRequestSource],
        repos: Sequence[RepoRef],
        interval: float,
        on_comments: OnComments,
        state: WatermarkStore,
        *,
        overlap: float = 120.0,
        max_lookback: float = 86_400.0,
        max_backoff: float = 900.0,
        concurrency: int = 4,
        stop_grace: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("poll interval must be positive (0 means: do not start a poller)")
        if overlap < 0 or max_lookback < overlap or max_backoff < interval or concurrency < 1:
            raise ValueError(
                "need overlap >= 0, max_lookback >= overlap, max_backoff >= interval, "
                "concurrency >= 1"
            )
        for repo in repos:
            if repo.host not in hosts:
                raise ValueError(
                    f"poll repository {repo.host.value}:{repo.full_name} has no configured "
                    f"{repo.host.value} client"
                )
        self._hosts = dict(hosts)
        self.repos = list(dict.fromkeys(repos))  # de-duplicated, order kept
        self.interval = interval
        self._on_comments = on_comments
        self._store = state
        self.overlap = timedelta(seconds=overlap)
        self.max_lookback = timedelta(seconds=max_lookback)
        self.max_backoff = max_backoff
        self._limit = asyncio.Semaphore(concurrency)
        self._stop_grace = stop_grace
        self._clock = clock
        self._monotonic = monotonic
        self.states: dict[RepoRef, RepoPollState] = {repo: RepoPollState() for repo in self.repos}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is not None and not self._task.done():
            raise RuntimeError("poller already running")
        self._stopping.clear()
        self._task = asyncio.create_task(self.run(), name="chat-poller")
        return self._task

    async def stop(self) -> None:
        """Stop after the current round; cancel it if it outlasts the grace period."""
        self._stopping.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self._stop_grace)
        except TimeoutError:
            task.cancel()
            await asyncio.wait({task})  # does not re-raise the task's CancelledError
            log.warning("chat poller round cancelled at stop", extra={"grace": self._stop_grace})
        self._task = None

    async def run(self) -> None:
        log.info(
            "chat poller started",
            extra={"repos": len(self.repos), "interval_seconds": self.interval},
        )
        while not self._stopping.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
        log.info("chat poller stopped")

    # -- polling ---------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """One round over every repository that is due; returns comments handed over."""
        counts = await asyncio.gather(*(self._poll_guarded(repo) for repo in self.repos))
        return sum(counts)

    async def _poll_guarded(self, repo: RepoRef) -> int:
        state = self.states[repo]
        if self._monotonic() < state.next_attempt:
            return 0
        async with self._limit:
            try:
                return await self._poll_repo(repo, state)
            except HostError as exc:
                self._failed(repo, state, str(exc))
            except Exception as exc:  # the loop must survive anything one repository does
                log.error(
                    "chat poller round failed unexpectedly",
                    extra={"repo": f"{repo.host.value}:{repo.full_name}"},
                    exc_info=True,
                )
                self._failed(repo, state, f"unexpected {type(exc).__name__}")
            return 0

    async def _poll_repo(self, repo: RepoRef, state: RepoPollState) -> int:
        key = watermark_key(repo)
        round_start = self._clock()
        mark = await self._store.get(key)
        # A watermark ahead of our clock (the clock was set back) must not hide new comments.
        mark = round_start if mark is None else min(mark, round_start)
        since = max(mark - self.overlap, round_start - self.max_lookback)
        events = await self._hosts[repo.host].list_recent_pr_comments(repo, since)
        fresh = [e for e in events if e.comment_id not in state.handed_over]
        fresh = list({e.comment_id: e for e in fresh}.values())  # a page shift can repeat one
        if fresh:
            await self._on_comments(fresh)
        for event in fresh:
            state.handed_over[event.comment_id] = round_start
        # A comment handed over in a round that started before since - overlap can no
        # longer be listed again (its update time precedes that round), so forget it.
        horizon = since - self.overlap
        state.handed_over = {
            cid: when for cid, when in state.handed_over.items() if when >= horizon
        }
        await self._store.set(key, round_start)
        if state.failures:
            log.info(
                "chat poller recovered",
                extra={"repo": f"{repo.host.value}:{repo.full_name}", "failures": state.failures},
            )
        state.failures = 0
        state.next_attempt = 0.0
        state.last_error = None
        state.last_success = round_start
        return len(fresh)

    def _failed(self, repo: RepoRef, state: RepoPollState, error: str) -> None:
        state.failures += 1
        delay = min(self.max_backoff, self.interval * 2 ** min(state.failures, 20))
        state.next_attempt = self._monotonic() + delay
        state.last_error = error
        log.warning(
            "chat poller could not poll repository",
            extra={
                "repo": f"{repo.host.value}:{repo.full_name}",
                "error": error,
                "failures": state.failures,
                "retry_in_seconds": delay,
            },
        )
