"""Counters of the egress proxy, their fixed label sets and their JSON form.

The proxy counts in its own thread; the launcher reads :meth:`EgressCounters.snapshot`,
and the inner gateway reads the same snapshot as JSON through the proxy socket. Reason
words come from the fixed sets below, never from request data.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

# Requests the policy (or the request's shape) does not allow.
REFUSAL_REASONS: tuple[str, ...] = (
    "malformed",  # unparsable request line or header, bad framing
    "head-too-large",
    "head-timeout",
    "method-not-allowed",
    "not-a-proxy-request",  # origin-form request to anything but the stats path
    "userinfo",  # credentials in the request target
    "bad-port",  # missing, zero, leading zeros, out of range
    "bad-host",  # not a valid name or IP literal
    "scheme-not-allowed",  # absolute-form other than http://, or to an https target
    "host-not-allowed",
    "port-not-allowed",  # a configured host on another port
    "address-forbidden",  # a configured name resolved only to forbidden addresses
    "too-many-connections",
)

# Allowed requests that could not be completed.
FAILURE_REASONS: tuple[str, ...] = (
    "resolve-failed",
    "connect-failed",
    "upstream-malformed",  # the upstream's response head was unusable (forwarding)
    "idle-timeout",
    "total-timeout",
)

ALLOWED_KINDS: tuple[str, ...] = ("connect", "forward")
DIRECTIONS: tuple[str, ...] = ("upstream", "downstream")


@dataclass(frozen=True, slots=True)
class EgressStats:
    """A consistent copy of the counters at one moment."""

    allowed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALLOWED_KINDS, 0))
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSAL_REASONS, 0))
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    transferred: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    active: int = 0

    @property
    def allowed_total(self) -> int:
        return sum(self.allowed.values())

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "allowed": self.allowed,
                "refused": self.refused,
                "failed": self.failed,
                "bytes": self.transferred,
                "active": self.active,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> EgressStats:
        """Parse the proxy's answer; only known keys with integer values are kept."""
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("egress stats are not JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("egress stats are not an object")
        active = raw.get("active", 0)
        return cls(
            allowed=_known_counts(raw.get("allowed"), ALLOWED_KINDS),
            refused=_known_counts(raw.get("refused"), REFUSAL_REASONS),
            failed=_known_counts(raw.get("failed"), FAILURE_REASONS),
            transferred=_known_counts(raw.get("bytes"), DIRECTIONS),
            active=active if _is_count(active) else 0,
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _known_counts(section: Any, keys: tuple[str, ...]) -> dict[str, int]:
    counts = dict.fromkeys(keys, 0)
    if isinstance(section, dict):
        for key in keys:
            if _is_count(section.get(key)):
                counts[key] = section[key]
    return counts


class EgressCounters:
    """Thread-safe counters: the proxy's loop writes, any thread takes snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = EgressStats()
        self._active = 0

    def allowed(self, kind: str) -> None:
        self._add(self._stats.allowed, kind)

    def refused(self, reason: str) -> None:
        self._add(self._stats.refused, reason)

    def failed(self, reason: str) -> None:
        self._add(self._stats.failed, reason)

    def transferred(self, direction: str, count: int) -> None:
        self._add(self._stats.transferred, direction, count)

    def connection_opened(self) -> None:
        with self._lock:
            self._active += 1

    def connection_closed(self) -> None:
        with self._lock:
            self._active -= 1

    def snapshot(self) -> EgressStats:
        with self._lock:
            return EgressStats(
                allowed=dict(self._stats.allowed),
                refused=dict(self._stats.refused),
                failed=dict(self._stats.failed),
                transferred=dict(self._stats.transferred),
                active=self._active,
            )

    def _add(self, table: dict[str, int], key: str, count: int = 1) -> None:
        if key not in table:
            # A typo in the proxy must not create a series; it is a bug, said loudly.
            raise KeyError(f"unknown egress counter key {key!r}")
        with self._lock:
            table[key] += count
