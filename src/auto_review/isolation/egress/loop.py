"""An asyncio event loop in a thread of its own, for the egress proxy and bridge.

The launcher's main thread waits on the container and the inner gateway's loop serves
HTTP; the egress pieces run beside them on a private loop that :meth:`stop` shuts down
completely (tasks cancelled, loop closed, thread joined).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """Runs ``setup`` on a new loop in a new thread, then keeps the loop running."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, setup: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Start the thread and return what ``setup`` returned, or raise what it raised."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was already started")
        ready = threading.Event()
        outcome: list[object] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                try:
                    outcome.append(loop.run_until_complete(setup()))
                except BaseException as exc:  # handed to the starting thread
                    outcome.append(exc)
                    ready.set()
                    return
                ready.set()
                loop.run_forever()
            finally:
                _cancel_all(loop)
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{self.name} did not start within {timeout:g} s")
        result = outcome[0]
        if isinstance(result, BaseException):
            self._thread.join(timeout)
            raise result
        # outcome holds the start value or the exception; the exception was raised above.
        return result  # type: ignore[return-value]

    def call(self, coroutine_factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run a coroutine on the loop from another thread and wait for its result."""
        if self._loop is None or not self.running:
            raise RuntimeError(f"{self.name} is not running")

        async def wrapped() -> T:
            return await coroutine_factory()

        future = asyncio.run_coroutine_threadsafe(wrapped(), self._loop)
        return future.result(timeout)

    def stop(self, cleanup: Callable[[], Awaitable[object]] | None, timeout: float) -> None:
        """Run ``cleanup`` on the loop, stop it and join the thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return
        try:
            if cleanup is not None:
                self.call(cleanup, timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"{self.name} did not stop within {timeout:g} s")


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
