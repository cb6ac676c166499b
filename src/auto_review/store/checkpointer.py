"""Background WAL checkpoints, so the writer's commits do not pay for them.

By default SQLite checkpoints inside the commit that crosses the WAL size threshold: that
commit copies pages into the database file and fsyncs it, and every caller batched behind it
waits (tens of milliseconds of p99 latency under load). Here a separate thread with its own
connection runs PASSIVE checkpoints, which never block the writer. The writer keeps a high
auto-checkpoint threshold as a safety net in case this thread falls behind or stops.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        interval_seconds: float = 1.0,
        name: str = "sqlite-checkpointer",
    ) -> None:
        self._connection = connect()
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._checkpoints = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def checkpoints(self) -> int:
        return self._checkpoints

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._connection.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._checkpoints += 1
            except sqlite3.Error:
                log.exception("background WAL checkpoint failed")
