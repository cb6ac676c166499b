"""Stage the per-launch OCI bundle the inner gateway runs in.

``stage_bundle`` writes ``<runtime_dir>/bundle-<launcher pid>-<random>/`` (0700) holding
``launcher.pid`` (written first, for stale cleanup), ``etc/`` (generated passwd, group,
hosts, resolv.conf, nsswitch.conf), ``rootfs/`` (mount points only) and ``config.json``,
every file 0600. With ``ca_file`` (``AR_CA_FILE``) the operator's CA bundle is bound
read-only (nosuid, nodev, noexec) at ``/etc/auto-review/ca.pem``. The config is checked
by the embedded runtime's own schema validator and supported-field check before it is
written. No secret is ever written: every file is
scanned for the caller's ``forbidden_values`` and the bundle is refused (and removed)
when one appears.

Resource limits (see ``ResourceLimits``):
- memory: ``RLIMIT_DATA`` (private writable memory: heap, anonymous maps, thread stacks),
  not ``RLIMIT_AS``: CPython, uvloop and OpenSSL threads reserve large address ranges they
  never touch (glibc reserves 64 MiB per malloc arena), so an address-space cap that fits
  the real use breaks thread creation. A cgroup memory limit, where one can be made, caps
  resident memory.
- processes: ``RLIMIT_NPROC`` counts processes per real uid. Since Linux 5.14 the count is
  kept per user namespace (ucounts), so in the container's fresh user namespace it counts
  the container's own processes (rootless: the test shows it bounding a fork loop with no
  cgroup). The kernel never applies it to host uid 0, and the container's root is the
  launcher's uid: launched as root, only the cgroup pids limit holds, so
  ``limits["processes_bounded_without_cgroup"]`` is False there.
- open files: ``RLIMIT_NOFILE``; core dumps off (``RLIMIT_CORE`` 0: a core would hold the
  secrets the process read).
- cgroups: memory and pids limits, with the best-effort annotation when
  ``ResourceLimits.cgroup_best_effort`` (rootless on this host: nothing is delegated, so no
  cgroup can be made and the rlimits remain). ``cgroup_limits_applied()`` tells from the
  host which case a running container is in. runc and crun know no best effort and ignore
  the annotation: with ``external_runtime`` a rootless best-effort bundle asks them for no
  cgroup at all (``limits["cgroup"]`` is None), since they would refuse to start.

The same bundle runs under runc and crun; they ignore the Landlock annotation, so Landlock
is a control of the embedded runtime only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auto_review.isolation.outer import rootfs
from auto_review.isolation.outer.rootfs import Bind, BundleError
from auto_review.isolation.outer.seccomp_profile import gateway_seccomp_profile
from auto_review.isolation.outer.stale import write_marker

__all__ = [
    "CA_FILE_INSIDE",
    "DATABASE_CA_FILE_INSIDE",
    "BundleError",
    "BundleRequest",
    "ResourceLimits",
    "StagedBundle",
    "ca_file_bind",
    "cgroup_limits_applied",
    "stage_bundle",
]

STATE_DIR_INSIDE = "/var/lib/auto_review"
EGRESS_DIR_INSIDE = "/run/egress"
EGRESS_SOCKET_INSIDE = "/run/egress/proxy.sock"
CA_FILE_INSIDE = "/etc/auto-review/ca.pem"  # AR_CA_FILE, bound read-only when set
DATABASE_CA_FILE_INSIDE = "/etc/auto-review/database-ca.pem"  # AR_DATABASE_CA_FILE, likewise
LANDLOCK_ANNOTATION = "org.auto-review.landlock"  # as auto_review.oci.landlock reads it
CGROUP_BEST_EFFORT_ANNOTATION = "org.auto-review.cgroups.best-effort"
LIMITS_ANNOTATION = "org.auto-review.limits"
NAMESPACES = ("user", "pid", "network", "mount", "ipc", "uts", "cgroup")
CAPABILITY_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
# runc's defaults (reference/oci/runc-spec-default.json).
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi")  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
PRIVATE_UMASK = 0o077


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    memory_bytes: int = 1024 * 1024 * 1024
    pids: int = 256
    nofile: int = 4096
    tmp_size_bytes: int = 256 * 1024 * 1024
    cgroup_best_effort: bool = True  # False: no cgroup means no start

    def rlimits(self) -> dict[str, int]:
        return {
            "RLIMIT_DATA": self.memory_bytes,
            "RLIMIT_NPROC": self.pids,
            "RLIMIT_NOFILE": self.nofile,
            "RLIMIT_CORE": 0,
        }


@dataclass
class BundleRequest:
    runtime_dir: Path  # parent of bundles (0700): /run/auto-review, $XDG_RUNTIME_DIR/auto-review
    state_dir: Path  # host state dir -> read-write at /var/lib/auto_review
    egress_socket: Path  # host path of the egress proxy's socket -> /run/egress/proxy.sock
    inner_args: list[str]  # process.args; args[0] is the interpreter (same path inside)
    inner_env: dict[str, str]  # non-secret environment only
    rootless: bool
    preserve_fds: int  # descriptors from 3 the inner process inherits (for the runtime call)
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    hostname: str = "auto-review"
    landlock_mandatory: bool = False  # True: a kernel without Landlock refuses to start
    oci_root: Path | None = None  # the embedded runtime's state root: share its validation cache
    external_runtime: bool = False  # for runc/crun (--oci-runtime): see _cgroup_requested
    ca_file: Path | None = None  # AR_CA_FILE on the host -> read-only at CA_FILE_INSIDE
    # AR_DATABASE_CA_FILE on the host -> read-only at DATABASE_CA_FILE_INSIDE
    database_ca_file: Path | None = None


@dataclass
class StagedBundle:
    path: Path
    config: dict[str, Any]
    container_id: str
    limits: dict[str, Any]  # what LIMITS_ANNOTATION says: rlimits, cgroup, best effort
    binds: list[Bind]  # every bind mount, read-only ones and the state dir

    def remove(self) -> None:
        """Delete the bundle directory; safe to call again."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.path)


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    """Turn an OSError into a BundleError naming the step (paths only, never contents)."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BundleError(name, f"{exc.strerror or exc}{where}") from None


def _private_dir(path: Path, step: str) -> Path:
    """A directory owned by the caller and closed to everyone else (tightened if needed)."""
    with _step(step):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise BundleError(step, f"{path} is not a directory owned by uid {os.geteuid()}")
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(path, flags, 0o600), "w", encoding="utf-8") as handle:
        handle.write(text)


def etc_files(hostname: str) -> dict[str, str]:
    """The generated /etc files: one user (root = the launcher's uid outside), no DNS."""
    return {
        "passwd": (
            f"root:x:0:0:root:{STATE_DIR_INSIDE}:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": "root:x:0:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n",
        # No name server is reachable inside: the network namespace has only lo. The egress
        # proxy resolves names on the host; clients send it host names (HTTP CONNECT).
        "resolv.conf": (
            "# no name server inside the container: the egress proxy resolves names on the host\n"
            "options timeout:1 attempts:1\n"
        ),
        "nsswitch.conf": (
            "passwd: files\ngroup: files\nshadow: files\nhosts: files\n"
            "networks: files\nprotocols: files\nservices: files\n"
        ),
    }


def _landlock_policy(read_only: Sequence[str], mandatory: bool) -> str:
    policy = {
        "read_only": sorted({*read_only, "/proc", "/dev", EGRESS_DIR_INSIDE}),
        "read_write": [STATE_DIR_INSIDE, "/tmp", "/dev/null"],  # noqa: S108 - the tmpfs
        "mandatory": mandatory,
    }
    return json.dumps(policy, sort_keys=True)


def _mounts(
    read_only: list[Bind], etc_binds: list[Bind], state: Bind, request: BundleRequest
) -> list[dict[str, Any]]:
    tmp_size = request.limits.tmp_size_bytes
    kernel_mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        # noexec: nothing the gateway runs lives in /tmp (git's helpers are bound read-only).
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",  # noqa: S108
         "options": ["nosuid", "nodev", "noexec", "mode=1777", f"size={tmp_size}"]},
        {"destination": EGRESS_SOCKET_INSIDE, "type": "bind",
         "source": str(request.egress_socket),
         "options": ["bind", "ro", "nosuid", "nodev", "noexec"]},
    ]  # fmt: skip
    binds = [bind.mount() for bind in (*read_only, *etc_binds, state)]
    every = kernel_mounts + binds
    # Parents before children; /proc and /dev first as runc orders them.
    return sorted(every, key=lambda mount: str(mount["destination"]).split("/"))


