"""The two forked processes that build a container: the intermediate and the init.

Both are forks of the runtime's Python process and must never return into its stack:
each entry point ends in ``os._exit``. A failure is sent to the parent over the sync
socket as ``ERR step\\0errno\\0path`` (see ``encode_error``), then the process exits.

Intermediate: join namespaces by path, unshare the user namespace, wait while the parent
writes the id maps and puts it in the cgroup, become root of the namespace, unshare every
other namespace (pid included), then clone the init with CLONE_PARENT so the init is the
runtime's own child, and exit.

Init (pid 1): announce its pid as the runtime sees it, set up the filesystem, devices,
pivot_root and the rest, report READY, wait for START, run startContainer hooks, drop to
the process identity and privileges, execve. The start connection is close-on-exec: the
starter reads EOF when execve worked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from auto_review.oci import capabilities, devices, hooks, mounts, namespaces, rlimits
from auto_review.oci import syscalls as sc
from auto_review.oci.errors import StepError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

START_SOCKET = "start.sock"
MAX_MESSAGE = 4096


def encode_error(error: StepError) -> bytes:
    return b"ERR " + b"\0".join(
        (error.step.encode(), str(error.errno).encode(), os.fsencode(error.path)))


def decode_error(message: bytes) -> StepError:
    step, number, path = message[4:].split(b"\0", 2)
    return StepError(step.decode(), int(number), os.fsdecode(path))


def high_fd(fd: int, minimum: int) -> int:
    """Move fd to a close-on-exec descriptor >= minimum (clear of fds passed to the
    container), closing the original."""
    if fd >= minimum:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, minimum)
    os.close(fd)
    return moved


class LaunchPlan:
    """Everything the children need, computed in the parent before fork."""

    __slots__ = ("bundle", "cap_masks", "cgroup_dirs", "cgroup_ns_in_init", "cgroup_self_join",
                 "cgroup_tasks", "cgroup_v2_fd", "config", "container_id", "landlock_policy",
                 "mount_label", "namespace_fds", "ns_plan", "pass_fds", "preserve_fds",
                 "rlimits", "rootfs", "run_mode", "seccomp_filter", "start_listener",
                 "state_dir", "stdio", "sync_with_parent", "uid_maps")

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.container_id = ""
        self.bundle = ""
        self.rootfs = ""
        self.state_dir = ""
        self.run_mode = False
        self.preserve_fds = 0
        self.pass_fds: tuple[int, ...] = ()  # caller fds that become 3+preserve_fds, ...
        self.stdio: tuple[int, int, int] | None = None
        self.ns_plan: namespaces.NamespacePlan | None = None
        self.namespace_fds: list[tuple[str, str, int]] = []
        self.uid_maps: list[dict[str, int]] = []
        self.cap_masks: dict[str, int] = {}
        self.rlimits: list[tuple[str, int, int, int]] = []
        self.seccomp_filter: Any = None
        self.landlock_policy: Any = None
        self.mount_label: str | None = None  # linux.mountLabel, where SELinux applies it
        # create mode: the start socket, bound by the runtime in the state directory (which
        # the init may not be able to enter: its root can be an unprivileged host uid)
        self.start_listener = -1
        self.cgroup_dirs: list[str] = []  # the container's own cgroup directories
        # The children join the cgroup themselves (see join_cgroup_v1): the v1 `tasks`
        # files the intermediate writes, the v2 directory the init is cloned into.
        self.cgroup_self_join = False
        self.cgroup_tasks: list[str] = []
        self.cgroup_v2_fd = -1
        # With a self-join, a new cgroup namespace is made by the init, once it sits in
        # the container's cgroups (v2 ones included), so that they are its root.
        self.cgroup_ns_in_init = False
        # SYNC/GO: the parent writes id maps or cgroup.procs while the intermediate waits;
        # skipped when it has neither to do
        self.sync_with_parent = True

    @property
    def first_free_fd(self) -> int:
        """The lowest descriptor not handed to the container."""
        return 3 + self.preserve_fds + len(self.pass_fds)

    def hook_state(self, status: str, pid: int) -> dict[str, Any]:
        state: dict[str, Any] = {"ociVersion": self.config.get("ociVersion", "1.0.0"),
                                 "id": self.container_id, "status": status, "pid": pid,
                                 "bundle": self.bundle}
        if self.config.get("annotations"):
            state["annotations"] = self.config["annotations"]
        return state


def _send(fd: int, message: bytes) -> None:
    os.write(fd, message)


def _expect(fd: int, wanted: bytes, step: str) -> None:
    message = os.read(fd, MAX_MESSAGE)
    if message != wanted:
        # the parent went away or refused: stop quietly, it cleans up
        raise StepError(step, errno.EPIPE, "")


def _send_quietly(fd: int, message: bytes) -> None:
    try:
        os.write(fd, message)
    except OSError:  # the parent is gone; nobody is left to tell
        pass


def _child_exit(sync_fd: int, body: Any) -> None:
    """Run body() in a forked child; report any failure on sync_fd; never return."""
    code = 1
    try:
        body()
        code = 0
    except StepError as exc:
        _send_quietly(sync_fd, encode_error(exc))
    except BaseException as exc:
        step_error = StepError("init-internal", errno.EIO, type(exc).__name__ + ": " + str(exc))
        _send_quietly(sync_fd, encode_error(step_error))
    finally:
        os._exit(code)


# ------------------------------------------------------------------ intermediate


def intermediate_main(plan: LaunchPlan, sync_fd: int) -> None:
    _child_exit(sync_fd, lambda: _intermediate(plan, sync_fd))


def _intermediate(plan: LaunchPlan, sync_fd: int) -> None:
    ns_plan = plan.ns_plan
    assert ns_plan is not None
    for tasks_file in plan.cgroup_tasks:  # before setns: the paths are the host's
        join_cgroup_v1(tasks_file)
    namespaces.join_all(plan.namespace_fds)
    if ns_plan.new_user:
        sc.unshare(sc.CLONE_NEWUSER, "unshare-user")
    if plan.sync_with_parent:
        _send(sync_fd, b"SYNC")
        _expect(sync_fd, b"GO", "sync")
    if ns_plan.in_user_namespace and namespaces.maps_container_root(plan.uid_maps):
        try:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError as exc:
            raise StepError("become-root", exc.errno or errno.EPERM, "") from exc
    flags = ns_plan.new_flags & ~sc.CLONE_NEWCGROUP if plan.cgroup_ns_in_init else ns_plan.new_flags
    if flags:
        sc.unshare(flags, "unshare")
    if sc.clone_sibling(plan.cgroup_v2_fd) == 0:
        init_main(plan, sync_fd)  # never returns
    # the init announces its own pid: its messages then always follow that one


def join_cgroup_v1(tasks_file: str) -> None:
    """Move this (single-threaded) process into a v1 cgroup by writing "0" to its `tasks`.

    For its own thread the kernel skips the global threadgroup lock that a write to
    cgroup.procs takes, whose first use after a pause waits for an RCU grace period
    (4-15 ms here). The init cloned later inherits the cgroup."""
    try:
        fd = os.open(tasks_file, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as exc:
        raise StepError("cgroup", exc.errno or errno.EIO, tasks_file) from exc


# ------------------------------------------------------------------ init


def init_main(plan: LaunchPlan, sync_fd: int) -> None:
    _child_exit(sync_fd, lambda: _init(plan, sync_fd))


def _init(plan: LaunchPlan, sync_fd: int) -> None:
    config = plan.config
    linux = config.get("linux") or {}
    process = config["process"]
    ns_plan = plan.ns_plan
    assert ns_plan is not None
    os.setsid()
    if plan.cgroup_ns_in_init:
        sc.unshare(sc.CLONE_NEWCGROUP, "unshare")
    # our pid as the runtime sees it: the runtime's /proc is still mounted here
    host_pid = int(os.readlink("/proc/self"))
    _send(sync_fd, b"PID %d" % host_pid)
    if ns_plan.new_flags & sc.CLONE_NEWNET:
        namespaces.bring_up_loopback()
    rootfs = plan.rootfs
    propagation = linux.get("rootfsPropagation")
    own_mounts = ns_plan.own_mount_namespace
    mounts.prepare_rootfs(rootfs, propagation, change_root_propagation=own_mounts)

    config_hooks = config.get("hooks") or {}
    if config_hooks.get("createContainer") or config_hooks.get("startContainer"):
        import subprocess  # noqa: F401 - the stdlib is out of reach after pivot_root
    if config_hooks.get("prestart") or config_hooks.get("createRuntime"):
        _send(sync_fd, b"HOOKS")
        _expect(sync_fd, b"GO", "hooks")

    for index, entry in enumerate(config.get("mounts") or []):
        mounts.mount_entry(entry, index, rootfs, plan.bundle, plan.cgroup_dirs,
                           plan.mount_label)
    devices.setup_dev(rootfs, linux.get("devices") or [], bind=ns_plan.in_user_namespace)
    # still part of the create operation: "creating", as for createRuntime
    hooks.run_hooks("createContainer", config_hooks.get("createContainer"),
                    plan.hook_state("creating", host_pid))

    if own_mounts:
        mounts.pivot(rootfs)
        mounts.apply_root_propagation(propagation)
    else:  # the runtime's mount namespace: pivot_root would move its root, chroot as runc
        mounts.enter_chroot(rootfs)
    for key, value in (linux.get("sysctl") or {}).items():
        _write_sysctl(key, value)
    for path in linux.get("readonlyPaths") or []:
        mounts.readonly_path(path)
    for path in linux.get("maskedPaths") or []:
        mounts.mask_path(path)
    if (config.get("root") or {}).get("readonly"):
        mounts.remount_root_readonly()
    if config.get("hostname"):
        sc.sethostname(config["hostname"])
    if config.get("domainname"):
        sc.setdomainname(config["domainname"])

    env = _environment(process.get("env") or [])
    executable = _resolve_executable(process["args"][0], env.get("PATH"))
    try:
        os.chdir(process["cwd"])
    except OSError as exc:
        raise StepError("cwd", exc.errno or errno.EIO, process["cwd"]) from exc
    rlimits.apply(plan.rlimits)

    _send(sync_fd, b"READY")
    if plan.run_mode:
        start_fd = sync_fd
    else:
        os.close(sync_fd)
        start_fd = _accept_start(plan.start_listener, plan.first_free_fd)
    message = os.read(start_fd, MAX_MESSAGE)
    if message != b"START":
        os._exit(1)
    # from here on, failures go to whoever started us
    _child_exit(start_fd, lambda: _start_and_exec(plan, executable, env, host_pid))


def _start_and_exec(plan: LaunchPlan, executable: str, env: dict[str, str],
                    host_pid: int) -> None:
    config = plan.config
    process = config["process"]
    hooks.run_hooks("startContainer", (config.get("hooks") or {}).get("startContainer"),
                    plan.hook_state("created", host_pid))
    _prepare_fds(plan.stdio, plan.preserve_fds, plan.pass_fds)
    _give_stdio_to_user(process.get("user") or {})
    _become_process_user(process, plan)
    sc.default_all_signal_actions()  # an ignored signal would stay ignored across execve
    try:
        os.execve(executable, process["args"], env)  # noqa: S606 - the container process
    except OSError as exc:
        raise StepError("exec", exc.errno or errno.ENOEXEC, executable) from exc


def _accept_start(listener: int, minimum_fd: int) -> int:
    import socket  # loaded already: create imported it before the fork

    server = socket.socket(fileno=listener)
    connection, _ = server.accept()  # PEP 475: retried after signals; not inheritable
    server.close()
    return high_fd(connection.detach(), minimum_fd)


def _write_sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as exc:
        raise StepError("sysctl", exc.errno or errno.EIO, key) from exc


def _environment(entries: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        name, _, value = entry.partition("=")
        env[name] = value
    return env


def _resolve_executable(name: str, search_path: str | None) -> str:
    candidates = [name] if "/" in name else [
        os.path.join(directory or ".", name)
        for directory in (search_path or "/usr/local/bin:/usr/bin:/bin").split(":")]
    for candidate in candidates:
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mode & 0o111:
            return candidate
    raise StepError("exec", errno.ENOENT, name)


def _prepare_fds(stdio: tuple[int, int, int] | None, preserve_fds: int,
                 pass_fds: tuple[int, ...]) -> None:
    """0-2 from stdio, 3..3+preserve_fds-1 kept as they are, then pass_fds in order;
    everything above closes on execve. Sources are copied out of the way first, so a
    source numbered inside the target range is not overwritten before it is used."""
    first_closed = 3 + preserve_fds + len(pass_fds)
    sources = list(stdio or ()) + list(pass_fds)
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, first_closed) for fd in sources]
    targets = ([0, 1, 2] if stdio is not None else []) + [
        3 + preserve_fds + index for index in range(len(pass_fds))]
    for target, copy in zip(targets, copies, strict=True):
        os.dup2(copy, target)  # the new descriptor is inheritable
    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError as exc:
            raise StepError("preserve-fds", exc.errno or errno.EBADF, str(fd)) from exc
    sc.mark_cloexec_from(first_closed)


def _give_stdio_to_user(user: dict[str, Any]) -> None:
    """Let the process user read and write its stdio, as runc and crun do: chown what
    descriptors 0-2 point to, except /dev/null. Ids the namespace cannot represent
    (EINVAL) or files we may not chown (EPERM) are left as they are."""
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    null_device = os.stat("/dev/null").st_rdev if os.path.exists("/dev/null") else -1
    for fd in (0, 1, 2):
        try:
            info = os.fstat(fd)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == null_device:
                continue
            if (info.st_uid, info.st_gid) != (uid, gid):
                os.fchown(fd, uid, gid)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.EINVAL, errno.EPERM):
                raise StepError("stdio", exc.errno or errno.EIO, str(fd)) from exc


def _become_process_user(process: dict[str, Any], plan: LaunchPlan) -> None:
    """Identity then privileges, in the order that keeps each step possible:
    bounding drop (needs CAP_SETPCAP), uid change with KEEPCAPS, the remaining sets.
    With no_new_privs, no_new_privs, Landlock and seccomp are the very last steps before execve.
    Without it, loading either needs CAP_SYS_ADMIN, which a non-root user no longer has
    after the uid change: they come first, while the init is still privileged (as runc
    loads seccomp before it switches the identity)."""
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if "umask" in user:
        os.umask(user["umask"])
    held = capabilities.current_bounding()
    no_new_privs = bool(process.get("noNewPrivileges"))
    if not no_new_privs:
        _confine(plan)
    masks = plan.cap_masks
    capabilities.drop_bounding(masks["bounding"] & held)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1, step="capabilities", path="keepcaps")
    extra = user.get("additionalGids") or []
    try:
        os.setgroups(extra)
    except OSError as exc:
        # a rootless namespace denies setgroups; fine when no groups were asked for
        if extra or exc.errno != errno.EPERM:
            raise StepError("setgroups", exc.errno or errno.EPERM,
                            ",".join(map(str, extra))) from exc
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise StepError("setuid", exc.errno or errno.EPERM, f"{uid}:{gid}") from exc
    sc.prctl(sc.PR_SET_KEEPCAPS, 0, step="capabilities", path="keepcaps")
    capabilities.apply_after_setuid(masks, held)
    if no_new_privs:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1, step="no-new-privileges")
        _confine(plan)


def _confine(plan: LaunchPlan) -> None:
    if plan.landlock_policy is not None:
        from auto_review.oci import landlock

        landlock.apply(plan.landlock_policy)
    if plan.seccomp_filter is not None:
        plan.seccomp_filter.load()
