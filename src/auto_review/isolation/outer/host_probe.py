"""What the host offers the container boundary, checked from outside (``ops doctor``).

Each probe tries the real thing where that is cheap and harmless: a user namespace is
created in a short-lived child, libseccomp is loaded, the Landlock ABI is asked from the
kernel. Nothing here changes the host.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from auto_review.isolation.outer.external_runtime import KNOWN_RUNTIMES, is_hybrid_cgroup_host
from auto_review.isolation.outer.launcher import cgroup_limits_expectation

_CLONE_NEWUSER = 0x10000000


@dataclass(frozen=True, slots=True)
class HostCheck:
    name: str
    ok: bool
    detail: str
    mandatory: bool  # without it the embedded runtime cannot start


def user_namespace_check() -> HostCheck:
    """Fork a child that unshares a user namespace and reports whether it could."""
    pid = os.fork()
    if pid == 0:  # child: no Python-level cleanup, just the answer
        libc = ctypes.CDLL(None, use_errno=True)
        os._exit(0 if libc.unshare(_CLONE_NEWUSER) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    ok = os.waitstatus_to_exitcode(status) == 0
    detail = "a user namespace can be created" if ok else "unshare(CLONE_NEWUSER) refused"
    limit = Path("/proc/sys/user/max_user_namespaces")
    if not ok and limit.exists():
        detail += f" (user.max_user_namespaces={limit.read_text().strip()})"
    return HostCheck("user-namespaces", ok, detail, mandatory=True)


def seccomp_check() -> HostCheck:
    status = Path("/proc/self/status").read_text()
    if "Seccomp:" not in status:
        return HostCheck("seccomp", False, "kernel without seccomp", mandatory=True)
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return HostCheck("seccomp", False, "libseccomp.so.2 not found", mandatory=True)
    return HostCheck("seccomp", True, "kernel filter mode and libseccomp.so.2", mandatory=True)


def landlock_check() -> HostCheck:
    from auto_review.oci.landlock import landlock_abi

    abi = landlock_abi()
    detail = f"Landlock ABI {abi}" if abi else "kernel without Landlock (degraded)"
    return HostCheck("landlock", abi > 0, detail, mandatory=False)


def cgroup_check() -> HostCheck:
    expectation = cgroup_limits_expectation(os.geteuid() != 0)
    hybrid = " (hybrid v1/v2 layout)" if is_hybrid_cgroup_host() else ""
    return HostCheck("cgroup-limits", expectation == "applied", expectation + hybrid, False)


def runtimes_check(configured: Path | None) -> HostCheck:
    found = [f"{name}={path}" for name in KNOWN_RUNTIMES if (path := shutil.which(name))]
    detail = "embedded (built in)" + ("; external: " + ", ".join(found) if found else "")
    if configured is None:
        return HostCheck("runtimes", True, detail, mandatory=False)
    text = str(configured)
    usable = shutil.which(text) if "/" not in text else text
    ok = usable is not None and os.access(usable, os.X_OK)
    verdict = "usable" if ok else "NOT executable"
    return HostCheck("runtimes", ok, f"{detail}; AR_OCI_RUNTIME {text} {verdict}", True)


def host_checks(configured_runtime: Path | None = None) -> list[HostCheck]:
    return [
        user_namespace_check(),
        seccomp_check(),
        landlock_check(),
        cgroup_check(),
        runtimes_check(configured_runtime),
    ]
