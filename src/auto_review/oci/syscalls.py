"""Thin ctypes wrappers around the Linux system calls the runtime needs.

Every wrapper raises ``StepError(step, errno, path)`` so that a failure anywhere in the
container set-up names the step that failed. libc is loaded once, lazily, per process.

The sockets and signal masks of `run` are made here too, not through the `socket` and
`signal` modules: those build their enums at import (`enum`, with `functools` and
`collections`), about 10 ms of every `auto-review oci run` on a 2-core host (see
OCI-CONFORMANCE.md, Benchmark). For the same reason no module on that path imports
`contextlib`.
"""

from __future__ import annotations

import ctypes
import os

from auto_review.oci.errors import StepError

# clone/unshare flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_PARENT = 0x00008000
CLONE_INTO_CGROUP = 0x200000000
# signal numbers (the same on x86_64 and aarch64)
SIGHUP = 1
SIGINT = 2
SIGQUIT = 3
SIGUSR1 = 10
SIGUSR2 = 12
SIGPIPE = 13
SIGALRM = 14
SIGTERM = 15
SIGCHLD = 17
SIGXFSZ = 25
SIGWINCH = 28

# sockets
AF_UNIX = 1
AF_INET = 2
SOCK_DGRAM = 2
SOCK_SEQPACKET = 5
SOCK_CLOEXEC = os.O_CLOEXEC

# mount flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MNT_DETACH = 0x2

# prctl options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# x86_64 / aarch64 syscall numbers used through syscall(2)
_SYSCALL_NUMBERS = {
    "x86_64": {
        "clone": 56,
        "clone3": 435,
        "pivot_root": 155,
        "capget": 125,
        "capset": 126,
        "close_range": 436,
        "setgroups": 116,
    },
    "aarch64": {
        "clone": 220,
        "clone3": 435,
        "pivot_root": 41,
        "capget": 90,
        "capset": 91,
        "close_range": 436,
        "setgroups": 159,
    },
}
CLOSE_RANGE_CLOEXEC = 1 << 2

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        lib.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _libc = lib
    return _libc


def _nr(name: str) -> int:
    table = _SYSCALL_NUMBERS.get(os.uname().machine)
    if table is None:
        raise StepError("syscall-table", 38, os.uname().machine)  # ENOSYS
    return table[name]


def _check(result: int, step: str, path: str = "") -> int:
    if result < 0:
        raise StepError(step, ctypes.get_errno() or 5, path)
    return result


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def unshare(flags: int, step: str = "unshare") -> None:
    _check(libc().unshare(ctypes.c_int(flags)), step)


def setns(fd: int, nstype: int, step: str, path: str) -> None:
    _check(libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), step, path)


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
    *,
    step: str = "mount",
    path: str | None = None,
) -> None:
    result = libc().mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(result, step, path if path is not None else target)


def umount2(target: str, flags: int, *, step: str = "umount", path: str | None = None) -> None:
    _check(libc().umount2(_b(target), flags), step, path if path is not None else target)


