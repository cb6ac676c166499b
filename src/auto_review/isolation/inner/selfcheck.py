"""The inner gateway checks its own boundary from inside, before it serves anything.

Each check reads what the kernel says about this process (``/proc/self/status``, the
namespace links, the network devices) or tries something the boundary must refuse (a
write outside the state directory and ``/tmp``). The result is the posture reported in the
startup log, ``/info`` (``runtime_isolation``) and ``ops doctor``. A failed mandatory check
means the gateway refuses to serve; degraded controls (Landlock, cgroup limits, the cgroup
namespace) are named in ``degraded`` and only refuse when an operator made them mandatory.
"""

from __future__ import annotations

import errno
import os
import resource
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INNER_STATE_DIR = Path("/var/lib/auto_review")
# Namespaces whose absence refuses startup; "cgroup" is degraded (DESIGN.md).
MANDATORY_NAMESPACES = ("user", "pid", "net", "mnt", "ipc", "uts")
CAPABILITY_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
HOST_PATHS = ("/root", "/home", "/etc/shadow")
READ_ONLY_PROBES = ("/", "/usr")
WRITABLE_PROBES = (str(INNER_STATE_DIR), "/tmp")  # noqa: S108 - the container's own tmpfs
DEGRADABLE_CHECKS = ("landlock", "cgroup-limits", "cgroup-namespace")
LIMITED_RLIMITS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}


class BoundaryNotVerified(RuntimeError):
    """A mandatory check failed; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class BoundaryFacts:
    """What the launcher knows and the container cannot see: the host's namespace ids and
    whether cgroup limits were asked for (the inner side has no cgroup filesystem)."""

    host_namespaces: Mapping[str, str]
    runtime: str
    cgroup_limits: str = "not requested"  # "applied" or why not


def read_status(path: Path = Path("/proc/self/status")) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def namespace_ids(proc_ns: Path = Path("/proc/self/ns")) -> dict[str, str]:
    """``{"net": "net:[4026531840]", ...}``, the ids comparable across namespaces."""
    ids: dict[str, str] = {}
    for name in sorted(os.listdir(proc_ns)):
        if name.endswith("_for_children"):
            continue
        try:
            ids[name] = os.readlink(proc_ns / name)
        except OSError:
            continue
    return ids


def network_interfaces(net_dev: Path = Path("/proc/self/net/dev")) -> list[str]:
    lines = net_dev.read_text(encoding="ascii", errors="replace").splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


# ---------------------------------------------------------------- single checks


def check_pid_one() -> CheckResult:
    pid = os.getpid()
    return CheckResult(pid == 1, f"pid {pid} in its pid namespace")


def check_capabilities(status: Mapping[str, str]) -> CheckResult:
    values = {name: status.get(name, "missing") for name in CAPABILITY_FIELDS}
    nonzero = {name: value for name, value in values.items() if value.strip("0") != ""}
    if nonzero:
        return CheckResult(False, "non-empty: " + ", ".join(f"{k}={v}" for k, v in nonzero.items()))
    return CheckResult(True, "all five capability sets empty")


def check_status_value(status: Mapping[str, str], field: str, wanted: str) -> CheckResult:
    value = status.get(field, "missing")
    return CheckResult(value == wanted, f"{field}={value} (want {wanted})")


def check_network(net_dev: Path = Path("/proc/self/net/dev")) -> CheckResult:
    interfaces = network_interfaces(net_dev)
    return CheckResult(interfaces == ["lo"], "interfaces: " + (", ".join(interfaces) or "none"))


def check_namespaces(
    own: Mapping[str, str], host: Mapping[str, str], names: Collection[str]
) -> CheckResult:
    if not host:
        return CheckResult(False, "the launcher passed no namespace ids to compare with")
    shared = [name for name in names if own.get(name) is None or own.get(name) == host.get(name)]
    if shared:
        return CheckResult(False, "same as the launcher's (or unreadable): " + ", ".join(shared))
    return CheckResult(True, "differ from the launcher's: " + ", ".join(names))


def mount_points(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    points = []
    for line in mountinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) > 4:
            # Octal escapes (\040 for a space) as the kernel writes them.
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def is_staged_stub(path: str, points: Collection[str]) -> bool:
    """A directory of the staged rootfs that only leads to bind mounts below it (the
    interpreter under /root/.pyenv makes /root such a stub): not the host's directory."""
    try:
        info = os.lstat(path)
        root = os.stat("/")
    except OSError:
        return False
    if not os.path.isdir(path) or os.path.islink(path) or info.st_dev != root.st_dev:
        return False
    prefix = path.rstrip("/") + "/"
    return path not in points and any(point.startswith(prefix) for point in points)


