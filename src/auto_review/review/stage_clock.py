"""Wall-clock seconds per pipeline stage, for the review report and the bench."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

# The stages a pull-request review reports, in pipeline order.
STAGES = ("clone", "diff", "triage", "context", "llm", "verify", "post")


class StageClock:
    """Adds up the time spent in each named stage (a stage may be entered several times)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
