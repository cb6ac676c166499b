"""Relay the caller's signals to a foreground container's init while `run` waits for it.

The relay starts as soon as the init exists, before it can be told to start (`run` queues
START early), and ends after the init was reaped, before the container is deleted (so
poststop hooks start with the caller's signal mask and handlers). Two ways, one behaviour
(the usual terminal and service signals reach the init; the caller lives on until the
init exits):

- ``SignalfdRelay``: the signals, and SIGCHLD, are blocked in this thread and read from a
  signalfd. Used when this process has one thread and starts no thread or process before
  the relay ends (no prestart, createRuntime or poststart hook, no ``on_started``): they
  would inherit the blocked mask. It needs no ``signal`` module, whose import (with
  ``enum``, ``functools`` and ``collections``) costs milliseconds of every
  ``auto-review oci run``. A signal the caller had blocked already is left to the caller.
- ``HandlerRelay``: Python signal handlers that forward, for every other caller. Only the
  main thread may set handlers: elsewhere nothing is relayed.
"""

from __future__ import annotations

import os
import sys

from auto_review.oci import syscalls as sc
from auto_review.oci.errors import OciError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORWARDED_SIGNALS = (sc.SIGHUP, sc.SIGINT, sc.SIGQUIT, sc.SIGTERM, sc.SIGUSR1, sc.SIGUSR2,
                     sc.SIGALRM, sc.SIGWINCH)
_READ_BYTES = 16 * sc.SIGNALFD_SIGINFO_BYTES


def _forward(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:  # gone: its exit status will tell
        pass


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


class HandlerRelay:
    def __init__(self, pid: int) -> None:
        import signal

        self.pid = pid
        self._signal = signal
        self._previous: dict[int, Any] = {}

        def forward(number: int, _frame: object) -> None:
            _forward(pid, number)

        try:
            for number in FORWARDED_SIGNALS:
                self._previous[number] = signal.signal(number, forward)
        except BaseException:  # ValueError: not the main thread
            self.close()
            raise

    def wait(self) -> int:
        return os.waitpid(self.pid, 0)[1]

    def close(self) -> None:
        for number, handler in self._previous.items():
            self._signal.signal(number, handler)
        self._previous = {}


class SignalfdRelay:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._reaped = False
        self._previous = sc.block_signals((*FORWARDED_SIGNALS, sc.SIGCHLD))
        try:
            # a signal the caller had blocked already stays pending for the caller; SIGCHLD
            # is always read (it ends the wait)
            relayed = [number for number in FORWARDED_SIGNALS
                       if not sc.signal_is_member(self._previous, number)] + [sc.SIGCHLD]
            self._fd = sc.signalfd(relayed)
        except BaseException:
            sc.restore_signal_mask(self._previous)
            raise

    def _read(self) -> list[int]:
        data = os.read(self._fd, _READ_BYTES)
        size = sc.SIGNALFD_SIGINFO_BYTES
        return [int.from_bytes(data[offset:offset + 4], sys.byteorder)
                for offset in range(0, len(data) - size + 1, size)]

    def wait(self) -> int:
        while True:
            # SIGCHLD is blocked from before this check: an exit after it wakes the read
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._reaped = True
                return status
            for number in self._read():
                if number != sc.SIGCHLD:
                    _forward(self.pid, number)

    def close(self) -> None:
        """Take the signals that arrived meanwhile (relayed while the init is unreaped, so
        its pid cannot be another process's), then restore the caller's mask."""
        try:
            os.set_blocking(self._fd, False)
            while True:
                try:
                    numbers = self._read()
                except BlockingIOError:
                    break
                for number in numbers:
                    if number != sc.SIGCHLD and not self._reaped:
                        _forward(self.pid, number)
        finally:
            os.close(self._fd)
            sc.restore_signal_mask(self._previous)


Relay = HandlerRelay | SignalfdRelay


def start(pid: int, *, starts_others: bool) -> Relay | None:
    """Relay to pid. starts_others: the caller starts threads or processes while it waits
    (they would inherit a blocked mask). None when no relay can be set up here."""
    if not starts_others and _single_threaded():
        try:
            return SignalfdRelay(pid)
        except OciError:  # no signalfd here: handlers do the same
            pass
    try:
        return HandlerRelay(pid)
    except ValueError:  # not the main thread
        return None
