"""Container lifecycle on the host side: state directory, create, start, kill, delete.

State layout (one directory per container under the state root, all 0700):
    <root>/<id>/state.marshal  the record written once the container is created
    <root>/<id>/start.sock   the init's start socket; present while status is "created"
    <root>/.validated/<sha256>  config.json bytes already schema-validated (spec.py)
Status is derived, never stored: the init's pid alive with the recorded start time means
"created" while start.sock exists and "running" after; otherwise "stopped". A directory
without a record is a create in progress (or one killed mid-way): "creating".
"""

from __future__ import annotations

import errno
import os
import time

from auto_review.oci import capabilities, container_init, hooks, namespaces, rlimits
from auto_review.oci import syscalls as sc
from auto_review.oci.errors import OciError, SpecError, StateError, StepError
from auto_review.oci.spec import load_bundle

# Only what every `run` needs is imported here (no re, typing or pathlib; no socket,
# signal or contextlib, which bring enum, functools and collections): see OCI-RUNTIME.md,
# Speed. `create` and `start` import socket for the start socket.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

OCI_VERSION = "1.3.0"  # the runtime-spec version of the shipped schemas
# marshal, not JSON: json imports re, which costs more than the rest of a `run`'s imports
# under an interpreter that has not loaded it; `state` prints the record as JSON.
STATE_FILE = "state.marshal"
SIGKILL = 9
_ID_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ID_FIRST | frozenset("_.+-")


# ------------------------------------------------------------------ state root and records


def state_root(root: str | os.PathLike[str] | None) -> str:
    if root is not None:
        return os.path.abspath(root)
    if os.geteuid() == 0:
        return "/run/auto-review-oci"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime_dir or not os.path.isdir(runtime_dir):
        raise OciError("no state root: pass --root, or set XDG_RUNTIME_DIR to a directory "
                       "this user owns")
    return os.path.join(runtime_dir, "auto-review-oci")


def check_id(container_id: str) -> None:
    if not (0 < len(container_id) <= 128 and container_id[0] in _ID_FIRST
            and all(char in _ID_CHARS for char in container_id)):
        raise OciError(f"invalid container id {container_id!r}: letters, digits and _.+- "
                       "only, at most 128 characters")


def _container_dir(root: str, container_id: str) -> str:
    check_id(container_id)
    return os.path.join(root, container_id)


