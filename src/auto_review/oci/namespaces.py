"""Linux namespaces of a container: which to create, which to join, and the id maps.

Order (as runc and crun do it): the intermediate process joins every namespace given by
path (user first), then unshares a new user namespace and waits while the parent writes
its uid/gid maps, then unshares all other new namespaces at once, pid included, so that
the next process it forks is pid 1 of the new pid namespace.
"""

from __future__ import annotations

import errno
import os

from auto_review.oci import syscalls
from auto_review.oci.errors import StepError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = {
    "user": syscalls.CLONE_NEWUSER,
    "pid": syscalls.CLONE_NEWPID,
    "network": syscalls.CLONE_NEWNET,
    "mount": syscalls.CLONE_NEWNS,
    "ipc": syscalls.CLONE_NEWIPC,
    "uts": syscalls.CLONE_NEWUTS,
    "cgroup": syscalls.CLONE_NEWCGROUP,
}
# Joining order: the user namespace first, so the later joins happen with its rights;
# mount last, since joining it changes how the other paths resolve.
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount")


class NamespacePlan:
    """The namespaces of one container: new ones (flags) and ones joined by path."""

    __slots__ = ("join", "new_flags", "new_user")

    def __init__(self, namespaces: list[dict[str, Any]]) -> None:
        self.join: list[tuple[str, str]] = []
        self.new_flags = 0
        self.new_user = False
        for kind in _JOIN_ORDER:
            for entry in namespaces:
                if entry.get("type") != kind:
                    continue
                if entry.get("path"):
                    self.join.append((kind, entry["path"]))
                elif kind == "user":
                    self.new_user = True
                else:
                    self.new_flags |= FLAGS[kind]

    @property
    def own_mount_namespace(self) -> bool:
        """False when the container shares the runtime's mount namespace."""
        return bool(self.new_flags & FLAGS["mount"]) or any(k == "mount" for k, _ in self.join)

    @property
    def in_user_namespace(self) -> bool:
        return self.new_user or any(kind == "user" for kind, _ in self.join)

    def open_join_paths(self) -> list[tuple[str, str, int]]:
        """Open the namespace files in the caller, so a missing one fails before fork."""
        opened: list[tuple[str, str, int]] = []
        try:
            for kind, path in self.join:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise StepError(f"namespace-{kind}", exc.errno or errno.EIO, path) from exc
                opened.append((kind, path, fd))
        except BaseException:
            for _, _, fd in opened:
                os.close(fd)
            raise
        return opened


def join_all(opened: list[tuple[str, str, int]]) -> None:
    for kind, path, fd in opened:
        syscalls.setns(fd, FLAGS[kind], f"setns-{kind}", path)
        os.close(fd)


def default_mappings(spec_maps: list[dict[str, int]] | None, host_id: int) -> list[dict[str, int]]:
    """The spec's mappings, or the caller's own id as container id 0 (rootless default)."""
    if spec_maps:
        return spec_maps
    return [{"containerID": 0, "hostID": host_id, "size": 1}]


def format_map(mappings: list[dict[str, int]]) -> bytes:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                   for m in mappings).encode()


def write_id_maps(pid: int, uid_maps: list[dict[str, int]], gid_maps: list[dict[str, int]],
                  *, privileged: bool) -> None:
    """Write /proc/PID/{setgroups,uid_map,gid_map} for a process in a new user namespace.

    An unprivileged caller must deny setgroups before it may write a gid map; it can then
    map only its own ids (several ranges would need the setuid newuidmap helpers).
    """
    if not privileged:
        _write_proc(pid, "setgroups", b"deny", "setgroups")
    _write_proc(pid, "uid_map", format_map(uid_maps), "uid_map")
    _write_proc(pid, "gid_map", format_map(gid_maps), "gid_map")


def _write_proc(pid: int, name: str, data: bytes, step: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StepError(step, exc.errno or errno.EIO, path) from exc


def maps_container_root(mappings: list[dict[str, int]]) -> bool:
    return any(m["containerID"] == 0 and m["size"] > 0 for m in mappings)


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def bring_up_loopback() -> None:
    """Set `lo` up in a new network namespace (it starts down), as runc and crun do."""
    import fcntl
    import struct

    try:
        sock = syscalls.inet_dgram_socket()
    except StepError as exc:
        raise StepError("network-loopback", exc.errno, "lo") from exc
    try:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))
    except OSError as exc:
        raise StepError("network-loopback", exc.errno or errno.EIO, "lo") from exc
    finally:
        os.close(sock)
