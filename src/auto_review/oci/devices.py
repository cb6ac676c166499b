"""/dev inside the container: the default device nodes, linux.devices and the usual links.

Real root creates nodes with mknod; in a user namespace mknod is not allowed, so the host's
node is bind-mounted onto an empty file instead (what runc and crun do).
"""

from __future__ import annotations

import errno
import os
import stat

from auto_review.oci import syscalls as sc
from auto_review.oci.errors import StepError
from auto_review.oci.mounts import secure_join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# path, type, major, minor, mode
DEFAULT_DEVICES: tuple[tuple[str, str, int, int, int], ...] = (
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
)
DEFAULT_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)
_TYPE_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _fail(step: str, exc: OSError, path: str) -> StepError:
    return StepError(step, exc.errno or errno.EIO, path)


def create_device(rootfs: str, path: str, kind: str, major: int, minor: int, mode: int,
                  uid: int | None, gid: int | None, *, bind: bool) -> None:
    target = secure_join(rootfs, path)
    if _same_node(target, kind, major, minor, mode, uid, gid):
        return  # already there (a rootfs sharing the host's /dev): never replace it
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
    except OSError as exc:
        raise _fail("device", exc, path) from exc
    if bind and kind != "p":
        try:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o000))
        except OSError as exc:
            raise _fail("device", exc, path) from exc
        sc.mount(path, target, None, sc.MS_BIND, step="device", path=path)
        return
    try:
        os.mknod(target, _TYPE_BITS[kind] | (mode & 0o7777), os.makedev(major, minor))
        os.chmod(target, mode & 0o7777)  # mknod is subject to the umask
        if uid is not None or gid is not None:
            os.chown(target, -1 if uid is None else uid, -1 if gid is None else gid)
    except OSError as exc:
        raise _fail("device", exc, path) from exc


def _same_node(target: str, kind: str, major: int, minor: int, mode: int,
               uid: int | None, gid: int | None) -> bool:
    try:
        info = os.lstat(target)
    except OSError:
        return False
    return (stat.S_IFMT(info.st_mode) == _TYPE_BITS[kind]
            and (kind == "p" or info.st_rdev == os.makedev(major, minor))
            and stat.S_IMODE(info.st_mode) == mode & 0o7777
            and uid in (None, info.st_uid) and gid in (None, info.st_gid))


def setup_dev(rootfs: str, devices: list[dict[str, Any]], *, bind: bool) -> None:
    """Create the default devices, then linux.devices (which may override them)."""
    wanted = {d["path"] for d in devices}
    for path, kind, major, minor, mode in DEFAULT_DEVICES:
        if path not in wanted:
            create_device(rootfs, path, kind, major, minor, mode, None, None, bind=bind)
    for device in devices:
        kind = device["type"]
        if kind not in _TYPE_BITS:
            raise StepError("device", errno.EINVAL, device["path"])
        create_device(rootfs, device["path"], kind, device.get("major", 0),
                      device.get("minor", 0), device.get("fileMode", 0o666),
                      device.get("uid"), device.get("gid"), bind=bind)
    for source, link in DEFAULT_LINKS:
        # the link itself is never followed: an existing one is kept as it is
        target = os.path.join(secure_join(rootfs, os.path.dirname(link)),
                              os.path.basename(link))
        try:
            if not os.path.lexists(target):
                os.symlink(source, target)
        except OSError as exc:
            raise _fail("device-link", exc, link) from exc
    for directory in ("/dev/pts", "/dev/shm"):  # noqa: S108 - inside the rootfs
        try:
            os.makedirs(secure_join(rootfs, directory), exist_ok=True)
        except OSError as exc:
            raise _fail("device", exc, directory) from exc
