"""The container's filesystem: rootfs propagation and bind, the spec's mounts, pivot_root,
read-only root, readonlyPaths and maskedPaths. Runs in the container init, in its own mount
namespace, so everything here vanishes with the namespace when the container goes away.
"""

from __future__ import annotations

import errno
import os
import stat

from auto_review.oci import syscalls as sc
from auto_review.oci.errors import SpecError, StepError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# option -> (flags to set, flags to clear)
_FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0),
    "remount": (sc.MS_REMOUNT, 0),
    "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "noatime": (sc.MS_NOATIME, 0), "atime": (0, sc.MS_NOATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0), "diratime": (0, sc.MS_NODIRATIME),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "lazytime": (sc.MS_LAZYTIME, 0), "nolazytime": (0, sc.MS_LAZYTIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0), "symfollow": (0, sc.MS_NOSYMFOLLOW),
    "defaults": (0, 0),
}
_PROPAGATION_OPTIONS = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# statvfs f_flag bits -> mount flags that a bind remount must repeat (the kernel refuses
# to clear them when they are locked by a less privileged user namespace)
_LOCKED_FLAGS = ((os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV),
                 (os.ST_NOEXEC, sc.MS_NOEXEC), (os.ST_NOATIME, sc.MS_NOATIME),
                 (os.ST_NODIRATIME, sc.MS_NODIRATIME), (os.ST_RELATIME, sc.MS_RELATIME),
                 (os.ST_RDONLY, sc.MS_RDONLY))


class MountOptions:
    __slots__ = ("bind", "clear", "data", "flags", "ignored", "propagation", "recursive")

    def __init__(self) -> None:
        self.flags = 0
        self.clear = 0
        self.propagation = 0
        self.data: list[str] = []
        self.ignored: list[str] = []  # file-system data given to a bind mount
        self.bind = False
        self.recursive = False


def parse_options(options: list[str], field: str) -> MountOptions:
    """Flags, propagation and file-system data of one mount. A bind mount takes no data:
    `key=value` options on one are set aside in ``ignored`` (as runc and crun ignore them),
    a word that is no known flag is refused (a typo must not pass unnoticed)."""
    parsed = MountOptions()
    for option in options:
        if option in ("bind", "rbind"):
            parsed.bind = True
            parsed.recursive = parsed.recursive or option == "rbind"
        elif option in _FLAG_OPTIONS:
            set_flags, clear_flags = _FLAG_OPTIONS[option]
            parsed.flags = (parsed.flags | set_flags) & ~clear_flags
            parsed.clear |= clear_flags
        elif option in _PROPAGATION_OPTIONS:
            parsed.propagation = _PROPAGATION_OPTIONS[option]
        else:
            parsed.data.append(option)
    if parsed.bind and parsed.data:
        words = [option for option in parsed.data if "=" not in option]
        if words:
            raise SpecError(f"unsupported field {field}: unknown option {words[0]!r} "
                            "on a bind mount")
        parsed.ignored, parsed.data = parsed.data, []
    return parsed


# Types that get no SELinux context= option: as runc, proc and sysfs carry their own labels,
# mqueue is labelled on its mount point instead, cgroup mounts are binds of host cgroups.
_UNLABELLED_TYPES = ("proc", "sysfs", "mqueue", "cgroup")
SELINUX_ENFORCE = "/sys/fs/selinux/enforce"


def mount_label(label: str | None) -> str | None:
    """linux.mountLabel when it can apply: only where SELinux is enabled (its file system
    is mounted), as runc and crun do; elsewhere the label is ignored. A debug line says
    which."""
    if not label:
        return None
    from auto_review.oci.debug import debug

    if not os.path.exists(SELINUX_ENFORCE):
        debug(f"linux.mountLabel {label!r}: SELinux is not enabled on this host, ignored")
        return None
    debug(f"linux.mountLabel {label!r}: SELinux is enabled, applied as context= to the "
          "container's file-system mounts")
    return label


def labelled_data(data: str | None, kind: str, label: str | None) -> str | None:
    """Mount data with the SELinux context option added, for the types runc labels."""
    if label is None or kind in _UNLABELLED_TYPES:
        return data
    context = f'context="{label}"'
    return f"{data},{context}" if data else context


def secure_join(root: str, unsafe: str) -> str:
    """root + unsafe, resolving symlinks as if root were '/', so nothing escapes root."""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > 40:
                raise StepError("mount-destination", errno.ELOOP, unsafe)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure_mountpoint(path: str, as_file: bool, step: str, shown: str) -> None:
    try:
        if as_file:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not os.path.exists(path):
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        else:
            os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StepError(step, exc.errno or errno.EIO, shown) from exc


def _locked_flags(path: str) -> int:
    flags = 0
    mount_flags = os.statvfs(path).f_flag
    for st_flag, ms_flag in _LOCKED_FLAGS:
        if mount_flags & st_flag:
            flags |= ms_flag
    return flags