def pivot_root(new_root: str, put_old: str) -> None:
    result = libc().syscall(_nr("pivot_root"), _b(new_root), _b(put_old))
    _check(result, "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(libc().sethostname(raw, len(raw)), "hostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(libc().setdomainname(raw, len(raw)), "domainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, *, step: str = "prctl", path: str = "") -> int:
    return _check(libc().prctl(option, arg2, arg3, 0, 0), step, path)


def clone_sibling(into_cgroup: int = -1) -> int:
    """Fork a child whose parent is our own parent (CLONE_PARENT).

    The runtime's intermediate process uses it so that the container's init becomes a
    direct child of the caller, who can then wait for its exit status. Like fork(2) for a
    single-threaded process; returns 0 in the child and the child's pid in the caller.
    into_cgroup: an open cgroup v2 directory the child starts in (clone3's
    CLONE_INTO_CGROUP, Linux 5.7).
    """
    if into_cgroup >= 0:
        import struct

        # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        # stack_size, tls, set_tid, set_tid_size, cgroup (u64 each)
        # exit_signal 0: with CLONE_PARENT the child inherits ours (SIGCHLD), and clone3
        # refuses any other value
        packed = struct.pack("=11Q", CLONE_PARENT | CLONE_INTO_CGROUP, 0, 0, 0, 0,
                             0, 0, 0, 0, 0, into_cgroup)
        arguments = ctypes.create_string_buffer(packed, len(packed))
        result = libc().syscall(_nr("clone3"), arguments, ctypes.c_size_t(len(packed)))
        return _check(result, "clone", "CLONE_INTO_CGROUP")
    result = libc().syscall(
        _nr("clone"),
        ctypes.c_ulong(CLONE_PARENT | SIGCHLD),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    return _check(result, "clone")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CAP_V3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    result = libc().syscall(_nr("capset"), ctypes.byref(header), ctypes.byref(data))
    _check(result, "capabilities", "capset")


def setgroups_raw(gids: list[int]) -> None:
    """setgroups(2) as a raw syscall (glibc's wrapper would signal other threads)."""
    array = (ctypes.c_uint32 * max(len(gids), 1))(*gids)
    _check(
        libc().syscall(_nr("setgroups"), ctypes.c_ulong(len(gids)), array),
        "setgroups",
        ",".join(map(str, gids)),
    )


def mark_cloexec_from(first_fd: int) -> None:
    """Set FD_CLOEXEC on every descriptor >= first_fd, so execve leaves only those below."""
    result = libc().syscall(
        _nr("close_range"),
        ctypes.c_uint(first_fd),
        ctypes.c_uint(0xFFFFFFFF),
        ctypes.c_uint(CLOSE_RANGE_CLOEXEC),
    )
    if result < 0:
        # Kernels older than 5.11: walk the open descriptors instead.
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first_fd:
                try:
                    os.set_inheritable(fd, False)
                except OSError:  # closed meanwhile (the listing's own fd)
                    pass


# ------------------------------------------------------------------ sockets


def socketpair_seqpacket() -> tuple[int, int]:
    """A connected pair of close-on-exec AF_UNIX SOCK_SEQPACKET sockets (message
    boundaries kept, as socket.socketpair would make them)."""
    fds = (ctypes.c_int * 2)()
    _check(libc().socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), "socketpair")
    return fds[0], fds[1]


def inet_dgram_socket() -> int:
    """A close-on-exec AF_INET datagram socket: a handle for network interface ioctls."""
    return _check(libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket", "AF_INET")


# ------------------------------------------------------------------ signals

SIG_BLOCK = 0
SIG_SETMASK = 2
SIG_DFL = 0
_SIGSET_BYTES = 128  # glibc's sigset_t (the kernel reads the first 8)
SIGNALFD_SIGINFO_BYTES = 128  # struct signalfd_siginfo; ssi_signo (u32) comes first


def signal_set(numbers: tuple[int, ...] | list[int]) -> ctypes.Array[ctypes.c_char]:
    mask = ctypes.create_string_buffer(_SIGSET_BYTES)  # zeroed: the empty set
    for number in numbers:
        _check(libc().sigaddset(mask, number), "signal-mask", str(number))
    return mask


def signal_is_member(mask: ctypes.Array[ctypes.c_char], number: int) -> bool:
    return _check(libc().sigismember(mask, number), "signal-mask", str(number)) == 1


def block_signals(numbers: tuple[int, ...] | list[int]) -> ctypes.Array[ctypes.c_char]:
    """Block numbers in this thread; returns the previous mask (for restore_signal_mask)."""
    previous = ctypes.create_string_buffer(_SIGSET_BYTES)
    error = libc().pthread_sigmask(SIG_BLOCK, signal_set(numbers), previous)
    if error:
        raise StepError("signal-mask", error, "block")
    return previous


def restore_signal_mask(mask: ctypes.Array[ctypes.c_char]) -> None:
    error = libc().pthread_sigmask(SIG_SETMASK, mask, None)
    if error:
        raise StepError("signal-mask", error, "restore")


def signalfd(numbers: tuple[int, ...] | list[int]) -> int:
    """A close-on-exec signalfd(2) that reads the given (blocked) signals."""
    return _check(libc().signalfd(-1, signal_set(numbers), os.O_CLOEXEC), "signalfd")


def default_signal_action(number: int) -> None:
    """Reset a signal to its default action (Python starts with SIGPIPE and SIGXFSZ
    ignored, and execve keeps an ignored signal ignored)."""
    if libc().signal(number, ctypes.c_void_p(SIG_DFL)) == -1:
        raise StepError("signal-default", ctypes.get_errno() or 22, str(number))


# Every signal whose action can be set: not SIGKILL (9) or SIGSTOP (19), and not 32 and 33,
# which glibc keeps for its threads (its signal() refuses them).
_SETTABLE_SIGNALS = tuple(n for n in range(1, 65) if n not in (9, 19, 32, 33))


def default_all_signal_actions() -> None:
    """Every signal back to its default action before execve: a caught signal would be
    reset by execve anyway, but an ignored one stays ignored, and the caller's own parent
    may have ignored some (a shell's background job ignores SIGINT and SIGQUIT, Python
    ignores SIGPIPE and SIGXFSZ). The container's process starts as runc's does (checked
    with a caller that ignores SIGINT and SIGQUIT: runc's shows no signal ignored)."""
    for number in _SETTABLE_SIGNALS:
        default_signal_action(number)