def build_config(
    request: BundleRequest, read_only: list[Bind], etc_binds: list[Bind], state: Bind
) -> dict[str, Any]:
    limits = request.limits
    describe = limits_description(request)
    annotations = {
        LANDLOCK_ANNOTATION: _landlock_policy(
            [bind.destination for bind in (*read_only, *etc_binds)], request.landlock_mandatory
        ),
        CGROUP_BEST_EFFORT_ANNOTATION: "true" if limits.cgroup_best_effort else "false",
        LIMITS_ANNOTATION: json.dumps(describe, sort_keys=True),
    }
    resources: dict[str, Any] = {}
    if describe["cgroup"] is not None:
        resources["memory"] = {"limit": limits.memory_bytes}
        resources["pids"] = {"limit": limits.pids}
    if not request.rootless:
        resources["devices"] = [{"allow": False, "access": "rwm"}]  # as runc's default
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0, "umask": PRIVATE_UMASK},
            "args": list(request.inner_args),
            "env": [f"{name}={value}" for name, value in request.inner_env.items()],
            "cwd": "/",
            "capabilities": {name: [] for name in CAPABILITY_SETS},
            "rlimits": [
                {"type": name, "soft": value, "hard": value}
                for name, value in limits.rlimits().items()
            ],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": request.hostname,
        "mounts": _mounts(read_only, etc_binds, state, request),
        "annotations": annotations,
        "linux": {
            "namespaces": [{"type": kind} for kind in NAMESPACES],
            # Only the caller's own ids: container root is the launcher's uid outside.
            "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": gateway_seccomp_profile(),
            **({"resources": resources} if resources else {}),
        },
    }


