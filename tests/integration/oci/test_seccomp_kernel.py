"""The seccomp engine against the real kernel: filters are loaded in forked children."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
from tests.support.forked_child import fork_and_answer, set_no_new_privs
from tests.support.requirements import require

from auto_review.oci.errors import StepError
from auto_review.oci.seccomp import SeccompFilter

NR_GETPID = 39
NR_GETPPID = 110
NR_CLONE = 56
NR_CLONE3 = 435
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def raw_syscall(number: int, *args: int) -> tuple[int, int]:
    """(return value, errno) of a raw system call, bypassing libc wrappers."""
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return result, ctypes.get_errno()


def run_in_child(body: Callable[[], Any]) -> tuple[Any, int]:
    """Run body in a forked child; return its JSON answer and its wait status."""
    data, status = fork_and_answer(body)
    return (json.loads(data) if data else None), status


def status_field(name: str) -> str:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split()[1]
    raise AssertionError(name)


def test_denied_syscall_returns_eperm_and_allowed_ones_work() -> None:
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}],
        }
    )

    def body() -> dict[str, Any]:
        set_no_new_privs()
        flt.load()
        return {
            "getppid": raw_syscall(NR_GETPPID),
            "getpid": raw_syscall(NR_GETPID)[0] == os.getpid(),
            "mode": status_field("Seccomp"),
        }

    answer, status = run_in_child(body)
    assert status == 0
    assert answer["ok"] == {"getppid": [-1, errno.EPERM], "getpid": True, "mode": "2"}


def test_errno_ret_and_default_errno_ret() -> None:
    allowed = ["read", "write", "close", "exit", "exit_group", "mmap", "munmap", "brk",
               "madvise", "futex", "rt_sigprocmask", "rt_sigaction", "getpid", "mprotect",
               "getrandom", "fstat", "newfstatat", "lseek"]  # fmt: skip
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": errno.ENOSYS,
            "syscalls": [
                {"names": allowed, "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
            ],
        }
    )

    def body() -> dict[str, Any]:
        set_no_new_privs()
        flt.load()
        return {
            "getppid": raw_syscall(NR_GETPPID),
            "getuid": raw_syscall(102),
            "getpid_ok": raw_syscall(NR_GETPID)[0] > 0,
        }

    answer, status = run_in_child(body)
    assert status == 0
    assert answer["ok"] == {
        "getppid": [-1, errno.ENOSYS],
        "getuid": [-1, errno.EACCES],
        "getpid_ok": True,
    }


def test_kill_process_action_kills_with_sigsys() -> None:
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}],
        }
    )

    def body() -> None:
        set_no_new_privs()
        flt.load()
        raw_syscall(NR_GETPPID)

    answer, status = run_in_child(body)
    assert answer is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


OPERATOR_CASES = [
    # (op, value, valueTwo, argument that matches, argument that does not)
    ("SCMP_CMP_NE", 5, 0, 6, 5),
    ("SCMP_CMP_LT", 5, 0, 4, 5),
    ("SCMP_CMP_LE", 5, 0, 5, 6),
    ("SCMP_CMP_EQ", 5, 0, 5, 4),
    ("SCMP_CMP_GE", 5, 0, 5, 4),
    ("SCMP_CMP_GT", 5, 0, 6, 5),
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0x30, 0x3A, 0x4A),
]


@pytest.mark.parametrize(("op", "value", "value_two", "matching", "other"), OPERATOR_CASES)
def test_argument_operators(op: str, value: int, value_two: int, matching: int, other: int) -> None:
    arg = {"index": 1, "value": value, "valueTwo": value_two, "op": op}
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77, "args": [arg]}
            ],
        }
    )

    def body() -> list[Any]:
        set_no_new_privs()
        flt.load()
        return [raw_syscall(NR_GETPPID, 0, matching), raw_syscall(NR_GETPPID, 0, other)]

    answer, status = run_in_child(body)
    assert status == 0
    denied, allowed = answer["ok"]
    assert denied == [-1, 77]
    assert allowed[0] == os.getpid()


def test_conditions_on_distinct_arguments_must_all_hold() -> None:
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["getppid"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [
                        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 2, "value": 3, "op": "SCMP_CMP_EQ"},
                    ],
                }
            ],
        }
    )

    def body() -> list[int]:
        set_no_new_privs()
        flt.load()
        return [
            raw_syscall(NR_GETPPID, 1, 0, 3)[1],
            raw_syscall(NR_GETPPID, 1, 0, 4)[1],
            raw_syscall(NR_GETPPID, 2, 0, 3)[1],
        ]

    answer, _ = run_in_child(body)
    assert answer["ok"] == [errno.EPERM, 0, 0]


def test_conditions_on_the_same_argument_match_any() -> None:
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["getppid"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [
                        {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 9, "op": "SCMP_CMP_EQ"},
                    ],
                }
            ],
        }
    )

    def body() -> list[int]:
        set_no_new_privs()
        flt.load()
        return [raw_syscall(NR_GETPPID, n)[1] for n in (7, 8, 9)]

    answer, _ = run_in_child(body)
    assert answer["ok"] == [errno.EPERM, 0, errno.EPERM]


def test_clone_namespace_flags_denied_and_clone3_falls_back() -> None:
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [
                        {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
                        for flag in (CLONE_NEWUSER, CLONE_NEWNS)
                    ],
                },
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            ],
        }
    )

    def body() -> dict[str, Any]:
        set_no_new_privs()
        flt.load()
        seen = []
        thread = threading.Thread(target=lambda: seen.append("ran"))
        thread.start()  # glibc tries clone3, gets ENOSYS, uses clone
        thread.join()
        child = os.fork()  # plain clone(SIGCHLD) stays allowed
        if child == 0:
            os._exit(7)
        _, child_status = os.waitpid(child, 0)
        return {
            "clone_newuser": raw_syscall(NR_CLONE, CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0),
            "clone_newns": raw_syscall(NR_CLONE, CLONE_NEWNS | signal.SIGCHLD, 0, 0, 0, 0),
            "clone3": raw_syscall(NR_CLONE3, 0, 0),
            "thread": seen,
            "fork_exit": os.waitstatus_to_exitcode(child_status),
        }

    answer, status = run_in_child(body)
    assert status == 0
    assert answer["ok"] == {
        "clone_newuser": [-1, errno.EPERM],
        "clone_newns": [-1, errno.EPERM],
        "clone3": [-1, errno.ENOSYS],
        "thread": ["ran"],
        "fork_exit": 7,
    }


def test_kernel_flags_are_passed_at_load() -> None:
    flt = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}],
        }
    )
    assert flt.kernel_flags == 3

    def body() -> list[int]:
        set_no_new_privs()
        flt.load()
        return raw_syscall(NR_GETPPID)

    answer, _ = run_in_child(body)
    assert answer["ok"] == [-1, errno.EPERM]


def test_load_does_not_set_no_new_privs() -> None:
    flt = SeccompFilter.from_spec({"defaultAction": "SCMP_ACT_ALLOW"})

    def body() -> list[str]:
        flt.load()  # root in the test: CAP_SYS_ADMIN allows it without no_new_privs
        return [status_field("NoNewPrivs"), status_field("Seccomp")]

    require(os.geteuid() == 0, "root (CAP_SYS_ADMIN loads a filter without no_new_privs)")
    answer, _ = run_in_child(body)
    assert answer["ok"] == ["0", "2"]


def test_load_without_no_new_privs_or_cap_sys_admin_fails_with_the_step() -> None:
    flt = SeccompFilter.from_spec({"defaultAction": "SCMP_ACT_ALLOW"})

    def body() -> None:
        if os.geteuid() == 0:
            os.setresuid(65534, 65534, 65534)  # drops every capability
        flt.load()

    answer, _ = run_in_child(body)
    assert answer == {
        "step_error": ["seccomp", errno.EACCES, "no_new_privs unset and no CAP_SYS_ADMIN"]
    }


def test_unknown_syscall_name_fails_before_any_fork() -> None:
    with pytest.raises(StepError) as caught:
        SeccompFilter.from_spec(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    assert (caught.value.step, caught.value.errno, caught.value.path) == (
        "seccomp",
        errno.EINVAL,
        "no_such_syscall",
    )
    assert "\n" not in caught.value.one_line()
    assert "step=seccomp" in caught.value.one_line()


def test_several_architectures_compile_into_one_program() -> None:
    native_only = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["socketcall"], "action": "SCMP_ACT_ERRNO"}],
        }
    )
    multi = SeccompFilter.from_spec(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["socketcall"], "action": "SCMP_ACT_ERRNO"}],
        }
    )
    # socketcall exists only on x86: the multi-architecture program carries a branch for it.
    assert len(multi.program) > len(native_only.program)


def test_trap_log_trace_and_kill_thread_actions_behave_as_the_kernel_defines() -> None:
    def filter_for(action: str) -> SeccompFilter:
        return SeccompFilter.from_spec(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid"], "action": action}],
            }
        )

    trap, log, trace, kill = (
        filter_for(action)
        for action in ("SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_KILL")
    )

    def trapped() -> list[Any]:
        seen: list[int] = []
        signal.signal(signal.SIGSYS, lambda number, _: seen.append(number))
        set_no_new_privs()
        trap.load()
        raw_syscall(NR_GETPPID)
        return seen

    def logged() -> bool:
        set_no_new_privs()
        log.load()
        return raw_syscall(NR_GETPPID)[0] == os.getppid()

    def traced_without_tracer() -> list[int]:
        set_no_new_privs()
        trace.load()
        return raw_syscall(NR_GETPPID)

    def killed() -> None:
        set_no_new_privs()
        kill.load()
        raw_syscall(NR_GETPPID)

    assert run_in_child(trapped)[0] == {"ok": [signal.SIGSYS]}
    assert run_in_child(logged)[0] == {"ok": True}
    assert run_in_child(traced_without_tracer)[0] == {"ok": [-1, errno.ENOSYS]}
    answer, status = run_in_child(killed)
    assert answer is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
