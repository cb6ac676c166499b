"""process.capabilities: names to numbers, and the five sets applied before execve.

A capability outside the bounding set the runtime itself holds (root on this kind of host
lacks CAP_SYS_RESOURCE, for example) cannot be granted: asking for one fails before
anything runs, naming it, as runc and crun fail. An unknown name is an error too.
"""

from __future__ import annotations

import errno

from auto_review.oci import syscalls as sc
from auto_review.oci.errors import StepError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: number for number, name in enumerate(NAMES)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def parse(capabilities: dict[str, Any] | None) -> dict[str, int]:
    """Each set as a bit mask; StepError("capabilities", EINVAL, name) for unknown names."""
    masks = dict.fromkeys(SETS, 0)
    for set_name, names in (capabilities or {}).items():
        for name in names or []:
            number = NUMBERS.get(name)
            if number is None:
                raise StepError("capabilities", errno.EINVAL, name)
            masks[set_name] |= 1 << number
    return masks


def check_held(masks: dict[str, int], held: int) -> None:
    """StepError("capabilities", EPERM, names) when a set asks for a capability outside
    the bounding set held (the container's processes inherit that bounding set)."""
    wanted = 0
    for mask in masks.values():
        wanted |= mask
    missing = [NAMES[number] for number in range(len(NAMES)) if wanted >> number & 1
               and not held >> number & 1]
    if missing:
        raise StepError("capabilities", errno.EPERM,
                        f"{','.join(missing)} (not in the runtime's bounding set)")


_last_cap: list[int] = []


def last_cap() -> int:
    """The kernel's highest capability number, read once: later calls may come after
    Landlock confined the file system."""
    if not _last_cap:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as handle:
                _last_cap.append(int(handle.read()))
        except OSError:
            _last_cap.append(len(NAMES) - 1)
    return _last_cap[0]


def current_bounding() -> int:
    mask = 0
    for number in range(last_cap() + 1):
        if sc.libc().prctl(sc.PR_CAPBSET_READ, number, 0, 0, 0) == 1:
            mask |= 1 << number
    return mask


def drop_bounding(keep: int) -> int:
    """Drop every bounding capability not in keep; returns what remains."""
    remaining = 0
    for number in range(last_cap() + 1):
        if sc.libc().prctl(sc.PR_CAPBSET_READ, number, 0, 0, 0) != 1:
            continue
        if keep & (1 << number):
            remaining |= 1 << number
            continue
        sc.prctl(sc.PR_CAPBSET_DROP, number, step="capabilities", path=NAMES[number]
                 if number < len(NAMES) else str(number))
    return remaining


def apply_after_setuid(masks: dict[str, int], held: int) -> None:
    """Set effective/permitted/inheritable, then raise the ambient ones (after setresuid,
    with PR_SET_KEEPCAPS having kept the permitted set across the uid change)."""
    permitted = masks["permitted"] & held
    effective = masks["effective"] & permitted
    inheritable = masks["inheritable"] & held
    ambient = masks["ambient"] & permitted & inheritable
    sc.capset(effective, permitted, inheritable)
    sc.libc().prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for number in range(last_cap() + 1):
        if ambient & (1 << number):
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, number,
                     step="capabilities", path=NAMES[number])
