"""Wake-ups between processes: PostgreSQL's LISTEN/NOTIFY on one channel.

A transaction that makes jobs claimable sends `NOTIFY` on CHANNEL with its store's token as
the payload (delivered only if it commits); every open store listens on its own connection
and calls its new-jobs listeners for the other stores' notifications (its own commits call
them directly), so the idle workers of every replica claim at once instead of at their next
poll. A
notification lost (the listening connection broke, the database restarted) costs only the
wait until that poll: the workers' polling stays the fallback, and the listener reconnects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, LiteralString

import psycopg

log = logging.getLogger(__name__)

CHANNEL: LiteralString = "auto_review_jobs"
NOTIFY: LiteralString = "SELECT pg_notify('" + CHANNEL + "', %s)"  # payload: the sender
_WAIT_SECONDS = 1.0  # how often the listener looks at its stop flag
_RECONNECT_SECONDS = 2.0


class JobsListener:
    """A thread that LISTENs on CHANNEL and calls `on_notify()` for each notification that
    another sender than `own_payload` sent."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        on_notify: Callable[[], None],
        own_payload: str,
    ) -> None:
        self._connect = connect
        self._on_notify = on_notify
        self._own_payload = own_payload
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-store-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def listening(self) -> threading.Event:
        """Set while the LISTEN connection is up (tests wait on it)."""
        return self._listening

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection = self._connect()
            except Exception as exc:  # the database is away: the polling covers it
                log.warning("state store listener cannot connect: %s", type(exc).__name__)
                self._stop.wait(_RECONNECT_SECONDS)
                continue
            try:
                connection.autocommit = True
                connection.execute("LISTEN " + CHANNEL)
                self._listening.set()
                while not self._stop.is_set():
                    for notification in connection.notifies(timeout=_WAIT_SECONDS):
                        if notification.payload != self._own_payload:
                            self._on_notify()
            except psycopg.Error as exc:
                log.warning("state store listener lost its connection: %s", type(exc).__name__)
                self._stop.wait(_RECONNECT_SECONDS)
            finally:
                self._listening.clear()
                connection.close()
