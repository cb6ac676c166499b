"""Waiting on what another process does.

A gateway subprocess, a container runtime or a server on the far side of a socket gives
this process no event to wait on; its state shows only in files, a database or an answer.
:func:`wait_until` checks that state until it holds, with a deadline, so a test waits for
a positive signal and never for a fixed time. In-process waits use events instead (the
loopback forge's request log is a condition variable, the worker pool's observer an
``asyncio.Event``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How often another process's state is looked at: short against the waits it serves,
# long enough that the checks cost nothing beside the work they wait for.
CHECK_INTERVAL_SECONDS = 0.02


def wait_until(condition: Callable[[], T], *, timeout: float, what: str) -> T:
    """Return ``condition()``'s first truthy value; AssertionError naming ``what`` once
    ``timeout`` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(CHECK_INTERVAL_SECONDS)