def _cgroup_requested(request: BundleRequest) -> bool:
    """runc and crun know no best effort: rootless, a limit they cannot apply stops them.
    For them a rootless best-effort bundle asks for no cgroup; the rlimits remain."""
    limits = request.limits
    return not (request.external_runtime and request.rootless and limits.cgroup_best_effort)


def limits_description(request: BundleRequest) -> dict[str, Any]:
    limits = request.limits
    cgroup = {"memory.limit": limits.memory_bytes, "pids.limit": limits.pids}
    return {
        "rlimits": limits.rlimits(),
        "cgroup": cgroup if _cgroup_requested(request) else None,
        "cgroup_best_effort": limits.cgroup_best_effort,
        "rootless": request.rootless,
        "tmp_size_bytes": limits.tmp_size_bytes,
        # RLIMIT_NPROC does not apply to host uid 0 (the container's root when launched as root).
        "processes_bounded_without_cgroup": os.geteuid() != 0,
    }


def _validate(raw: bytes, oci_root: Path | None) -> None:
    """The embedded runtime's own checks: schema and supported fields.

    With ``oci_root`` the runtime's validation cache there is used and filled, so a config
    already validated (the same bytes at an earlier launch) costs no schema work, neither
    here nor when the runtime loads it.
    """
    from auto_review.oci.errors import OciError
    from auto_review.oci.spec import check_supported, parse_and_validate

    cache_dir = None
    if oci_root is not None:
        _private_dir(Path(oci_root), "oci-root")
        cache_dir = str(Path(oci_root) / ".validated")
    try:
        check_supported(parse_and_validate(raw, cache_dir))
    except OciError as exc:
        raise BundleError("config-schema", str(exc)) from None


def _scan_for_secrets(bundle_dir: Path, forbidden: Sequence[bytes]) -> None:
    """Fail if any regular file in the bundle holds a forbidden value (named by file only)."""
    for directory, _subdirs, files in os.walk(bundle_dir):
        for name in files:
            path = os.path.join(directory, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            if any(value in data for value in forbidden):
                relative = os.path.relpath(path, bundle_dir)
                raise BundleError("secret-scan", f"a secret value would be written to {relative}")


def _state_bind(state_dir: Path) -> Bind:
    with _step("state-dir"):
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not state_dir.is_dir():
            raise BundleError("state-dir", f"{state_dir} is not a directory")
    return Bind(os.path.realpath(state_dir), STATE_DIR_INSIDE, writable=True, executable=False)


def ca_file_bind(ca_file: Path, inside: str = CA_FILE_INSIDE) -> Bind:
    """The operator's CA bundle (``AR_CA_FILE``, or ``AR_DATABASE_CA_FILE`` at
    :data:`DATABASE_CA_FILE_INSIDE`), read-only at ``inside``.

    It must be a regular file the container's root can read. That root has no
    capabilities, so the mode bits decide even when the launcher is root: a file readable
    by host root only through CAP_DAC_OVERRIDE would fail at the first TLS handshake.
    """
    source = os.path.realpath(ca_file)
    with _step("ca-file"):
        info = os.stat(source)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError("ca-file", f"{ca_file} is not a regular file")
        if not _readable_by_mode(info) or not os.access(source, os.R_OK):
            raise BundleError(
                "ca-file", f"{ca_file} is not readable by uid {os.geteuid()} without privileges"
            )
    return Bind(source, inside, executable=False)


def _readable_by_mode(info: os.stat_result) -> bool:
    """Read permission as a process without CAP_DAC_OVERRIDE sees it (owner, group, other)."""
    if info.st_uid == os.geteuid():
        return bool(info.st_mode & stat.S_IRUSR)
    if info.st_gid == os.getegid():
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)


