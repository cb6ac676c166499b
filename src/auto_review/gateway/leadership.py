"""A background service that runs on one replica at a time: it runs while this process
holds a leader lock, and stops as soon as the lock is lost.

Every ``check_interval`` seconds a follower tries to take the lock and a leader checks that
it still holds it; so when the leader dies, another replica leads within about one interval
after the database freed the lock. The lock's calls block, and run on a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from auto_review.gateway.app import BackgroundService

log = logging.getLogger(__name__)


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class LeaderGatedService:
    """Runs ``inner`` only while ``lock`` is held; ``on_change(True|False)`` reports it."""

    def __init__(
        self,
        inner: BackgroundService,
        lock: LeaderLock,
        *,
        name: str,
        check_interval: float,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.inner = inner
        self.lock = lock
        self.name = name
        self.check_interval = check_interval
        self.on_change = on_change
        self.leading = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-leadership")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        announced_follower = False
        try:
            while not self._stopping.is_set():
                if self.leading:
                    if not await asyncio.to_thread(self.lock.still_held):
                        log.warning(f"{self.name}: lost the leader lock; stopping here")
                        await self._step_down()
                        announced_follower = False
                elif await asyncio.to_thread(self.lock.try_acquire):
                    log.info(f"{self.name}: this replica holds the leader lock and runs it")
                    await self.inner.start()
                    self.leading = True
                    self.on_change(True)
                elif not announced_follower:
                    log.info(f"{self.name}: another replica holds the leader lock; waiting")
                    self.on_change(False)
                    announced_follower = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.check_interval)
        finally:
            if self.leading:
                await self._step_down()
            await asyncio.to_thread(self.lock.release)

    async def _step_down(self) -> None:
        self.leading = False
        self.on_change(False)
        try:
            await self.inner.stop()
        finally:
            await asyncio.to_thread(self.lock.release)