def check_host_paths(
    paths: Collection[str] = HOST_PATHS, points: Collection[str] | None = None
) -> CheckResult:
    points = mount_points() if points is None else points
    absent, stubs, present = [], [], []
    for path in paths:
        if not os.path.lexists(path):
            absent.append(path)
        elif is_staged_stub(path, points):
            stubs.append(path)
        else:
            present.append(path)
    if present:
        return CheckResult(False, "visible: " + ", ".join(present))
    detail = "absent: " + ", ".join(absent)
    if stubs:
        detail += "; only staged directories leading to bind mounts: " + ", ".join(stubs)
    return CheckResult(True, detail)


def try_create(directory: str) -> int:
    """Create and remove a file in ``directory``: 0 when allowed, else the errno."""
    path = os.path.join(directory, f".auto-review-selfcheck-{secrets.token_hex(6)}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return exc.errno or errno.EIO
    os.close(fd)
    os.unlink(path)
    return 0


def check_writes(
    refused: Collection[str] = READ_ONLY_PROBES,
    allowed: Collection[str] = WRITABLE_PROBES,
    attempt: Callable[[str], int] = try_create,
) -> CheckResult:
    problems: list[str] = []
    notes: list[str] = []
    for directory in refused:
        code = attempt(directory)
        if code == 0:
            problems.append(f"write allowed in {directory}")
        else:
            notes.append(f"{directory}: {errno.errorcode.get(code, code)}")
    for directory in allowed:
        code = attempt(directory)
        if code != 0:
            problems.append(f"cannot write {directory} ({errno.errorcode.get(code, code)})")
    if problems:
        return CheckResult(False, "; ".join(problems))
    return CheckResult(True, "refused " + ", ".join(notes) + "; writable: " + ", ".join(allowed))


def check_landlock(probe: str = "/") -> CheckResult:
    """Landlock leaves no trace in /proc; its effect does: the rootfs' top directory is in
    no rule, so listing it is denied although the mode bits allow it."""
    try:
        os.listdir(probe)
    except PermissionError:
        return CheckResult(True, f"listing {probe} denied (Landlock enforced)")
    except OSError as exc:
        return CheckResult(False, f"probe of {probe} failed: {exc.strerror}")
    return CheckResult(False, f"listing {probe} allowed: no Landlock domain")


def check_rlimits() -> CheckResult:
    limits: list[str] = []
    unlimited: list[str] = []
    for name, number in LIMITED_RLIMITS.items():
        _soft, hard = resource.getrlimit(number)
        if hard == resource.RLIM_INFINITY:
            unlimited.append(name)
        limits.append(f"{name}={'unlimited' if hard == resource.RLIM_INFINITY else hard}")
    return CheckResult(not unlimited, "hard limits " + ", ".join(limits))


def check_cgroup_limits(reported: str) -> CheckResult:
    return CheckResult(reported == "applied", f"launcher reports: {reported}")


# ---------------------------------------------------------------- the posture


def run_selfcheck(facts: BoundaryFacts, *, required: Collection[str] = ()) -> dict[str, Any]:
    """Run every check; returns the posture dict (never raises for a failed check)."""
    status = read_status()
    own = namespace_ids()
    results: dict[str, CheckResult] = {
        "pid-1": check_pid_one(),
        "capabilities": check_capabilities(status),
        "no-new-privileges": check_status_value(status, "NoNewPrivs", "1"),
        "seccomp": check_status_value(status, "Seccomp", "2"),
        "network": check_network(),
        "namespaces": check_namespaces(own, facts.host_namespaces, MANDATORY_NAMESPACES),
        "host-paths": check_host_paths(),
        "read-only-outside-state": check_writes(),
        "rlimits": check_rlimits(),
        "landlock": check_landlock(),
        "cgroup-limits": check_cgroup_limits(facts.cgroup_limits),
        "cgroup-namespace": check_namespaces(own, facts.host_namespaces, ("cgroup",)),
    }
    return posture_from_results(results, facts.runtime, required)


def posture_from_results(
    results: Mapping[str, CheckResult], runtime: str, required: Collection[str] = ()
) -> dict[str, Any]:
    mandatory = [name for name in results if name not in DEGRADABLE_CHECKS or name in required]
    failed = [name for name in mandatory if not results[name].ok]
    degraded = [name for name in results if name not in mandatory and not results[name].ok]
    return {
        "mode": "oci",
        "runtime": runtime,
        "verified": not failed,
        "checks": {name: result.as_dict() for name, result in results.items()},
        "mandatory": mandatory,
        "failed": failed,
        "degraded": degraded,
    }


def require_verified(posture: Mapping[str, Any]) -> None:
    """Raise with one line naming the first failed mandatory check."""
    failed = list(posture.get("failed", ()))
    if failed or not posture.get("verified"):
        name = failed[0] if failed else "posture"
        detail = posture.get("checks", {}).get(name, {}).get("detail", "not verified")
        raise BoundaryNotVerified(f"boundary self-check failed: {name}: {detail}")