def bind_remount(path: str, flags: int, clear: int, step: str, shown: str) -> None:
    """Apply flags to an existing bind mount, keeping the flags the kernel locks."""
    current = _locked_flags(path) & ~clear
    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | current | flags,
             step=step, path=shown)


def prepare_rootfs(rootfs: str, propagation: str | None, *,
                   change_root_propagation: bool = True) -> None:
    """Stop mount events reaching the host, then make the rootfs a mount point of its own.

    Without a mount namespace of its own the container shares the runtime's: its "/" is
    left as it is (it is the caller's), and everything the container mounts sits on the
    rootfs bind, which `delete` detaches (see ``detach_shared_rootfs``)."""
    if change_root_propagation:
        root_flag = sc.MS_PRIVATE if propagation == "private" else sc.MS_SLAVE
        sc.mount(None, "/", None, sc.MS_REC | root_flag, step="rootfs-propagation", path="/")
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC, step="rootfs-bind", path=rootfs)


def mount_entry(entry: dict[str, Any], index: int, rootfs: str, bundle: str,
                cgroup_dirs: list[str] | None = None, label: str | None = None) -> None:
    destination = entry["destination"]
    field = f"mounts[{index}]"
    options = parse_options(entry.get("options") or [], field)
    kind = entry.get("type") or ""
    target = secure_join(rootfs, destination)
    step = f"mount:{kind or 'bind'}"
    if options.bind:
        source = entry.get("source") or ""
        if not os.path.isabs(source):
            source = os.path.join(bundle, source)
        try:
            is_dir = os.path.isdir(source) if os.path.exists(source) else None
        except OSError:
            is_dir = None
        if is_dir is None:
            raise StepError(step, errno.ENOENT, source)
        _ensure_mountpoint(target, not is_dir, step, destination)
        recursive = sc.MS_REC if options.recursive else 0
        sc.mount(source, target, None, sc.MS_BIND | recursive, step=step, path=destination)
        if options.flags or options.clear:
            bind_remount(target, options.flags, options.clear, step, destination)
    elif kind == "cgroup":
        _ensure_mountpoint(target, False, step, destination)
        mount_cgroup_tree(target, options, destination, cgroup_dirs or [])
    else:
        _ensure_mountpoint(target, False, step, destination)
        data = labelled_data(",".join(options.data) or None, kind, label)
        sc.mount(entry.get("source") or kind, target, kind, options.flags, data,
                 step=step, path=destination)
        if label is not None and kind == "mqueue":
            _set_file_label(target, label, step, destination)
    if options.propagation:
        sc.mount(None, target, None, options.propagation, step=step, path=destination)


def _set_file_label(path: str, label: str, step: str, shown: str) -> None:
    try:
        os.setxattr(path, "security.selinux", label.encode())
    except OSError as exc:
        raise StepError(step, exc.errno or errno.EIO, shown) from exc


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") then detach the old root, as runc does (no temp directory)."""
    try:
        os.chdir(rootfs)
    except OSError as exc:
        raise StepError("pivot_root", exc.errno or errno.EIO, rootfs) from exc
    sc.pivot_root(".", ".")
    # the old root is now stacked on "."; keep its unmount from propagating to the host
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC, step="pivot_root", path="/")
    sc.umount2(".", sc.MNT_DETACH, step="pivot_root", path="old root")
    os.chdir("/")


def enter_chroot(rootfs: str) -> None:
    """The root change without a mount namespace of its own: chroot, as runc does."""
    try:
        os.chdir(rootfs)
        os.chroot(".")
        os.chdir("/")
    except OSError as exc:
        raise StepError("chroot", exc.errno or errno.EIO, rootfs) from exc


def detach_shared_rootfs(rootfs: str) -> None:
    """Remove a container's mounts from the runtime's own mount namespace: they all sit on
    the rootfs bind, so detaching it takes them all. Only a bind the runtime made (the
    rootfs is a mount point whose root is the rootfs itself) is touched."""
    if not _is_mount_point(rootfs):
        return
    import contextlib

    # already gone, or in another mount namespace: nothing of ours to remove
    with contextlib.suppress(StepError):
        sc.umount2(rootfs, sc.MNT_DETACH, step="rootfs-unmount", path=rootfs)


def _is_mount_point(path: str) -> bool:
    """From mountinfo: os.path.ismount misses a bind of a directory on its own file system."""
    try:
        with open("/proc/self/mountinfo") as handle:
            return any(_unescape_mountinfo(line.split()[4]) == path for line in handle)
    except OSError:
        return False


def shared_root_is_safe() -> bool:
    """Whether a container without a mount namespace may use "/" as its rootfs: only when
    the caller sits in a mount namespace other than init's (its "/" is another mount, with
    another id) and that "/" is private, so the rootfs bind (a second "/") stays in it.
    Elsewhere it would stack on the host's "/" and break every later user namespace."""
    own, init = _root_mount("/proc/self/mountinfo"), _root_mount("/proc/1/mountinfo")
    if own is None or init is None or own[0] == init[0]:
        return False
    optional = own[6:own.index("-")]
    return not any(tag.startswith(("shared:", "master:")) for tag in optional)


