"""Let the kernel's wait before a cgroup migration run while the runtime does other work.

Moving a process into a cgroup (a write to ``cgroup.procs``) takes the kernel's global
threadgroup lock for writing. When no migration happened in the last few milliseconds,
taking it first waits for an RCU grace period (4-15 ms on a 2-core host); migrations just
after one are immediate. ``run`` and ``create`` as root move the intermediate process into
the container's cgroups only after loading the bundle, making the directories and forking.
A warm-up started first moves a short-lived thread of the runtime into the cgroup it is
already in: the kernel changes nothing but still takes the lock, so the grace period
passes while the runtime imports its modules and reads the bundle.

Root only (root always joins the container's cgroups). A warm-up that fails changes
nothing: the real migration then waits as it would have. ``finish`` waits for the thread
before the runtime forks, so the children never start beside it.
"""

from __future__ import annotations

import _thread
import os

from auto_review.oci.cgroups import parse_hierarchies


class _Warmup:
    __slots__ = ("running",)

    def __init__(self) -> None:
        self.running = _thread.allocate_lock()
        self.running.acquire()


_current: list[_Warmup] = []  # the latest warm-up, if one was started


def start() -> None:
    """Begin a warm-up in a thread, unless one is still running (root only)."""
    if os.geteuid() != 0 or (_current and _current[0].running.locked()):
        return
    warmup = _Warmup()
    try:
        _thread.start_new_thread(_join_own_cgroup, (warmup,))
    except RuntimeError:  # no thread can be started: the migration simply waits later
        return
    _current[:] = [warmup]


def finish() -> None:
    """Wait until the warm-up thread is done (call before forking)."""
    if _current:
        running = _current.pop().running
        running.acquire()
        running.release()


def own_task_file(mountinfo: str, thread_cgroups: str) -> str | None:
    """The file that moves the calling thread alone into the cgroup it is in: ``tasks`` of
    a v1 hierarchy, else ``cgroup.threads`` of the unified one; None without either."""
    hierarchies = parse_hierarchies(mountinfo, thread_cgroups)
    for version, name in (("v1", "tasks"), ("v2", "cgroup.threads")):
        for hierarchy in hierarchies:
            if hierarchy.version == version:
                return os.path.join(hierarchy.mount_point, hierarchy.own_path, name)
    return None


def _join_own_cgroup(warmup: _Warmup) -> None:
    try:
        with open("/proc/self/mountinfo") as mountinfo, \
                open("/proc/thread-self/cgroup") as thread_cgroups:
            target = own_task_file(mountinfo.read(), thread_cgroups.read())
        if target is not None:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
            try:
                # the thread's own id, not "0": the kernel skips the lock for "0" in
                # tasks or cgroup.threads (the writer itself cannot exit meanwhile)
                os.write(fd, str(_thread.get_native_id()).encode())
            finally:
                os.close(fd)
    except (OSError, ValueError, IndexError):
        pass  # the real migration just pays the wait itself
    finally:
        warmup.running.release()
