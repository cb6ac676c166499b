"""The gateway seccomp profile: allow-list shape, the required refusals, and that the
installed libseccomp compiles it (the runtime refuses unknown names)."""

from __future__ import annotations

import errno
import os

import pytest

from auto_review.isolation.outer.seccomp_profile import (
    ALLOWED_SYSCALLS,
    CLONE_NAMESPACE_FLAGS,
    DENIED_SYSCALLS,
    gateway_seccomp_profile,
)
from auto_review.oci.seccomp import SeccompFilter

REQUIRED_EPERM = (
    "mount", "umount2", "pivot_root", "unshare", "setns", "ptrace", "kexec_load",
    "init_module", "finit_module", "bpf", "keyctl", "add_key", "request_key",
    "perf_event_open", "open_by_handle_at", "userfaultfd",
)  # fmt: skip
OTHER_DANGEROUS = (
    "reboot", "swapon", "swapoff", "iopl", "ioperm", "syslog", "acct", "quotactl",
    "settimeofday", "clock_settime", "adjtimex", "mount_setattr", "fsopen", "fsconfig",
    "fsmount", "move_mount", "open_tree", "process_vm_readv", "process_vm_writev", "kcmp",
    "name_to_handle_at", "lookup_dcookie", "vhangup", "personality", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "chroot", "setdomainname", "sethostname",
    "pidfd_getfd",
)  # fmt: skip


def action_of(profile: dict, name: str) -> list[tuple[str, int | None, list]]:
    return [
        (rule["action"], rule.get("errnoRet"), rule.get("args", []))
        for rule in profile["syscalls"]
        if name in rule["names"]
    ]


def test_allow_list_with_enosys_default():
    profile = gateway_seccomp_profile("x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == errno.ENOSYS == 38
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    assert gateway_seccomp_profile("aarch64")["architectures"] == ["SCMP_ARCH_AARCH64"]


@pytest.mark.parametrize("name", REQUIRED_EPERM + OTHER_DANGEROUS)
def test_boundary_widening_calls_get_eperm(name: str):
    profile = gateway_seccomp_profile("x86_64")
    assert action_of(profile, name) == [("SCMP_ACT_ERRNO", errno.EPERM, [])]
    assert name not in ALLOWED_SYSCALLS


def test_clone_only_without_namespace_flags_and_clone3_enosys():
    profile = gateway_seccomp_profile("x86_64")
    rules = action_of(profile, "clone")
    mask = sum(CLONE_NAMESPACE_FLAGS.values())
    allow = [rule for rule in rules if rule[0] == "SCMP_ACT_ALLOW"]
    assert allow == [("SCMP_ACT_ALLOW", None,
                      [{"index": 0, "value": mask, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}])]
    refuse = [rule for rule in rules if rule[0] == "SCMP_ACT_ERRNO"]
    assert len(refuse) == 1 and refuse[0][1] == errno.EPERM
    flags = sorted(condition["value"] for condition in refuse[0][2])
    assert flags == sorted(CLONE_NAMESPACE_FLAGS.values())
    for condition in refuse[0][2]:
        assert condition["op"] == "SCMP_CMP_MASKED_EQ"
        assert condition["value"] == condition["valueTwo"]
    assert action_of(profile, "clone3") == [("SCMP_ACT_ERRNO", errno.ENOSYS, [])]
    assert "clone" not in ALLOWED_SYSCALLS and "clone3" not in ALLOWED_SYSCALLS


def test_each_name_once():
    names = [*ALLOWED_SYSCALLS, *DENIED_SYSCALLS]
    assert len(names) == len(set(names))


def test_what_the_gateway_needs_is_allowed():
    for name in ("read", "write", "openat", "mmap", "futex", "epoll_wait", "epoll_pwait",
                 "socket", "connect", "accept4", "sendmsg", "recvmsg", "getrandom", "execve",
                 "wait4", "pipe2", "fcntl", "fsync", "fdatasync", "pread64", "pwrite64",
                 "rseq", "set_robust_list", "prlimit64", "newfstatat", "statx"):  # fmt: skip
        assert name in ALLOWED_SYSCALLS, name


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_installed_libseccomp_compiles_it(machine: str):
    compiled = SeccompFilter.from_spec(gateway_seccomp_profile(machine))
    assert compiled is not None


def test_unknown_machine_is_refused_clearly():
    with pytest.raises(RuntimeError, match="no gateway seccomp profile for machine type"):
        gateway_seccomp_profile("riscv64")


def test_profile_follows_this_machine_by_default():
    machine = os.uname().machine
    expected = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[machine]
    assert gateway_seccomp_profile()["architectures"] == [expected]


def test_loaded_filter_answers_as_declared():
    """In a forked child with the filter loaded: refusals, ENOSYS for the unlisted, work goes on."""
    import ctypes
    import json
    import threading

    compiled = SeccompFilter.from_spec(gateway_seccomp_profile())
    by_machine = {"x86_64": {"clone3": 435, "sync": 162, "unshare": 272},
                  "aarch64": {"clone3": 435, "sync": 81, "unshare": 97}}  # fmt: skip
    numbers = by_machine[os.uname().machine]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            compiled.load()

            def call(name: str, *args: object) -> int:
                ctypes.set_errno(0)
                result = libc.syscall(numbers[name], *args)
                return 0 if result != -1 else ctypes.get_errno()

            found = {"unshare": call("unshare", 0x10000000), "clone3": call("clone3", None, 0),
                     "sync": call("sync")}  # fmt: skip
            worker = threading.Thread(target=lambda: found.__setitem__("thread", "ok"))
            worker.start()
            worker.join()
            os.write(write_end, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        found = json.loads(reader.read() or "{}")
    os.waitpid(pid, 0)
    assert found == {"unshare": errno.EPERM, "clone3": errno.ENOSYS, "sync": errno.ENOSYS,
                     "thread": "ok"}  # fmt: skip