def _root_mount(mountinfo: str) -> list[str] | None:
    """The fields of the topmost mount at "/" in a mountinfo file, None if unreadable."""
    found = None
    try:
        with open(mountinfo) as handle:
            for line in handle:
                fields = line.split()
                if fields[4] == "/":
                    found = fields
    except OSError:
        return None
    return found


def apply_root_propagation(propagation: str | None) -> None:
    if propagation in ("shared", "unbindable"):
        flag = sc.MS_SHARED if propagation == "shared" else sc.MS_UNBINDABLE
        sc.mount(None, "/", None, sc.MS_REC | flag, step="rootfs-propagation", path="/")


def remount_root_readonly() -> None:
    bind_remount("/", sc.MS_RDONLY, 0, "root-readonly", "/")


def readonly_path(path: str) -> None:
    if not os.path.exists(path):
        return
    sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC, step="readonly-path", path=path)
    # read-only only, as runc 1.1 and crun 1.8 do (the locked flags are kept)
    bind_remount(path, sc.MS_RDONLY, 0, "readonly-path", path)


def mask_path(path: str) -> None:
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StepError("masked-path", exc.errno or errno.EIO, path) from exc
    if is_dir:
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, "size=0,mode=0555",
                 step="masked-path", path=path)
    else:
        sc.mount("/dev/null", path, None, sc.MS_BIND, step="masked-path", path=path)


def _unescape_mountinfo(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    if "\\" not in field:
        return field
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1:index + 4].isdigit():
            out.append(chr(int(field[index + 1:index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def own_cgroup_mounts() -> list[tuple[str, str]]:
    """(host directory of our own cgroup, hierarchy name) for every cgroup hierarchy
    mounted in this mount namespace: v1 ones named after their mount point
    (``cpu,cpuacct``, ``name=systemd`` as ``systemd``), the v2 one as its mount point's.
    Beside v1 hierarchies (a hybrid host) the v2 one is left out, as runc leaves it out of
    a v1 ``cgroup`` mount."""
    memberships: dict[frozenset[str], str] = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, own = line.rstrip("\n").split(":", 2)
            memberships[frozenset(controllers.split(",")) if controllers else frozenset()] = own
    found: list[tuple[str, str]] = []
    unified: list[tuple[str, str]] = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            fstype, super_options = fields[separator + 1], fields[separator + 3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            mount_root, mount_point = _unescape_mountinfo(fields[3]), _unescape_mountinfo(fields[4])
            if fstype == "cgroup2":
                key: frozenset[str] = frozenset()
            else:
                options = set(super_options.split(","))
                key = next((k for k in memberships if k and k <= options), frozenset({"?"}))
            path = memberships.get(key)
            if path is None:
                continue
            relative = os.path.relpath(path, mount_root)
            if relative.startswith(".."):
                continue  # our cgroup is outside what this mount shows
            (unified if fstype == "cgroup2" else found).append(
                (os.path.normpath(os.path.join(mount_point, relative)),
                 os.path.basename(mount_point)))
    return found or unified


def mount_cgroup_tree(target: str, options: MountOptions, shown: str,
                      cgroup_dirs: list[str]) -> None:
    """A ``cgroup`` mount as runc makes it on cgroup v1 and hybrid hosts: a tmpfs with a
    directory per hierarchy, holding the container's own cgroup directory bind-mounted with
    the mount's flags (``ro`` makes them all read-only). As root the container has a cgroup
    of its own in every hierarchy, so each shows it, as with runc. Only a directory the
    runtime made or joined for the container (cgroup_dirs) is shown: where it has none
    (rootless, no limit there) the hierarchy stays an empty directory, never the host's
    tree. Co-mounted controllers (``cpu,cpuacct``) also get a link per controller."""
    step = "mount:cgroup"
    flags = options.flags & ~sc.MS_RDONLY
    sc.mount("tmpfs", target, "tmpfs", flags, "mode=755", step=step, path=shown)
    for source, name in own_cgroup_mounts():
        directory = os.path.join(target, name)
        _ensure_mountpoint(directory, False, step, os.path.join(shown, name))
        if source not in cgroup_dirs:
            continue
        sc.mount(source, directory, None, sc.MS_BIND | sc.MS_REC, step=step, path=source)
        bind_remount(directory, options.flags, options.clear, step, os.path.join(shown, name))
        if "," in name:
            for controller in name.split(","):
                link = os.path.join(target, controller)
                if not os.path.lexists(link):
                    os.symlink(name, link)
    if options.flags & sc.MS_RDONLY:
        sc.mount(None, target, None, sc.MS_REMOUNT | flags | sc.MS_RDONLY, "mode=755",
                 step=step, path=shown)