def read_record(root: str, container_id: str) -> dict[str, Any]:
    import marshal

    directory = _container_dir(root, container_id)
    try:
        fd = os.open(os.path.join(directory, STATE_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.isdir(directory):
            return {"id": container_id, "pid": 0, "creating": True, "bundle": ""}
        raise StateError(f"container {container_id} does not exist") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise StateError(f"container {container_id}: state record not written by this "
                             "user")
        record = marshal.loads(os.read(fd, info.st_size + 1))  # noqa: S302 - checked above
    except (ValueError, EOFError, TypeError) as exc:
        raise StateError(f"container {container_id}: unreadable state: {exc}") from exc
    finally:
        os.close(fd)
    if not isinstance(record, dict):
        raise StateError(f"container {container_id}: unreadable state")
    return record


def write_record(path: str, record: dict[str, Any]) -> None:
    """Replace the record whole (readers never see a partial one)."""
    import marshal

    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, marshal.dumps(record))
    finally:
        os.close(fd)
    os.replace(temporary, path)


def process_start_time(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def status_of(record: dict[str, Any], directory: str) -> str:
    if record.get("creating"):
        return "creating"
    info = process_start_time(record["pid"]) if record.get("pid") else None
    if info is None or info[0] in ("Z", "X") or info[1] != record.get("pid_start"):
        return "stopped"
    if os.path.exists(os.path.join(directory, container_init.START_SOCKET)):
        return "created"
    return "running"


def public_state(record: dict[str, Any], status: str) -> dict[str, Any]:
    state: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "id": record["id"],
        "status": status,
        "pid": record.get("pid", 0) if status in ("created", "running") else 0,
        "bundle": record.get("bundle", ""),
        "rootfs": record.get("rootfs", ""),
        "created": record.get("created", ""),
        "owner": record.get("owner", ""),
    }
    if record.get("annotations"):
        state["annotations"] = record["annotations"]
    return state


def container_state(root: str, container_id: str) -> dict[str, Any]:
    record = read_record(root, container_id)
    return public_state(record, status_of(record, os.path.join(root, container_id)))


def _timestamp() -> str:
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def _owner() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# ------------------------------------------------------------------ create


class Created:
    """What create hands back: the record, the init's pid, and in run mode the open
    sync socket the START message goes through."""

    __slots__ = ("cgroup", "directory", "init_pid", "record", "start_sent", "sync_fd")

    def __init__(self, record: dict[str, Any], directory: str, init_pid: int,
                 sync_fd: int, cgroup: Any, start_sent: bool) -> None:
        self.start_sent = start_sent
        self.record = record
        self.directory = directory
        self.init_pid = init_pid
        self.sync_fd = sync_fd
        self.cgroup = cgroup


def _plan(container_id: str, bundle_dir: str | os.PathLike[str], root: str,
          preserve_fds: int, stdio: tuple[int, int, int] | None,
          run_mode: bool, pass_fds: tuple[int, ...] = ()) -> container_init.LaunchPlan:
    bundle = load_bundle(bundle_dir, os.path.join(root, ".validated"))
    config = bundle.config
    linux = config.get("linux") or {}
    process = config["process"]
    plan = container_init.LaunchPlan()
    plan.config = config
    plan.container_id = container_id
    plan.bundle = str(bundle.path)
    plan.rootfs = str(bundle.rootfs)
    plan.state_dir = os.path.join(root, container_id)
    plan.run_mode = run_mode
    plan.preserve_fds = preserve_fds
    plan.pass_fds = tuple(pass_fds)
    plan.stdio = stdio
    plan.ns_plan = namespaces.NamespacePlan(linux.get("namespaces") or [])
    if not plan.ns_plan.own_mount_namespace and os.path.realpath(plan.rootfs) == "/":
        from auto_review.oci.mounts import shared_root_is_safe

        if not shared_root_is_safe():
            raise SpecError("root.path / without a mount namespace would stack a second / "
                            "on this mount namespace: add a mount namespace, or run the "
                            "runtime in a private one (unshare -m --propagation private)")
    plan.uid_maps = namespaces.default_mappings(linux.get("uidMappings"), os.geteuid())
    plan.cap_masks = capabilities.parse(process.get("capabilities"))
    capabilities.check_held(plan.cap_masks, capabilities.current_bounding())
    plan.rlimits = rlimits.parse(process.get("rlimits"))
    if linux.get("mountLabel"):
        from auto_review.oci.mounts import mount_label

        plan.mount_label = mount_label(linux["mountLabel"])
    if linux.get("seccomp") is not None:
        from auto_review.oci.seccomp import SeccompFilter

        plan.seccomp_filter = SeccompFilter.from_spec(linux["seccomp"])
    annotations = config.get("annotations") or {}
    if annotations:
        from auto_review.oci import landlock

        plan.landlock_policy = landlock.policy_from_annotations(annotations)
    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
        except OSError as exc:
            raise StepError("preserve-fds", exc.errno or errno.EBADF, str(fd)) from exc
    for fd in plan.pass_fds:
        try:
            os.fstat(fd)
        except OSError as exc:
            raise StepError("pass-fds", exc.errno or errno.EBADF, str(fd)) from exc
    return plan


def _make_cgroup(container_id: str, config: dict[str, Any]) -> Any:
    """The container's cgroup: as root always (one in every hierarchy, as runc makes it),
    otherwise only when linux.resources asks for limits."""
    linux = config.get("linux") or {}
    resources = linux.get("resources") or {}
    if not resources and os.geteuid() != 0:
        return None
    from auto_review.oci import cgroups

    best_effort = cgroups.best_effort_from_annotations(config.get("annotations") or {})
    return cgroups.Cgroup.create(container_id, linux.get("cgroupsPath"), resources,
                                 best_effort=best_effort)


def create(container_id: str, bundle_dir: str | os.PathLike[str], root: str, *,
           pid_file: str | os.PathLike[str] | None, preserve_fds: int,
           stdio: tuple[int, int, int] | None, run_mode: bool,
           pass_fds: tuple[int, ...] = (),
           on_init_pid: Callable[[int, bool], None] | None = None) -> Created:
    """on_init_pid(host pid of the init, whether this process runs hooks before the
    container exits): called once the init exists and before it can be told to start (run
    mode queues START early), so that the caller relays signals from the container's
    first instruction on."""
    if preserve_fds < 0:
        raise OciError("--preserve-fds must be >= 0")
    directory = _container_dir(root, container_id)
    # before the bundle is loaded: the validation cache inside must not create it 0755
    os.makedirs(root, mode=0o700, exist_ok=True)
    plan = _plan(container_id, bundle_dir, root, preserve_fds, stdio, run_mode, pass_fds)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        raise StateError(f"container {container_id} already exists") from None
    cleanup = _Cleanup(directory, pid_file)
    if not plan.ns_plan.own_mount_namespace:  # type: ignore[union-attr]
        cleanup.shared_rootfs = plan.rootfs
    try:
        if not run_mode:
            plan.start_listener = _listen_for_start(directory, plan.first_free_fd)
            cleanup.fds.append(plan.start_listener)
        _give_stdio_to_container_root(plan)
        plan.namespace_fds = plan.ns_plan.open_join_paths()  # type: ignore[union-attr]
        cleanup.cgroup = _make_cgroup(container_id, plan.config)
        if cleanup.cgroup is not None and cleanup.cgroup.applied:
            plan.cgroup_dirs = [os.path.normpath(path) for path in cleanup.cgroup.paths()]
            _plan_self_join(plan, cleanup.cgroup)
        plan.sync_with_parent = plan.ns_plan.new_user or bool(  # type: ignore[union-attr]
            plan.cgroup_dirs and not plan.cgroup_self_join)
        created = _spawn(plan, directory, cleanup, pid_file, on_init_pid)
    except BaseException:
        cleanup.run()
        raise
    finally:
        for _, _, fd in plan.namespace_fds:
            _close_quietly(fd)
        if plan.cgroup_v2_fd >= 0:
            _close_quietly(plan.cgroup_v2_fd)
    return created


def _give_stdio_to_container_root(plan: container_init.LaunchPlan) -> None:
    """With a new user namespace whose root is another host uid, give the container's
    stdio to that uid, as runc and crun do, so the container's root can reopen its own
    /dev/stdout. Character devices are left alone (crun 1.8.1 hands the host's /dev/null
    to the container's uid this way), and so is what the runtime may not chown."""
    if not plan.ns_plan or not plan.ns_plan.new_user or os.geteuid() != 0:
        return
    uid = _host_id_of_root(plan.uid_maps)
    linux = plan.config.get("linux") or {}
    gid = _host_id_of_root(namespaces.default_mappings(linux.get("gidMappings"), os.getegid()))
    if uid is None or gid is None or (uid, gid) == (0, 0):
        return
    import stat

    for fd in plan.stdio or (0, 1, 2):
        try:
            if not stat.S_ISCHR(os.fstat(fd).st_mode):
                os.fchown(fd, uid, gid)
        except OSError:
            continue  # closed, or not ours to give: the container keeps what it gets


def _host_id_of_root(mappings: list[dict[str, int]]) -> int | None:
    for mapping in mappings:
        if mapping["containerID"] == 0 and mapping["size"] > 0:
            return mapping["hostID"]
    return None


def _plan_self_join(plan: container_init.LaunchPlan, cgroup: Any) -> None:
    """Let the children join the container's cgroup themselves: the intermediate writes
    its own v1 `tasks` (before it leaves the host's user namespace), the init is cloned
    into the v2 directory. Neither takes the kernel's global threadgroup lock that writing
    a pid to cgroup.procs takes, whose first use after a pause waits for an RCU grace
    period (4-30 ms on this host). A new cgroup namespace is then made by the init, inside
    the container's cgroups.

    Only as root, with no cgroup or user namespace joined (paths and rights would be
    another namespace's), and with a new user namespace only when its root is host uid 0:
    cloning into the v2 directory is checked against that uid. A failed join fails the
    create, best effort or not: the cgroup was made, so a refused join is no missing
    delegation but a fault. Otherwise the parent writes the intermediate's pid."""
    ns_plan = plan.ns_plan
    assert ns_plan is not None
    joined = {kind for kind, _ in ns_plan.join}
    if os.geteuid() != 0 or "cgroup" in joined or "user" in joined:
        return
    if ns_plan.new_user and not _root_is_host_root(plan.uid_maps):
        return
    v1_directories, v2_directory = cgroup.split_by_version()
    if v2_directory is not None:
        try:
            fd = os.open(v2_directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StepError("cgroup", exc.errno or errno.EIO, v2_directory) from exc
        plan.cgroup_v2_fd = container_init.high_fd(fd, plan.first_free_fd)
    plan.cgroup_tasks = [os.path.join(path, "tasks") for path in v1_directories]
    plan.cgroup_self_join = True
    plan.cgroup_ns_in_init = bool(ns_plan.new_flags & namespaces.FLAGS["cgroup"])


def _root_is_host_root(uid_maps: list[dict[str, int]]) -> bool:
    return any(m["containerID"] == 0 and m["hostID"] == 0 and m["size"] > 0 for m in uid_maps)


class _Cleanup:
    """Undo a failed create: kill what was started, remove the cgroup and the state dir.
    Mounts need no undoing: they live only in the init's mount namespace."""

    def __init__(self, directory: str, pid_file: str | os.PathLike[str] | None) -> None:
        self.directory = directory
        self.pid_file = pid_file
        self.cgroup: Any = None
        self.pids: list[int] = []
        self.fds: list[int] = []
        self.shared_rootfs = ""  # a rootfs mounted in the runtime's own mount namespace

    def run(self) -> None:
        for fd in self.fds:
            _close_quietly(fd)
        for pid in self.pids:
            try:
                os.kill(pid, SIGKILL)
            except OSError:
                pass
            _reap(pid)
        if self.shared_rootfs:
            _detach_shared_rootfs(self.shared_rootfs)
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
            except OciError:  # never let a cleanup error hide the one that made us clean up
                pass
        if self.pid_file is not None:
            try:
                os.unlink(self.pid_file)
            except OSError:
                pass
        remove_state_dir(self.directory)


def _detach_shared_rootfs(rootfs: str) -> None:
    """Take a container's mounts out of the runtime's mount namespace; never "/" (allowed
    only in a private namespace, where it is left to that namespace)."""
    if rootfs and os.path.realpath(rootfs) != "/":
        from auto_review.oci.mounts import detach_shared_rootfs

        detach_shared_rootfs(rootfs)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _reap(pid: int) -> int | None:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def remove_state_dir(directory: str) -> None:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass


def _spawn(plan: container_init.LaunchPlan, directory: str, cleanup: _Cleanup,
           pid_file: str | os.PathLike[str] | None,
           on_init_pid: Callable[[int, bool], None] | None) -> Created:
    minimum_fd = plan.first_free_fd
    parent_end, child_end = sc.socketpair_seqpacket()
    parent_fd = container_init.high_fd(parent_end, minimum_fd)
    child_fd = container_init.high_fd(child_end, minimum_fd)
    cleanup.fds.append(parent_fd)
    intermediate = os.fork()
    if intermediate == 0:
        os.close(parent_fd)
        container_init.intermediate_main(plan, child_fd)  # never returns
    os.close(child_fd)
    cleanup.pids.append(intermediate)
    if plan.start_listener >= 0:  # the init has its own copy
        cleanup.fds.remove(plan.start_listener)
        os.close(plan.start_listener)
    config = plan.config
    ns_plan = plan.ns_plan
    assert ns_plan is not None
    init_pid = 0
    record: dict[str, Any] = {}
    config_hooks = config.get("hooks") or {}
    start_early = plan.run_mode and not (config_hooks.get("prestart")
                                         or config_hooks.get("createRuntime"))
    while True:
        message = _read_message(parent_fd)
        if message == b"SYNC":
            if ns_plan.new_user:
                linux = config.get("linux") or {}
                gid_maps = namespaces.default_mappings(linux.get("gidMappings"), os.getegid())
                namespaces.write_id_maps(intermediate, plan.uid_maps, gid_maps,
                                         privileged=os.geteuid() == 0)
            if cleanup.cgroup is not None and not plan.cgroup_self_join:
                cleanup.cgroup.add_process(intermediate)
            os.write(parent_fd, b"GO")
        elif message.startswith(b"PID "):
            init_pid = int(message[4:])
            cleanup.pids.insert(0, init_pid)
            _reap(intermediate)  # it exits once the init is cloned
            cleanup.pids.remove(intermediate)
            if "oomScoreAdj" in config["process"]:
                _write_oom_score_adj(init_pid, config["process"]["oomScoreAdj"])
            record = _record(plan, init_pid, cleanup.cgroup)
            if on_init_pid is not None:
                on_init_pid(init_pid, bool(config_hooks.get("prestart")
                                           or config_hooks.get("createRuntime")
                                           or config_hooks.get("poststart")))
            if start_early:
                # no hook exchange can follow: queue START now, the init reads it right
                # after READY instead of waiting for another round trip
                _queue_start(parent_fd)
        elif message == b"HOOKS":
            config_hooks = config.get("hooks") or {}
            state = plan.hook_state("creating", init_pid)
            hooks.run_hooks("prestart", config_hooks.get("prestart"), state)
            hooks.run_hooks("createRuntime", config_hooks.get("createRuntime"), state)
            os.write(parent_fd, b"GO")
        elif message == b"READY":
            break
        elif message.startswith(b"ERR "):
            raise container_init.decode_error(message)
        else:
            raise StepError("init", errno.EPIPE, _death_note(init_pid or intermediate))
    if pid_file is not None:
        _write_pid_file(os.fspath(pid_file), init_pid)
    write_record(os.path.join(directory, STATE_FILE), record)
    cleanup.fds.remove(parent_fd)
    if plan.run_mode:
        return Created(record, directory, init_pid, parent_fd, cleanup.cgroup, start_early)
    os.close(parent_fd)
    return Created(record, directory, init_pid, -1, cleanup.cgroup, False)


def _listen_for_start(directory: str, minimum_fd: int) -> int:
    """The start socket of a created container, bound here with the runtime's rights; the
    init inherits the listening descriptor and accepts `start` on it."""
    import socket  # create only: the init, forked after this, accepts with it

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # by the directory's fd: the full path may exceed sun_path's 108 bytes
        listener.bind(f"/proc/self/fd/{dir_fd}/{container_init.START_SOCKET}")
        listener.listen(1)
    except OSError as exc:
        listener.close()
        raise StepError("start-socket", exc.errno or errno.EIO,
                        os.path.join(directory, container_init.START_SOCKET)) from exc
    finally:
        os.close(dir_fd)
    return container_init.high_fd(listener.detach(), minimum_fd)


def _read_message(fd: int) -> bytes:
    """One message from the child. A child that exits with a message of ours unread (START
    queued early, then a failing step) makes the kernel report ECONNRESET before the ERR
    message it sent; reading the error consumes it, and the next read returns that message
    (or EOF)."""
    try:
        return os.read(fd, container_init.MAX_MESSAGE)
    except ConnectionResetError:
        try:
            return os.read(fd, container_init.MAX_MESSAGE)
        except ConnectionResetError:
            return b""


def _queue_start(fd: int) -> None:
    try:
        os.write(fd, b"START")
    except OSError:  # the init is gone: the next read says why
        pass


def _record(plan: container_init.LaunchPlan, init_pid: int, cgroup: Any) -> dict[str, Any]:
    config = plan.config
    return {
        "id": plan.container_id,
        "pid": init_pid,
        "pid_start": (process_start_time(init_pid) or ("", 0))[1],
        "bundle": plan.bundle,
        "rootfs": plan.rootfs,
        "created": _timestamp(),
        "owner": _owner(),
        "annotations": config.get("annotations") or {},
        # every directory the cgroup made (parents first): what delete must remove
        "cgroup_paths": cgroup.created_paths() if cgroup is not None else [],
        "cgroup_applied": cgroup.applied if cgroup is not None else False,
        "cgroup_reason": cgroup.reason if cgroup is not None else "no linux.resources",
        # no mount namespace: the container's mounts are in ours, delete detaches them
        "shared_mounts": not plan.ns_plan.own_mount_namespace,  # type: ignore[union-attr]
        "hooks": {phase: (config.get("hooks") or {}).get(phase) or []
                  for phase in ("poststart", "poststop")},
    }


def _death_note(pid: int) -> str:
    """Why a child closed the sync socket without a word (it was killed, typically by
    the OOM killer or a signal from outside)."""
    try:
        status = os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return "container init exited during set-up"
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"container init killed by signal {-code} during set-up"
    return f"container init exited with status {code} during set-up"


def _write_oom_score_adj(pid: int, value: int) -> None:
    path = f"/proc/{pid}/oom_score_adj"
    try:
        with open(path, "w") as handle:
            handle.write(str(value))
    except OSError as exc:
        raise StepError("oom-score-adj", exc.errno or errno.EIO, path) from exc


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        raise StepError("pid-file", exc.errno or errno.EIO, str(path)) from exc


# ------------------------------------------------------------------ start, kill, delete


def send_start(start_fd: int, *, already_sent: bool = False) -> None:
    """Send START and wait for the init's answer: EOF means execve happened."""
    try:
        if not already_sent:
            os.write(start_fd, b"START")
        answer = _read_message(start_fd)
    finally:
        os.close(start_fd)
    if answer.startswith(b"ERR "):
        raise container_init.decode_error(answer)


def start(root: str, container_id: str) -> None:
    record = read_record(root, container_id)
    directory = os.path.join(root, container_id)
    status = status_of(record, directory)
    if status != "created":
        raise StateError(f"cannot start container {container_id} in state {status}")
    import socket

    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        # by the directory's fd: the full path may exceed sun_path's 108 bytes
        connection.connect(f"/proc/self/fd/{dir_fd}/{container_init.START_SOCKET}")
        os.unlink(os.path.join(directory, container_init.START_SOCKET))
    except OSError as exc:
        connection.close()
        raise StateError(f"cannot start container {container_id}: {exc.strerror}") from exc
    finally:
        os.close(dir_fd)
    send_start(connection.detach())
    hooks.run_hooks_warn("poststart", record.get("hooks", {}).get("poststart"),
                         public_state(record, "running"))


def parse_signal(value: int | str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    import signal

    name = text if text.startswith("SIG") else "SIG" + text
    number = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if number is None:
        raise OciError(f"unknown signal {value!r}")
    return int(number)


def kill(root: str, container_id: str, signal_value: int | str) -> None:
    number = parse_signal(signal_value)
    record = read_record(root, container_id)
    status = status_of(record, os.path.join(root, container_id))
    if status not in ("created", "running"):
        raise StateError(f"cannot kill container {container_id} in state {status}")
    try:
        os.kill(record["pid"], number)
    except ProcessLookupError as exc:
        raise StateError(f"container {container_id} is not running") from exc


def _wait_gone(pid: int, start_ticks: int, timeout: float = 10.0) -> None:
    try:
        if os.waitpid(pid, 0)[0] == pid:
            return
    except ChildProcessError:
        pass  # not our child: it was created by another invocation
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = process_start_time(pid)
        if info is None or info[1] != start_ticks or info[0] in ("Z", "X"):
            return
        time.sleep(0.002)
    raise StepError("delete", errno.ETIMEDOUT, f"pid {pid} did not exit")


def delete(root: str, container_id: str, *, force: bool, cgroup: Any = None,
           record: dict[str, Any] | None = None) -> None:
    """Stop (when forced) and remove a container. cgroup and record: the live Cgroup and
    the record when the caller created the container itself (run); otherwise they are
    read from the state directory."""
    if record is None:
        record = read_record(root, container_id)
    directory = os.path.join(root, container_id)
    status = status_of(record, directory)
    if status in ("created", "running") and not force:
        # the runtime spec: deleting a container that is not stopped MUST be an error
        # (runc and crun delete a created one; see OCI-CONFORMANCE.md)
        raise StateError(f"cannot delete container {container_id} that is not stopped: "
                         f"{status} (use --force)")
    if status == "creating" and not force:
        raise StateError(f"container {container_id} is being created (use --force)")
    if status in ("created", "running"):
        try:
            os.kill(record["pid"], SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(record["pid"], record.get("pid_start", 0))
    elif record.get("pid"):
        try:
            os.waitpid(record["pid"], os.WNOHANG)  # our own zombie, if we made it
        except ChildProcessError:
            pass
    if record.get("shared_mounts"):
        _detach_shared_rootfs(record.get("rootfs", ""))
    if cgroup is not None:
        cgroup.destroy()
    else:
        remove_cgroup(record.get("cgroup_paths") or [])
    remove_state_dir(directory)
    hooks.run_hooks_warn("poststop", (record.get("hooks") or {}).get("poststop"),
                         public_state(record, "stopped"))


def remove_cgroup(paths: list[str]) -> None:
    """Remove the container's cgroup directories, deepest first (the processes are gone;
    a dying process can keep a cgroup busy for a moment)."""
    for path in reversed(paths):
        for _ in range(500):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise StepError("cgroup-remove", exc.errno or errno.EIO, path) from exc
                time.sleep(0.002)
        else:
            raise StepError("cgroup-remove", errno.EBUSY, path)


def list_all(root: str) -> list[dict[str, Any]]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    states = []
    for name in names:
        if name.startswith(".") or not os.path.isdir(os.path.join(root, name)):
            continue
        try:
            states.append(container_state(root, name))
        except OciError:
            continue
    return states


__all__ = ["OciError", "SpecError", "StateError", "StepError"]
