"""The gateway's seccomp profile: an allow-list of what the inner gateway uses.

The inner process is CPython 3.11 with uvloop, SQLite, httpx/ssl, and ``git`` with its
https helper. Everything they need is allowed by name; every other system call fails with
ENOSYS (``defaultErrnoRet`` 38), so calls newer than this list look absent and libc falls
back instead of failing hard. The calls that would widen the boundary (mounts, namespaces,
tracing, kernel modules, keyrings, BPF, ...) are named explicitly with EPERM, so the
posture check and an operator reading a failure see a refusal rather than "not
implemented". ``clone`` is allowed only without namespace flags; ``clone3`` carries its
flags in memory seccomp cannot read, so it answers ENOSYS and glibc falls back to
``clone``, where the flags are checked.

Every name must be known to the installed libseccomp (2.5.4 here): the embedded runtime
refuses a profile with an unknown name. Names that exist only on x86_64 (``open``,
``stat``, ``arch_prctl``, ...) are harmless on aarch64, where libseccomp skips them.
"""

from __future__ import annotations

import errno
import os
from typing import Any

ENOSYS = errno.ENOSYS
EPERM = errno.EPERM

# Namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
# (CLONE_NEWTIME shares its bit with CSIGNAL's range on clone and is only usable via clone3).
CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
CLONE_NAMESPACE_MASK = sum(CLONE_NAMESPACE_FLAGS.values())

ARCHITECTURES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}

# The floor the issue names, plus the other families that reach the host kernel's global
# state or other processes. These answer EPERM (a clear refusal), not ENOSYS.
DENIED_SYSCALLS: tuple[str, ...] = (
    # mounts and the new mount API
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_mount", "open_tree",
    # namespaces
    "unshare", "setns",
    # other processes' memory and descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # kernel code and global state
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd", "reboot", "swapon", "swapoff", "syslog", "acct",
    "quotactl", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "vhangup", "lookup_dcookie", "personality",
    "iopl", "ioperm", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl",
    "fanotify_init", "mknod", "mknodat",
    # keyrings
    "keyctl", "add_key", "request_key",
    # handles that bypass path permissions
    "open_by_handle_at", "name_to_handle_at",
    # io_uring (a second system call interface seccomp does not see into)
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip

ALLOWED_SYSCALLS: tuple[str, ...] = (
    # files and descriptors
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range",
    "lseek", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
    "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64",
    "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "chown",
    "fchown", "fchownat", "lchown", "truncate", "ftruncate", "fallocate", "fsync",
    "fdatasync", "sync_file_range", "syncfs", "utime", "utimes", "utimensat", "futimesat",
    "umask", "chdir", "fchdir", "getcwd", "dup", "dup2", "dup3", "fcntl", "flock", "ioctl",
    "pipe", "pipe2", "sendfile", "splice", "tee", "copy_file_range", "fadvise64",
    "readahead", "memfd_create", "inotify_init", "inotify_init1", "inotify_add_watch",
    "inotify_rm_watch", "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr",
    "flistxattr", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr",
    # memory
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock",
    "mlock2", "munlock", "mlockall", "munlockall", "membarrier", "get_mempolicy",
    "pkey_alloc", "pkey_free", "pkey_mprotect",
    # processes, threads, signals
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigpending", "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "rt_sigsuspend", "sigaltstack", "pause", "getpid", "getppid", "gettid", "getpgid",
    "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address", "set_robust_list",
    "get_robust_list", "futex", "futex_waitv", "rseq", "arch_prctl", "prctl",
    "pidfd_open", "pidfd_send_signal", "restart_syscall",
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
    "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_getattr", "getpriority", "setpriority", "getcpu",
    "ioprio_get", "getrusage", "getrlimit", "setrlimit", "prlimit64", "sysinfo", "uname",
    "capget", "capset", "seccomp", "landlock_create_ruleset", "landlock_add_rule",
    "landlock_restrict_self",
    # identity: the process holds no capability, so these can only keep or drop ids
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid",
    # time
    "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
    "times", "alarm", "getitimer", "setitimer", "timer_create", "timer_settime",
    "timer_gettime", "timer_getoverrun", "timer_delete", "timerfd_create",
    "timerfd_settime", "timerfd_gettime",
    # event loops
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd",
    "signalfd4",
    # sockets (only lo exists in the network namespace; the egress proxy is a Unix socket)
    "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect",
    "getsockname", "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
    # System V shared memory and semaphores (private to the container's ipc namespace)
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
    # randomness
    "getrandom",
)  # fmt: skip


def native_architecture(machine: str | None = None) -> str:
    """The libseccomp architecture name of this machine; only x86_64 and aarch64 are known."""
    machine = machine or os.uname().machine  # platform.machine(), without its import
    try:
        return ARCHITECTURES[machine]
    except KeyError:
        raise RuntimeError(
            f"no gateway seccomp profile for machine type {machine!r} "
            f"(known: {', '.join(sorted(ARCHITECTURES))})"
        ) from None


def gateway_seccomp_profile(machine: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for the inner gateway.

    Only the native architecture is listed: a system call made through another ABI
    (32-bit x86 on x86_64, for instance) kills the process.
    """
    clone_with_namespace = [
        {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
        for flag in CLONE_NAMESPACE_FLAGS.values()
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ENOSYS,
        "architectures": [native_architecture(machine)],
        "syscalls": [
            {"names": list(ALLOWED_SYSCALLS), "action": "SCMP_ACT_ALLOW"},
            # Threads and fork: clone without any namespace flag.
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {
                        "index": 0,
                        "value": CLONE_NAMESPACE_MASK,
                        "valueTwo": 0,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
            # clone with any namespace flag: one condition per flag, any one refuses.
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": clone_with_namespace,
            },
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        ],
    }
