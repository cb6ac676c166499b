"""Container probe: run as a bundle's process, prints one JSON object of what it sees.

Standard library only (ctypes for the raw syscalls), so it runs under Debian's
/usr/bin/python3 bound read-only into a minimal rootfs. Every section is read directly from
the kernel (/proc, syscalls, ioctls) rather than from configuration, so the report shows the
posture the runtime actually set up, not the one it was asked for.

Usage: probe.py [--connect HOST:PORT] [--path PATH]... [--write-dir DIR]... [--read FILE]...
                [--cgroup-file CTRL/FILE]...
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import json
import os
import resource
import socket
import stat
import struct
import sys

# Capability numbers from linux/capability.h; names as the OCI spec spells them.
CAPABILITY_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
CAPABILITY_SETS = {
    "CapInh": "inheritable",
    "CapPrm": "permitted",
    "CapEff": "effective",
    "CapBnd": "bounding",
    "CapAmb": "ambient",
}
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
# The syscall the test configs deny with SCMP_ACT_ERRNO. personality(0xffffffff) only
# queries the current persona, so calling it is harmless when it is allowed.
DENIED_SYSCALL_NAME = "personality"
DENIED_SYSCALL_NUMBERS = {"x86_64": 135, "aarch64": 92}
PERSONALITY_QUERY = 0xFFFFFFFF
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
# Per-mount flags that runtimes set; super-block options are reported separately.
DEFAULT_PATHS = (
    "/", "/proc/kcore", "/proc/keys", "/proc/acpi", "/proc/scsi", "/proc/sys",
    "/proc/sysrq-trigger", "/sys/firmware", "/dev", "/dev/shm", "/dev/pts", "/dev/mqueue",
    "/tmp", "/etc/ld.so.cache", "/usr/bin/python3",
)  # fmt: skip
DEFAULT_CGROUP_FILES = (
    "pids/pids.max", "memory/memory.limit_in_bytes", "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us", "cpu/cpu.shares", "pids.max", "memory.max", "cpu.max",
)  # fmt: skip
LIST_LIMIT = 64
READ_LIMIT = 256


def errno_name(number: int) -> str:
    return errno.errorcode.get(number, str(number))


def read_status() -> dict[str, str]:
    fields: dict[str, str] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def capability_names(mask: int) -> list[str]:
    names = []
    for number in range(mask.bit_length()):
        if mask >> number & 1:
            known = number < len(CAPABILITY_NAMES)
            names.append(CAPABILITY_NAMES[number] if known else f"CAP_{number}")
    return names


def identity() -> dict[str, object]:
    return {
        "uid": list(os.getresuid()),
        "gid": list(os.getresgid()),
        "groups": sorted(os.getgroups()),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "umask": read_status().get("Umask", ""),
        "uid_map": read_text("/proc/self/uid_map").split("\n"),
        "gid_map": read_text("/proc/self/gid_map").split("\n"),
        "setgroups": read_text("/proc/self/setgroups"),
        "oom_score_adj": read_text("/proc/self/oom_score_adj"),
        "env": dict(sorted(os.environ.items())),
        "argv0": sys.argv[0],
    }


def security(status: dict[str, str]) -> dict[str, object]:
    capabilities = {
        name: capability_names(int(status[key], 16)) for key, name in CAPABILITY_SETS.items()
    }
    seccomp_mode = int(status.get("Seccomp", "0"))
    return {
        "capabilities": capabilities,
        "no_new_privs": status.get("NoNewPrivs") == "1",
        "seccomp": SECCOMP_MODES.get(seccomp_mode, str(seccomp_mode)),
        "seccomp_filters": int(status.get("Seccomp_filters", "0")),
    }


def namespaces() -> dict[str, str]:
    links = {}
    for name in NAMESPACES:
        try:
            links[name] = os.readlink(f"/proc/self/ns/{name}")
        except OSError as error:
            links[name] = f"error:{errno_name(error.errno or 0)}"
    return links


def unescape_mount_field(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, index = [], 0
    while index < len(text):
        escape = text[index + 1 : index + 4]
        if text[index] == "\\" and len(escape) == 3 and escape.isdigit():
            out.append(chr(int(escape, 8)))
            index += 4
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def mounts() -> list[dict[str, object]]:
    table = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            before, _, after = line.rstrip("\n").partition(" - ")
            fields = before.split(" ")
            fstype, source, super_options = [*after.split(" "), "", "", ""][:3]
            optional = [field for field in fields[6:] if field]
            table.append(
                {
                    "destination": unescape_mount_field(fields[4]),
                    "root": unescape_mount_field(fields[3]),
                    "type": fstype,
                    "source": unescape_mount_field(source),
                    "options": sorted(fields[5].split(",")),
                    "super_options": sorted(super_options.split(",")),
                    "propagation": optional,
                }
            )
    return table


def rlimits() -> dict[str, list[int]]:
    limits = {}
    for name in sorted(dir(resource)):
        if name.startswith("RLIMIT_"):
            soft, hard = resource.getrlimit(getattr(resource, name))
            limits[name] = [soft, hard]
    return limits


def cgroup_view(files: list[str]) -> dict[str, object]:
    memberships = []
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as cgroup:
            memberships = [line.rstrip("\n") for line in cgroup]
    except OSError as error:
        memberships = [f"error:{errno_name(error.errno or 0)}"]
    limits: dict[str, str] = {}
    for relative in files:
        try:
            with open(os.path.join("/sys/fs/cgroup", relative), encoding="ascii") as limit:
                limits[relative] = limit.read().strip()
        except OSError as error:
            limits[relative] = f"error:{errno_name(error.errno or 0)}"
    return {"membership": memberships, "limits": limits}


def describe_path(path: str) -> dict[str, object]:
    try:
        info = os.lstat(path)
    except OSError as error:
        return {"exists": False, "error": errno_name(error.errno or 0)}
    kind = (
        "dir" if stat.S_ISDIR(info.st_mode)
        else "file" if stat.S_ISREG(info.st_mode)
        else "link" if stat.S_ISLNK(info.st_mode)
        else "char" if stat.S_ISCHR(info.st_mode)
        else "block" if stat.S_ISBLK(info.st_mode)
        else "other"
    )  # fmt: skip
    report: dict[str, object] = {
        "exists": True,
        "type": kind,
        "mode": oct(stat.S_IMODE(info.st_mode)),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "size": info.st_size if kind == "file" else None,
        "readable": os.access(path, os.R_OK),
        "writable": os.access(path, os.W_OK),
    }
    if kind == "link":
        report["target"] = os.readlink(path)
    if kind in ("char", "block"):
        report["device"] = [os.major(info.st_rdev), os.minor(info.st_rdev)]
    if kind == "dir":
        try:
            report["entries"] = sorted(os.listdir(path))[:LIST_LIMIT]
        except OSError as error:
            report["entries"] = f"error:{errno_name(error.errno or 0)}"
    elif kind == "file":
        report["read"] = read_probe(path)
    return report


def read_probe(path: str) -> str:
    """Whether a read of the file returns data, nothing, or which errno."""
    try:
        with open(path, "rb") as handle:
            return "data" if handle.read(1) else "empty"
    except OSError as error:
        return f"error:{errno_name(error.errno or 0)}"


def write_probe(directory: str) -> str:
    """Try to create a file, so a read-only mount shows as EROFS, not as an access guess."""
    target = os.path.join(directory, f".probe-write-{os.getpid()}")
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        return f"error:{errno_name(error.errno or 0)}"
    os.close(descriptor)
    os.unlink(target)
    return "ok"


def interfaces() -> list[dict[str, object]]:
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        for _index, name in sorted(socket.if_nameindex(), key=lambda item: item[1]):
            request = struct.pack("16sH14x", name.encode()[:15], 0)
            try:
                flags = struct.unpack("16sH14x", fcntl.ioctl(control, SIOCGIFFLAGS, request))[1]
            except OSError as error:
                found.append({"name": name, "error": errno_name(error.errno or 0)})
                continue
            found.append(
                {"name": name, "up": bool(flags & IFF_UP), "loopback": bool(flags & IFF_LOOPBACK)}
            )
    return found


def denied_syscall() -> dict[str, object]:
    number = DENIED_SYSCALL_NUMBERS.get(os.uname().machine)
    if number is None:
        return {"name": DENIED_SYSCALL_NAME, "error": f"unknown arch {os.uname().machine}"}
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), ctypes.c_ulong(PERSONALITY_QUERY))
    code = ctypes.get_errno() if result == -1 else 0
    return {
        "name": DENIED_SYSCALL_NAME,
        "result": result,
        "errno": errno_name(code) if code else None,
    }


def reachability(target: str | None) -> dict[str, object] | None:
    if not target:
        return None
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0) as connection:
            connection.sendall(b"probe\n")
        return {"target": target, "connected": True, "error": None}
    except OSError as error:
        code = error.errno or 0
        detail = errno_name(code) if code else type(error).__name__
        return {"target": target, "connected": False, "error": detail}


def collect(arguments: argparse.Namespace) -> dict[str, object]:
    status = read_status()
    paths = list(DEFAULT_PATHS) + [path for path in arguments.path if path not in DEFAULT_PATHS]
    return {
        "identity": identity(),
        "security": security(status),
        "namespaces": namespaces(),
        "hostname": socket.gethostname(),
        "domainname": read_text("/proc/sys/kernel/domainname"),
        "mounts": mounts(),
        "rlimits": rlimits(),
        "cgroup": cgroup_view(list(DEFAULT_CGROUP_FILES) + arguments.cgroup_file),
        "paths": {path: describe_path(path) for path in paths},
        "writes": {directory: write_probe(directory) for directory in arguments.write_dir},
        "reads": {path: read_text(path)[:READ_LIMIT] for path in arguments.read},
        "interfaces": interfaces(),
        "denied_syscall": denied_syscall(),
        "reach": reachability(arguments.connect),
    }


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        return f"error:{errno_name(error.errno or 0)}"


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Report what a container process sees.")
    parser.add_argument("--connect", help="HOST:PORT to try a TCP connection to")
    parser.add_argument("--path", action="append", default=[], help="extra path to describe")
    parser.add_argument(
        "--write-dir", action="append", default=[], help="directory to try creating a file in"
    )
    parser.add_argument(
        "--read", action="append", default=[], help="text file whose content to report"
    )
    parser.add_argument(
        "--cgroup-file", action="append", default=[], help="extra file under /sys/fs/cgroup"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    report = collect(parse_arguments(argv))
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
