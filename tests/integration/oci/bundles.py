"""Build minimal OCI bundles that run the container probe under Debian's /usr/bin/python3.

The rootfs holds only empty mount points and the usrmerge symlinks (bin, lib, lib64, sbin
-> usr/...); /usr, /etc/ld.so.cache and the probe are read-only bind mounts listed in the
config's `mounts`, so the same bundle works under runc, crun and the embedded runtime, as
root and as an unprivileged user. The config starts from the runc-style default (the
posture `runc spec` prints) and tests change it with the small editing helpers below.
Every config.json written is validated against the runtime-spec schema first.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO_ROOT / "src" / "auto_review" / "oci" / "schema"
PROBE_SOURCE = REPO_ROOT / "tests" / "oci_probe" / "probe.py"
HOST_PYTHON = "/usr/bin/python3"
PROBE_DIR_IN_CONTAINER = "/opt/probe"
PROBE_IN_CONTAINER = f"{PROBE_DIR_IN_CONTAINER}/probe.py"
PROBE_SOURCE_PLACEHOLDER = "@probe-dir@"  # replaced by the bundle's probe/ directory
DENIED_SYSCALL = "personality"  # must match tests/oci_probe/probe.py DENIED_SYSCALL_NAME
USRMERGE_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
MOUNT_POINT_DIRS = ("usr", "etc", "opt/probe", "proc", "dev", "sys", "tmp", "run", "mnt")
MOUNT_POINT_FILES = ("etc/ld.so.cache",)
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"]
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


class BundleConfigError(ValueError):
    """A config.json this module was asked to write does not satisfy the runtime spec."""


@cache
def _config_validator() -> Draft4Validator:
    # Register every local schema file so the relative $refs (defs.json#...) resolve.
    registry: Registry = Registry().with_resources(
        (path.as_uri(), Resource.from_contents(json.loads(path.read_text()), DRAFT4))
        for path in SCHEMA_DIR.glob("*.json")
    )
    return Draft4Validator(
        {"$ref": (SCHEMA_DIR / "config-schema.json").as_uri()}, registry=registry
    )


def validate_config(config: dict[str, Any]) -> None:
    errors = sorted(_config_validator().iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise BundleConfigError("config.json fails the runtime-spec schema:\n" + "\n".join(lines))


def _bind(source: str, destination: str, *extra: str) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", "ro", "nosuid", "nodev", *extra],
    }


def _system_mounts(rootless: bool) -> list[dict[str, Any]]:
    devpts_options = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts_options.append("gid=5")  # the tty group exists only when ids are not remapped
    sys_mount: dict[str, Any] = (
        {"destination": "/sys", "type": "none", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
        if rootless  # a sysfs mount needs a network namespace the user owns
        else {"destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"]}
    )  # fmt: skip
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": devpts_options},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        sys_mount,
    ]  # fmt: skip


def base_config(*, rootless: bool = False, host_uid: int = 0, host_gid: int = 0) -> dict[str, Any]:
    """The runc-style default posture, running the probe with Debian's python3."""
    namespaces = ["pid", "ipc", "uts", "mount"] + (["user"] if rootless else ["network"])
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [HOST_PYTHON, "-I", PROBE_IN_CONTAINER],
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {name: list(DEFAULT_CAPS) for name in
                             ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "probe",
        "mounts": [
            *_system_mounts(rootless),
            _bind("/usr", "/usr"),
            _bind("/etc/ld.so.cache", "/etc/ld.so.cache"),
            _bind(PROBE_SOURCE_PLACEHOLDER, PROBE_DIR_IN_CONTAINER, "noexec"),
        ],
        "linux": {
            "namespaces": [{"type": kind} for kind in namespaces],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }  # fmt: skip
    if rootless:
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_uid, "size": 1}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_gid, "size": 1}]
    else:
        config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    return config


@dataclass
class Bundle:
    """A bundle directory: config.json, rootfs/ and probe/ (bound at /opt/probe)."""

    path: Path
    config: dict[str, Any]

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def write(self) -> Bundle:
        validate_config(self.config)
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        self.config_path.chmod(0o644)
        return self

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def make_bundle(
    config: dict[str, Any],
    *,
    parent: str | Path | None = None,
    owner: tuple[int, int] | None = None,
) -> Bundle:
    """Create a bundle directory for `config` (readable by every user) and write it."""
    path = Path(tempfile.mkdtemp(prefix="oci-bundle-", dir=parent))
    path.chmod(0o755)
    rootfs = path / "rootfs"
    for directory in MOUNT_POINT_DIRS:
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    for file in MOUNT_POINT_FILES:
        (rootfs / file).touch()
    for link, target in USRMERGE_LINKS.items():
        (rootfs / link).symlink_to(target)
    probe_dir = path / "probe"
    probe_dir.mkdir()
    shutil.copy2(PROBE_SOURCE, probe_dir / "probe.py")
    for directory, _subdirs, files in os.walk(path):
        os.chmod(directory, 0o755)  # noqa: S103 - the rootless test user must read the bundle
        for name in files:
            file = os.path.join(directory, name)
            if not os.path.islink(file):
                os.chmod(file, 0o644)
    # Like a real image's /tmp; runc also gives a tmpfs mounted here its mount point's mode.
    (rootfs / "tmp").chmod(0o1777)
    if owner is not None:
        # A rootless container's uid 0 is the owner: let it own its rootfs like a real image.
        for directory, subdirs, files in os.walk(path):
            for name in [*subdirs, *files]:
                os.lchown(os.path.join(directory, name), *owner)
            os.lchown(directory, *owner)
    config = copy.deepcopy(config)
    for mount in config["mounts"]:
        if mount.get("source") == PROBE_SOURCE_PLACEHOLDER:
            mount["source"] = str(probe_dir)
    return Bundle(path, config).write()


