"""Wall-clock seconds per pipeline stage, for the review report and the bench."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

# The stages a pull-request review reports, in pipeline order.
STAGES = ("clone", "diff", "triage", "context", "llm", "verify", "post")


class StageClock:
    """Adds up the time spent in each named stage (a stage may be entered several times)."""

    def __init__(self, first: str = "details") -> None:
        self.seconds: dict[str, float] = {}
        self.current = first  # the stage entered last: where a failure happened

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.current = name
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
