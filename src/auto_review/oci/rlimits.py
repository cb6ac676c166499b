"""process.rlimits: RLIMIT_* names to numbers and setrlimit in the container init."""

from __future__ import annotations

import ctypes
import errno

from auto_review.oci.errors import StepError
from auto_review.oci.syscalls import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NUMBERS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
_INFINITY = 2**64 - 1


def parse(rlimits: list[dict[str, Any]] | None) -> list[tuple[str, int, int, int]]:
    parsed = []
    for entry in rlimits or []:
        number = NUMBERS.get(entry["type"])
        if number is None:
            raise StepError("rlimits", errno.EINVAL, entry["type"])
        parsed.append((entry["type"], number, entry["soft"], entry["hard"]))
    return parsed


class _Rlimit(ctypes.Structure):
    _fields_ = [("soft", ctypes.c_uint64), ("hard", ctypes.c_uint64)]


def apply(parsed: list[tuple[str, int, int, int]]) -> None:
    """setrlimit through libc (the resource module may not be importable after pivot_root)."""
    for name, number, soft, hard in parsed:
        limit = _Rlimit(min(soft, _INFINITY), min(hard, _INFINITY))
        if libc().setrlimit(ctypes.c_int(number), ctypes.byref(limit)) != 0:
            raise StepError("rlimits", ctypes.get_errno() or errno.EPERM, name)