# Editing helpers: each returns the config it changed, so tests read as one expression.


def set_probe_args(config: dict[str, Any], *extra: str) -> dict[str, Any]:
    config["process"]["args"] = [HOST_PYTHON, "-I", PROBE_IN_CONTAINER, *extra]
    return config


def set_capabilities(config: dict[str, Any], names: Iterable[str], *,
                     ambient: bool = True) -> dict[str, Any]:  # fmt: skip
    names = list(names)
    sets = ["bounding", "effective", "permitted", "inheritable"]
    if ambient:
        sets.append("ambient")
    config["process"]["capabilities"] = {name: list(names) for name in sets}
    return config


def deny_syscalls(
    config: dict[str, Any], names: Iterable[str], errno_ret: int = 1
) -> dict[str, Any]:
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": list(names), "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret}],
    }
    return config


def add_tmpfs(config: dict[str, Any], destination: str, *options: str) -> dict[str, Any]:
    config["mounts"].append(
        {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": list(options)}
    )
    return config


def remove_namespace(config: dict[str, Any], kind: str) -> dict[str, Any]:
    config["linux"]["namespaces"] = [
        namespace for namespace in config["linux"]["namespaces"] if namespace["type"] != kind
    ]
    return config


def add_namespace(config: dict[str, Any], kind: str) -> dict[str, Any]:
    remove_namespace(config, kind)
    config["linux"]["namespaces"].append({"type": kind})
    return config


def add_cgroup_mount(config: dict[str, Any]) -> dict[str, Any]:
    config["mounts"].append(
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
    )  # fmt: skip
    return config


def host_bounding_capabilities() -> list[str]:
    """Capability names in this process's bounding set (root here lacks CAP_SYS_RESOURCE)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return [name for number, name in enumerate(ALL_CAPABILITIES) if mask >> number & 1]
    raise RuntimeError("no CapBnd line in /proc/self/status")


ALL_CAPABILITIES = (
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


# ---------------------------------------------------------------- scenarios
# Each scenario is one config the posture and conformance tests run under every runtime.
# The probe always gets `--connect <host loopback server>` and a write test of / and /tmp.

PROBE_WRITE_DIRS = ("/", "/tmp", "/dev/shm")
SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.msgmax": "16384"}
PROBE_READS = tuple(f"/proc/sys/{key.replace('.', '/')}" for key in SYSCTLS)
DOMAINNAME = "probe.test"
OOM_SCORE_ADJ = 100
PROBE_EXTRA_PATHS = (
    "/usr/share/doc", "/proc/cpuinfo", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysvipc",
    "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
    "/dev/ptmx", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr",
)  # fmt: skip
CUSTOM_UMASK = 0o027
USER_IDS = (1000, 1000, (2000, 3000))  # uid, gid, additional gids
RLIMITS = {"RLIMIT_NOFILE": (256, 512), "RLIMIT_CORE": (0, 0), "RLIMIT_NPROC": (100, 200)}
CGROUP_LIMITS = {"pids": 64, "memory": 64 * 1024 * 1024, "cpu_quota": 50000, "cpu_period": 100000}
EXTRA_MASKED = ("/usr/share/doc", "/proc/cpuinfo")
# A path on a plain proc mount: crun 1.8.1 drops nosuid/nodev/noexec when it makes a path
# on a mount carrying them (such as /dev/shm) read-only, runc keeps them.
EXTRA_READONLY = ("/proc/sysvipc",)
TMPFS_OPTIONS = ("nosuid", "nodev", "noexec", "mode=1777", "size=1024k")


@dataclass(frozen=True)
class Scenario:
    name: str
    purpose: str
    edit: Callable[[dict[str, Any]], dict[str, Any]] = lambda config: config
    rootless: bool = False

    def config(self, connect: str, host_uid: int, host_gid: int) -> dict[str, Any]:
        config = base_config(rootless=self.rootless, host_uid=host_uid, host_gid=host_gid)
        write_args = [arg for directory in PROBE_WRITE_DIRS for arg in ("--write-dir", directory)]
        path_args = [arg for path in PROBE_EXTRA_PATHS for arg in ("--path", path)]
        read_args = [arg for path in PROBE_READS for arg in ("--read", path)]
        set_probe_args(config, "--connect", connect, *write_args, *path_args, *read_args)
        return self.edit(config)


def _default(config: dict[str, Any]) -> dict[str, Any]:
    return deny_syscalls(config, [DENIED_SYSCALL])


def _user(config: dict[str, Any]) -> dict[str, Any]:
    uid, gid, additional = USER_IDS
    config["process"]["user"] = {
        "uid": uid, "gid": gid, "additionalGids": list(additional), "umask": CUSTOM_UMASK,
    }  # fmt: skip
    config["process"]["env"] = [*DEFAULT_ENV, "PROBE_GREETING=hello world", "EMPTY="]
    config["process"]["cwd"] = "/tmp"
    return _default(config)


def _host_capabilities(config: dict[str, Any]) -> dict[str, Any]:
    config["process"]["noNewPrivileges"] = False
    return set_capabilities(config, host_bounding_capabilities())


def _no_capabilities(config: dict[str, Any]) -> dict[str, Any]:
    return set_capabilities(config, [])


def _rlimits(config: dict[str, Any]) -> dict[str, Any]:
    config["process"]["rlimits"] = [
        {"type": kind, "soft": soft, "hard": hard} for kind, (soft, hard) in RLIMITS.items()
    ]
    return config


def _writable(config: dict[str, Any]) -> dict[str, Any]:
    config["root"]["readonly"] = False
    return add_tmpfs(config, "/tmp", *TMPFS_OPTIONS)


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["maskedPaths"] += list(EXTRA_MASKED)
    config["linux"]["readonlyPaths"] += list(EXTRA_READONLY)
    return config


def _cgroups(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["resources"].update(
        {"pids": {"limit": CGROUP_LIMITS["pids"]}, "memory": {"limit": CGROUP_LIMITS["memory"]}}
    )
    return add_cgroup_mount(config)


def _cgroups_cpu(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["resources"]["cpu"] = {
        "quota": CGROUP_LIMITS["cpu_quota"], "period": CGROUP_LIMITS["cpu_period"],
    }  # fmt: skip
    return add_cgroup_mount(config)


def _kernel_parameters(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["sysctl"] = dict(SYSCTLS)
    config["process"]["oomScoreAdj"] = OOM_SCORE_ADJ
    return config


def _rootless_pids_limit(config: dict[str, Any]) -> dict[str, Any]:
    config["linux"]["resources"] = {"pids": {"limit": CGROUP_LIMITS["pids"]}}
    return _default(config)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("default", "runc's default posture plus a seccomp rule denying personality",
             _default),
    Scenario("no-seccomp", "no seccomp filter: the probe's syscall succeeds"),
    Scenario("user", "non-root uid/gid, additional groups, umask, env, cwd", _user),
    Scenario("host-caps", "every capability the host's bounding set holds, NoNewPrivs off",
             _host_capabilities),
    Scenario("no-caps", "empty capability sets", _no_capabilities),
    Scenario("rlimits", "several rlimits", _rlimits),
    Scenario("writable", "writable root and a tmpfs at /tmp", _writable),
    Scenario("host-network", "no network namespace: the host loopback is reachable",
             lambda config: remove_namespace(_default(config), "network")),
    Scenario("masked", "extra masked and read-only paths", _masked),
    Scenario("kernel-params", "namespaced sysctls, oom_score_adj",
             _kernel_parameters),
    Scenario("cgroups", "pids and memory limits with /sys/fs/cgroup mounted", _cgroups),
    Scenario("cgroups-cpu", "a cpu quota with /sys/fs/cgroup mounted", _cgroups_cpu),
    Scenario("rootless", "runc's rootless default plus the seccomp rule", _default,
             rootless=True),
    Scenario("rootless-netns", "rootless with a network namespace of its own",
             lambda config: add_namespace(_default(config), "network"), rootless=True),
    Scenario("rootless-writable", "rootless, writable root it owns, a tmpfs at /tmp",
             lambda config: _writable(_default(config)), rootless=True),
    Scenario("rootless-limits", "rootless with lowered rlimits and no capabilities",
             lambda config: _no_capabilities(_rlimits(_default(config))), rootless=True),
    Scenario("rootless-cgroups", "rootless asking for a pids limit nobody delegated",
             _rootless_pids_limit, rootless=True),
)  # fmt: skip
SCENARIOS_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
ROOT_SCENARIOS = tuple(scenario for scenario in SCENARIOS if not scenario.rootless)
ROOTLESS_SCENARIOS = tuple(scenario for scenario in SCENARIOS if scenario.rootless)

# Not in SCENARIOS: runc 1.1.5 and crun 1.8.1 fail ("unable to apply caps", "capset:
# Operation not permitted") when a requested capability is outside the caller's bounding
# set, while the embedded runtime must grant the intersection.
ALL_CAPS_SCENARIO = Scenario(
    "all-caps",
    "every capability the kernel knows, more than root's bounding set holds here",
    lambda config: set_capabilities(config, ALL_CAPABILITIES),
)

# Not in SCENARIOS: runc 1.1.5 ignores `domainname` (runc supports it from 1.2); crun 1.8.1
# and the embedded runtime set it.
DOMAINNAME_SCENARIO = Scenario(
    "domainname",
    "a UTS domain name",
    lambda config: {**config, "domainname": DOMAINNAME},
)