def _check_egress_socket(path: Path) -> None:
    """The socket may be created after staging, but if something is there it must be one."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise BundleError("egress-socket", f"{path} is not a Unix socket")


def stage_bundle(request: BundleRequest, *, forbidden_values: Sequence[str] = ()) -> StagedBundle:
    """Write the bundle; on any failure nothing is left and BundleError names the step."""
    forbidden = [value.encode() for value in forbidden_values if value]
    runtime_dir = _private_dir(Path(request.runtime_dir), "runtime-dir")
    _check_egress_socket(Path(request.egress_socket))
    state = _state_bind(Path(request.state_dir))
    read_only = rootfs.plan_read_only_binds(
        request.inner_args, request.inner_env, str(runtime_dir), forbidden
    )

    token = secrets.token_hex(4)
    path = runtime_dir / f"bundle-{os.getpid()}-{token}"
    container_id = f"auto-review-{os.getpid()}-{token}"
    with _step("bundle-dir"):
        path.mkdir(mode=0o700)
    try:
        with _step("marker"):
            write_marker(path, container_id)
        etc_binds = []
        with _step("etc-files"):
            (path / "etc").mkdir(mode=0o700)
            for name, text in etc_files(request.hostname).items():
                _write_private(path / "etc" / name, text)
                # Relative to the bundle (runc's rule too): the config's bytes stay the same
                # from one launch to the next, so the runtime's validation cache holds.
                etc_binds.append(Bind(f"etc/{name}", f"/etc/{name}", executable=False))
        if request.ca_file is not None:
            etc_binds.append(ca_file_bind(Path(request.ca_file)))
        if request.database_ca_file is not None:
            etc_binds.append(ca_file_bind(Path(request.database_ca_file), DATABASE_CA_FILE_INSIDE))
        config = build_config(request, read_only, etc_binds, state)
        raw = json.dumps(config, indent=2).encode()
        if any(value in raw for value in forbidden):
            # Before validation too: a schema error message may quote a value.
            raise BundleError("secret-scan", "a secret value would be written to config.json")
        _validate(raw, request.oci_root)
        mount_points = {
            str(mount["destination"]): _is_directory_mount(path, mount)
            for mount in config["mounts"]
        }
        with _step("rootfs"):
            rootfs.prepare_rootfs(str(path / "rootfs"), mount_points, rootfs.host_root_links())
        with _step("config"):
            _write_private(path / "config.json", raw.decode())
        with _step("secret-scan"):
            _scan_for_secrets(path, forbidden)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return StagedBundle(
        path=path,
        config=config,
        container_id=container_id,
        limits=limits_description(request),
        binds=[*read_only, *etc_binds, state],
    )


def _is_directory_mount(bundle: Path, mount: dict[str, Any]) -> bool:
    if mount["type"] != "bind":
        return True
    return os.path.isdir(bundle / str(mount["source"]))  # an absolute source stays as is


def cgroup_limits_applied(pid: int, container_id: str) -> bool:
    """Whether the container's init (host ``pid``) sits in a pids cgroup named after it.

    False means the runtime fell back to best effort: only the rlimits hold.
    """
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    for line in lines:
        _number, controllers, cgroup_path = line.split(":", 2)
        named = cgroup_path.rstrip("/").endswith("/" + container_id)
        if named and ("pids" in controllers.split(",") or controllers == ""):
            return True
    return False
