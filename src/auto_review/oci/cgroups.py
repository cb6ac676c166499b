"""A container's cgroup: ``linux.resources`` limits on cgroup v2 or v1, chosen per controller.

A controller is used on the unified (v2) hierarchy when that hierarchy offers it (it is
listed in the v2 root's ``cgroup.controllers``), otherwise on the v1 hierarchy that has it
mounted. Hybrid hosts therefore get a mix: on a host with v1 ``pids`` and ``memory`` and a
cgroup2 mount holding only ``hugetlb``, pids and memory limits go to v1, hugepage limits
to v2.

As root the container gets a cgroup of its own in every mounted hierarchy (v1 ones such as
``cpu``, ``blkio``, ``freezer``, ``name=systemd``, and the unified one), limited or not, as
runc and crun make it; the limits go where they belong. An unprivileged caller makes
directories only in the hierarchies it limits (nothing is delegated to it here).

``cgroupsPath`` follows runc's cgroupfs driver: an absolute path is taken from the root of
each hierarchy, a relative one from the calling process's own cgroup in that hierarchy,
and without one the container id is used as a relative path. ``..`` components and
systemd-style ``slice:prefix:name`` paths are refused.

``blockIO``, ``network`` and ``memory.disableOOMKiller`` are parsed and written by
``cgroup_blkio_net`` (v1 ``blkio``, ``net_cls``, ``net_prio``, ``memory.oom_control``; v2
``io``).

Device rules (``devices``) go to a v1 devices hierarchy when one is mounted, otherwise to a
BPF program on the v2 cgroup (see ``cgroup_devices``). A caller that is not root skips
them and says so in ``skipped``: neither form is open to it, and a container in a user
namespace cannot create device nodes in the first place.

Values follow runc: a limit of 0 leaves the setting alone, -1 means unlimited.
``memory.swap`` is memory plus swap, as in the OCI spec (v1 ``memory.memsw.limit_in_bytes``;
on v2 the runtime writes ``swap - limit`` to ``memory.swap.max``).

``cpu`` takes ``shares``, ``quota``, ``period``, ``cpus`` and ``mems``. On v1 they go to
``cpu.shares``, ``cpu.cfs_quota_us``, ``cpu.cfs_period_us`` and the cpuset controller's
``cpuset.cpus``/``cpuset.mems``; a v1 cpuset directory the runtime makes gets its parent's
cpus and mems first, since the kernel refuses tasks in a cpuset with none. On v2 shares
become ``cpu.weight`` (runc's conversion), quota and period one ``cpu.max`` line. The
realtime, ``idle`` and ``burst`` settings are refused unless 0 or null.

When a directory cannot be made or a limit cannot be written, everything made so far is
removed and ``StepError("cgroup", errno, path)`` is raised, unless the caller asked for best
effort (annotation ``org.auto-review.cgroups.best-effort`` = ``"true"``): then the returned
object has ``applied`` False and ``reason`` holding the one-line error.
"""

from __future__ import annotations

import errno
import os
import time

from auto_review.oci import cgroup_blkio_net
from auto_review.oci.errors import SpecError, StepError

# No re here and cgroup_devices (ctypes) only when device rules are asked for: this module
# is on the path of every `run` as root.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from auto_review.oci import cgroup_devices

BEST_EFFORT_ANNOTATION = "org.auto-review.cgroups.best-effort"
SUPPORTED_RESOURCES: frozenset[str] = frozenset(
    {"pids", "memory", "hugepageLimits", "devices", "cpu", "blockIO", "network"}
)

_UNLIMITED = -1
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
# Memory fields accepted with any value because they change nothing here: the kernel is
# always hierarchical, and checkBeforeUpdate only concerns updates of a running container.
_MEMORY_NO_OPS = frozenset({"useHierarchy", "checkBeforeUpdate"})
_MEMORY_LIMITS = ("limit", "swap", "reservation")
_MEMORY_FLAGS = ("disableOOMKiller",)
# v1 reports "no limit" as the largest page-aligned counter value.
_V1_UNLIMITED_FLOOR = 1 << 62
# The kernel's bounds: shares outside them are clamped silently, so they are refused here;
# a CFS period outside 1 ms..1 s and a quota under 1 ms are refused by the kernel.
_SHARES_RANGE = (2, 262144)
_PERIOD_RANGE = (1000, 1_000_000)
_MIN_QUOTA = 1000
# Accepted only as 0 or null: realtime budgets need RT group scheduling and a share of the
# parent's budget, idle and burst are not implemented.
_CPU_REFUSED = ("realtimeRuntime", "realtimePeriod", "idle", "burst")
_CPU_NUMBERS = ("shares", "quota", "period")
_CPUSET_LISTS = ("cpus", "mems")

# (controller, setting, value): an int limit, or a cpuset list as the kernel reads it.
Setting = tuple[str, str, int | str]
_RMDIR_RETRY_SECONDS = 2.0

_V1_FILES = {
    ("pids", "limit"): "pids.max",
    ("memory", "limit"): "memory.limit_in_bytes",
    ("memory", "swap"): "memory.memsw.limit_in_bytes",
    ("memory", "reservation"): "memory.soft_limit_in_bytes",
    ("cpu", "shares"): "cpu.shares",
    ("cpu", "period"): "cpu.cfs_period_us",  # before the quota, as it is checked against it
    ("cpu", "quota"): "cpu.cfs_quota_us",
    ("cpuset", "cpus"): "cpuset.cpus",
    ("cpuset", "mems"): "cpuset.mems",
}
_V2_FILES = {
    ("pids", "limit"): "pids.max",
    ("memory", "limit"): "memory.max",
    ("memory", "swap"): "memory.swap.max",
    ("memory", "reservation"): "memory.low",
    ("cpuset", "cpus"): "cpuset.cpus",
    ("cpuset", "mems"): "cpuset.mems",
}


def best_effort_from_annotations(annotations: dict[str, str]) -> bool:
    """True when the bundle allows running without cgroup limits; SpecError if malformed."""
    value = annotations.get(BEST_EFFORT_ANNOTATION, "false")
    if value not in ("true", "false"):
        raise SpecError(f'annotation {BEST_EFFORT_ANNOTATION}: must be "true" or "false"')
    return value == "true"


# ---------------------------------------------------------------- spec validation


def _int64(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= _INT64_MAX:
        raise SpecError(f"linux.resources.{where}: must be an integer from -1 up")
    return value


def _page_size(value: object, where: str) -> str:
    if not isinstance(value, str) or value[-2:] not in ("KB", "MB", "GB"):
        raise SpecError(f"linux.resources.{where}: page size like 2MB expected")
    digits = value[:-2]
    if not (digits.isascii() and digits.isdigit() and digits[0] != "0"):
        raise SpecError(f"linux.resources.{where}: page size like 2MB expected")
    return value


def _bounded(value: object, where: str, low: int, high: int) -> int:
    """An integer within [low, high], or 0 (leave alone); SpecError naming the field."""
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (value == 0 or low <= value <= high)
    ):
        raise SpecError(f"linux.resources.{where}: must be 0 or from {low} to {high}")
    return value


def _cpu_list(value: object, where: str) -> str:
    """A kernel cpu or node list like "0-2,4"; "" or null leaves the setting alone."""
    if value is None:
        return ""
    if not isinstance(value, str) or (value and not _is_cpu_list(value)):
        raise SpecError(f"linux.resources.{where}: a list like 0-2,4 expected")
    return value


def _is_cpu_list(text: str) -> bool:
    """Comma-separated numbers or low-high ranges, ASCII digits only ("0-2,4")."""
    for item in text.split(","):
        low, dash, high = item.partition("-")
        if not _is_number(low) or (dash and not _is_number(high)):
            return False
    return True


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _cpu_requested(cpu: object) -> list[Setting]:
    """(controller, setting, value) for linux.resources.cpu; SpecError when malformed."""
    if not isinstance(cpu, dict):
        raise SpecError("linux.resources.cpu: must be an object")
    for field in sorted(set(cpu) - set(_CPU_NUMBERS) - set(_CPUSET_LISTS)):
        if field not in _CPU_REFUSED:
            raise SpecError(f"linux.resources.cpu.{field}: unknown field")
        if cpu[field] not in (None, 0) or isinstance(cpu[field], bool):
            raise SpecError(f"linux.resources.cpu.{field}: not supported (only 0 or null)")
    shares = _bounded(cpu.get("shares"), "cpu.shares", *_SHARES_RANGE)
    period = _bounded(cpu.get("period"), "cpu.period", *_PERIOD_RANGE)
    quota = cpu.get("quota")
    if quota is None:
        quota = 0
    elif (
        isinstance(quota, bool)
        or not isinstance(quota, int)
        or not (quota in (_UNLIMITED, 0) or _MIN_QUOTA <= quota <= _INT64_MAX)
    ):
        raise SpecError(f"linux.resources.cpu.quota: must be -1, 0 or at least {_MIN_QUOTA}")
    # Period before quota: v1 checks a quota against the period already in place.
    wanted: list[Setting] = [
        ("cpu", name, value)
        for name, value in (("shares", shares), ("period", period), ("quota", quota))
        if value
    ]
    for name in _CPUSET_LISTS:
        text = _cpu_list(cpu.get(name), f"cpu.{name}")
        if text:
            wanted.append(("cpuset", name, text))
    return wanted


def _requested(resources: dict[str, object]) -> list[Setting]:
    """(controller, setting, value) for every limit asked for; SpecError when malformed."""
    if not isinstance(resources, dict):
        raise SpecError("linux.resources: must be an object")
    for key, value in resources.items():
        if key not in SUPPORTED_RESOURCES and value not in (None, [], {}):
            raise SpecError(f"linux.resources.{key}: not supported")
    wanted: list[Setting] = []
    pids = resources.get("pids")
    if pids is not None:
        if not isinstance(pids, dict) or set(pids) - {"limit"}:
            raise SpecError("linux.resources.pids: only limit is supported")
        limit = _int64(pids.get("limit"), "pids.limit")
        if limit:
            wanted.append(("pids", "limit", limit))
    memory = resources.get("memory")
    if memory is not None:
        if not isinstance(memory, dict):
            raise SpecError("linux.resources.memory: must be an object")
        for field in sorted(set(memory) - set(_MEMORY_LIMITS) - _MEMORY_NO_OPS
                            - set(_MEMORY_FLAGS)):
            if memory[field] not in (None, False):
                raise SpecError(f"linux.resources.memory.{field}: not supported")
        if memory.get("disableOOMKiller") not in (None, False):
            if memory["disableOOMKiller"] is not True:
                raise SpecError("linux.resources.memory.disableOOMKiller: must be a boolean")
            wanted.append(("memory", "disableOOMKiller", 1))
        values = {name: _int64(memory.get(name, 0), f"memory.{name}") for name in _MEMORY_LIMITS}
        if values["swap"] > 0 and values["limit"] <= 0:
            # A bounded memory+swap total under unbounded memory is a contradiction.
            raise SpecError("linux.resources.memory.swap: needs a positive memory.limit")
        if values["swap"] > 0 and values["swap"] < values["limit"]:
            raise SpecError("linux.resources.memory.swap: smaller than memory.limit")
        wanted += [("memory", name, value) for name, value in values.items() if value]
    pages = resources.get("hugepageLimits")
    if pages is not None:
        if not isinstance(pages, list):
            raise SpecError("linux.resources.hugepageLimits: must be a list")
        for index, entry in enumerate(pages):
            where = f"hugepageLimits[{index}]"
            if not isinstance(entry, dict):
                raise SpecError(f"linux.resources.{where}: must be an object")
            size = _page_size(entry.get("pageSize"), f"{where}.pageSize")
            page_limit = entry.get("limit")
            if (
                isinstance(page_limit, bool)
                or not isinstance(page_limit, int)
                or not 0 <= page_limit <= _UINT64_MAX
            ):
                raise SpecError(f"linux.resources.{where}.limit: must be an unsigned integer")
            wanted.append(("hugetlb", size, page_limit))
    cpu = resources.get("cpu")
    if cpu is not None:
        wanted += _cpu_requested(cpu)
    if resources.get("blockIO") is not None:
        wanted += cgroup_blkio_net.blkio_requested(resources["blockIO"])
    if resources.get("network") is not None:
        wanted += cgroup_blkio_net.network_requested(resources["network"])
    return wanted


def _device_rules(resources: dict[str, object]) -> list[cgroup_devices.DeviceRule]:
    """The device rules asked for (with the runtime's defaults), or none."""
    devices = resources.get("devices")
    if not devices:
        return []
    from auto_review.oci import cgroup_devices

    return cgroup_devices.parse_rules(devices)


def _relative_parts(container_id: str, cgroups_path: str | None) -> tuple[bool, list[str]]:
    """(absolute?, path components) of the container's cgroup; SpecError when unsafe."""
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise SpecError(f"container id {container_id!r} cannot name a cgroup")
    path = cgroups_path or container_id
    if "\0" in path or ":" in path:
        raise SpecError("linux.cgroupsPath: systemd-style or NUL-holding paths are not supported")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise SpecError("linux.cgroupsPath: '..' is not allowed")
    if not parts:
        raise SpecError("linux.cgroupsPath: the hierarchy root cannot be a container's cgroup")
    return path.startswith("/"), parts


# ---------------------------------------------------------------- hierarchies


class _Hierarchy:
    """One mounted cgroup hierarchy and where the calling process sits in it."""

    __slots__ = ("controllers", "mount_point", "own_path", "version")

    def __init__(self, version: str, mount_point: str, controllers: frozenset[str], own: str):
        self.version = version
        self.mount_point = mount_point
        self.controllers = controllers
        self.own_path = own  # relative to mount_point, without leading slash


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1 : index + 4].isdigit():
            out.append(chr(int(field[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def _own_cgroups(text: str) -> dict[str, str]:
    """Controller set (v1: "cpu,cpuacct"; v2: "") -> cgroup path, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        if line:
            _, controllers, path = line.split(":", 2)
            own[controllers] = path
    return own


def _under(path: str, mount_root: str) -> str:
    """The cgroup path relative to a mount of the hierarchy rooted at mount_root."""
    if mount_root == "/":
        return path.strip("/")
    if path == mount_root or path.startswith(mount_root + "/"):
        return path[len(mount_root) :].strip("/")
    return ""  # the process's cgroup is outside this mount: use the mount's root


def _read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read().strip()


def _v2_controllers(mount_point: str) -> frozenset[str] | None:
    try:
        return frozenset(_read_text(os.path.join(mount_point, "cgroup.controllers")).split())
    except OSError:
        return None


def parse_hierarchies(
    mountinfo: str,
    own_cgroups: str,
    v2_controllers: Callable[[str], frozenset[str] | None] = _v2_controllers,
) -> list[_Hierarchy]:
    """The mounted cgroup hierarchies, from /proc/self/mountinfo and /proc/self/cgroup."""
    own = _own_cgroups(own_cgroups)
    found: list[_Hierarchy] = []
    seen_v1: set[frozenset[str]] = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        fstype, super_options = fields[separator + 1], fields[separator + 3]
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2" and not any(h.version == "v2" for h in found):
            controllers = v2_controllers(mount_point)
            if controllers is not None:
                own_path = _under(own.get("", "/"), root)
                found.append(_Hierarchy("v2", mount_point, controllers, own_path))
        elif fstype == "cgroup":
            options = set(super_options.split(","))
            for listed, path in own.items():
                controllers = frozenset(listed.split(",")) if listed else frozenset()
                if controllers and controllers <= options and controllers not in seen_v1:
                    seen_v1.add(controllers)
                    found.append(_Hierarchy("v1", mount_point, controllers, _under(path, root)))
    return found


def _hierarchies() -> list[_Hierarchy]:
    with open("/proc/self/mountinfo") as mountinfo, open("/proc/self/cgroup") as own:
        return parse_hierarchies(mountinfo.read(), own.read())


def _choose(controller: str, hierarchies: list[_Hierarchy]) -> _Hierarchy:
    if controller == "devices":
        # v1 has a devices controller; v2 takes a BPF program on any cgroup instead.
        for hierarchy in sorted(hierarchies, key=lambda h: h.version):
            if hierarchy.version == "v2" or "devices" in hierarchy.controllers:
                return hierarchy
    for version in ("v2", "v1"):
        name = _version_name(version, controller)
        for hierarchy in hierarchies:
            if hierarchy.version == version and name in hierarchy.controllers:
                return hierarchy
    raise StepError("cgroup", errno.ENOENT, f"no mounted cgroup hierarchy offers {controller}")


def _version_name(version: str, controller: str) -> str:
    """The controller's name on a cgroup version: v1 blkio is v2 io."""
    return "io" if version == "v2" and controller == "blkio" else controller


def _setting_file(version: str, controller: str, name: str) -> str:
    if controller == "hugetlb":
        return f"hugetlb.{name}.{'max' if version == 'v2' else 'limit_in_bytes'}"
    return (_V2_FILES if version == "v2" else _V1_FILES)[(controller, name)]


def _setting_value(
    version: str, controller: str, name: str, value: int | str, memory: dict[str, int | str]
) -> str:
    if isinstance(value, str) or controller == "hugetlb":
        return str(value)
    if version == "v2" and (controller, name) == ("memory", "swap") and value != _UNLIMITED:
        # v2 limits swap alone; OCI's swap is memory plus swap (validated: limit > 0).
        return str(value - int(memory["limit"]))
    if value == _UNLIMITED:
        return "max" if version == "v2" or controller == "pids" else "-1"
    return str(value)


def _v2_cpu_writes(settings: dict[str, int | str]) -> list[tuple[str, str]]:
    """cpu.weight from shares (runc's mapping of 2..262144 onto 1..10000), and cpu.max."""
    writes = []
    shares = int(settings.get("shares", 0))
    if shares:
        writes.append(("cpu.weight", str(1 + (shares - 2) * 9999 // 262142)))
    quota, period = int(settings.get("quota", 0)), int(settings.get("period", 0))
    if quota or period:
        line = str(quota) if quota > 0 else "max"
        writes.append(("cpu.max", f"{line} {period}" if period else line))
    return writes


def _controller_writes(
    version: str, controller: str, settings: dict[str, int | str], memory: dict[str, int | str]
) -> list[tuple[str, str]]:
    """(file, text) to write for one controller's settings, in order."""
    if version == "v2" and controller == "cpu":
        return _v2_cpu_writes(settings)
    if controller == "blkio":
        return cgroup_blkio_net.blkio_writes(version, settings)
    if controller in ("net_cls", "net_prio"):
        return cgroup_blkio_net.network_writes(controller, settings)
    if controller == "memory" and "disableOOMKiller" in settings:
        settings = dict(settings)
        del settings["disableOOMKiller"]
        return [*_controller_writes(version, controller, settings, memory),
                cgroup_blkio_net.oom_killer_write(version)]
    return [
        (
            _setting_file(version, controller, name),
            _setting_value(version, controller, name, value, memory),
        )
        for name, value in settings.items()
    ]


# ---------------------------------------------------------------- file operations


def _write(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StepError("cgroup", exc.errno or errno.EIO, path) from exc
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        raise StepError("cgroup", exc.errno or errno.EIO, path) from exc
    finally:
        os.close(fd)


def _inherit_cpuset(directory: str) -> None:
    """Give a new v1 cpuset its parent's cpus and mems: with none, no task may join it."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        source = os.path.join(parent, name)
        try:
            text = _read_text(source)
        except OSError as exc:
            raise StepError("cgroup", exc.errno or errno.EIO, source) from exc
        if text:
            _write(os.path.join(directory, name), text)


def _rmdir(path: str, deadline: float) -> None:
    """Remove a cgroup directory; a cgroup is briefly busy after its last process exits.

    The deadline is shared by all the directories of one destroy(), so a process still
    inside costs two seconds in all, not two seconds per hierarchy."""
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise StepError("cgroup", exc.errno or errno.EIO, path) from exc
        time.sleep(0.005)


class Cgroup:
    """The cgroup directories of one container: every mounted hierarchy as root, only the
    limited ones otherwise."""

    def __init__(self) -> None:
        self.applied = True
        self.reason = ""
        self._best_effort = False
        self.skipped: dict[str, str] = {}  # resource -> why it is not enforced
        self._targets: dict[str, _Hierarchy] = {}  # directory -> its hierarchy
        self._controllers: dict[str, tuple[str, str]] = {}  # controller -> (version, directory)
        self._created: list[str] = []  # directories made, parents first

    @classmethod
    def create(
        cls,
        container_id: str,
        cgroups_path: str | None,
        resources: dict[str, object],
        *,
        best_effort: bool,
    ) -> Cgroup:
        """Make the container's cgroup and apply its limits (in the parent, before the child).

        As root a directory is made (or joined) in every mounted hierarchy, even with no
        limit asked; otherwise only where a limit goes. A hierarchy without limits fails
        like one with them: StepError, or ``applied`` False with best effort.
        SpecError for a malformed or unsupported request, whatever best_effort says.
        """
        wanted = _requested(resources)
        device_rules = _device_rules(resources)
        absolute, parts = _relative_parts(container_id, cgroups_path)
        cgroup = cls()
        cgroup._best_effort = best_effort
        if device_rules and os.geteuid() != 0:
            # Neither devices.allow nor a BPF device program is open to a non-root caller,
            # and in its user namespace the container cannot create device nodes anyway.
            cgroup.skipped["devices"] = "device rules need root (rootless: not applied)"
            device_rules = []
        every_hierarchy = os.geteuid() == 0
        if not wanted and not device_rules and not every_hierarchy:
            cgroup.reason = "no cgroup limits requested"
            return cgroup
        try:
            cgroup._build(wanted, device_rules, absolute, parts, every_hierarchy)
        except StepError as exc:
            cgroup._discard()
            if not best_effort:
                raise
            cgroup.applied = False
            cgroup.reason = exc.one_line()
        return cgroup

    def _build(
        self,
        wanted: list[Setting],
        device_rules: list[cgroup_devices.DeviceRule],
        absolute: bool,
        parts: list[str],
        every_hierarchy: bool,
    ) -> None:
        hierarchies = _hierarchies()
        memory = {name: value for controller, name, value in wanted if controller == "memory"}
        writes: list[tuple[_Hierarchy, str, str]] = []  # hierarchy, file, text
        uses: list[tuple[_Hierarchy, str]] = []  # hierarchy, controller
        by_controller: dict[str, dict[str, int | str]] = {}
        for controller, name, value in wanted:
            by_controller.setdefault(controller, {})[name] = value
        for controller, settings in by_controller.items():
            hierarchy = _choose(controller, hierarchies)
            for file_name, text in _controller_writes(
                hierarchy.version, controller, settings, memory
            ):
                writes.append((hierarchy, file_name, text))
            uses.append((hierarchy, controller))
        device_hierarchy = _choose("devices", hierarchies) if device_rules else None
        if device_hierarchy is not None:
            from auto_review.oci import cgroup_devices

            uses.append((device_hierarchy, "devices"))
            if device_hierarchy.version == "v1":
                lines = cgroup_devices.v1_lines(device_rules)
                writes += [(device_hierarchy, file_name, line) for file_name, line in lines]
        directories: dict[int, str] = {}
        if every_hierarchy:
            # As runc and crun do as root: the container has a cgroup of its own in every
            # mounted hierarchy, so a cgroup mount never has to show the caller's.
            for hierarchy in hierarchies:
                directories[id(hierarchy)] = self._make_directory(hierarchy, absolute, parts)
        for hierarchy, controller in uses:
            if id(hierarchy) not in directories:
                directories[id(hierarchy)] = self._make_directory(hierarchy, absolute, parts)
            directory = directories[id(hierarchy)]
            if hierarchy.version == "v2" and controller != "devices":
                self._enable_v2_controller(hierarchy, directory,
                                           _version_name("v2", controller))
            self._controllers[controller] = (hierarchy.version, directory)
        for hierarchy, file_name, text in writes:
            _write(os.path.join(directories[id(hierarchy)], file_name), text)
        if device_hierarchy is not None and device_hierarchy.version == "v2":
            from auto_review.oci import cgroup_devices

            cgroup_devices.attach_v2_program(directories[id(device_hierarchy)], device_rules)

    def _make_directory(self, hierarchy: _Hierarchy, absolute: bool, parts: list[str]) -> str:
        base = hierarchy.mount_point
        if not absolute and hierarchy.own_path:
            base = os.path.join(base, hierarchy.own_path)
        current = base
        for part in parts:
            current = os.path.join(current, part)
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                continue  # joined, like runc; never removed by destroy()
            except OSError as exc:
                raise StepError("cgroup", exc.errno or errno.EIO, current) from exc
            self._created.append(current)
            if hierarchy.version == "v1" and "cpuset" in hierarchy.controllers:
                _inherit_cpuset(current)
        self._targets[current] = hierarchy
        return current

    def _enable_v2_controller(self, hierarchy: _Hierarchy, directory: str, controller: str) -> None:
        """A v2 controller works in a cgroup only when every ancestor delegates it."""
        relative = os.path.relpath(directory, hierarchy.mount_point).split("/")
        ancestor = hierarchy.mount_point
        for part in relative:
            control = os.path.join(ancestor, "cgroup.subtree_control")
            try:
                enabled = _read_text(control).split()
            except OSError as exc:
                raise StepError("cgroup", exc.errno or errno.EIO, control) from exc
            if controller not in enabled:
                _write(control, f"+{controller}")
            ancestor = os.path.join(ancestor, part)

    def _discard(self) -> None:
        """Undo a half-made cgroup: no process was added yet, so nothing is busy."""
        for directory in reversed(list(self._created)):
            try:
                os.rmdir(directory)
            except OSError:
                continue  # kept for destroy(); the error that brought us here is reported
            self._created.remove(directory)
        self._targets.clear()
        self._controllers.clear()

    @property
    def controllers(self) -> dict[str, str]:
        """Controller -> "v1" or "v2", for the controllers this cgroup limits."""
        return {name: version for name, (version, _) in self._controllers.items()}

    def paths(self) -> list[str]:
        """The container's cgroup directory in each hierarchy it is in (all, as root)."""
        return list(self._targets)

    def created_paths(self) -> list[str]:
        """Every directory this cgroup made, parents first (joined ones are not listed).

        What a later process must remove, deepest first, when this object is gone.
        """
        return list(self._created)

    @property
    def best_effort(self) -> bool:
        return self._best_effort

    def split_by_version(self) -> tuple[list[str], str | None]:
        """(the v1 directories, the v2 directory or None) of the container's cgroup."""
        v1 = [path for path, hierarchy in self._targets.items() if hierarchy.version == "v1"]
        v2 = [path for path, hierarchy in self._targets.items() if hierarchy.version == "v2"]
        return v1, (v2[0] if v2 else None)

    def add_process(self, pid: int) -> None:
        """Move a process (and the children it forks later) into every directory.

        With best effort a failure sets ``applied`` False and ``reason`` instead of raising
        (read them afterwards for the posture); the directories stay for destroy().
        """
        if not self.applied:
            return
        try:
            for directory in self._targets:
                _write(os.path.join(directory, "cgroup.procs"), str(pid))
        except StepError as exc:
            if not self._best_effort:
                raise
            self.applied = False
            self.reason = exc.one_line()

    def destroy(self) -> None:
        """Remove every directory this cgroup made; call after its processes are gone.

        Safe to call twice. StepError("cgroup", EBUSY, path) if a process is still inside.
        """
        failure: StepError | None = None
        deadline = time.monotonic() + _RMDIR_RETRY_SECONDS
        for directory in reversed(list(self._created)):
            try:
                _rmdir(directory, deadline)
                self._created.remove(directory)
            except StepError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        self._targets.clear()

    def effective_limits(self) -> dict[str, object]:
        """The limits as the kernel reports them now (None = unlimited), in OCI terms."""
        limits: dict[str, object] = {}
        for controller, (version, directory) in self._controllers.items():
            if controller == "pids":
                limits["pids.limit"] = _read_number(os.path.join(directory, "pids.max"))
            elif controller == "memory":
                limits.update(_memory_limits(version, directory))
            elif controller == "hugetlb":
                limits["hugepageLimits"] = _hugepage_limits(version, directory)
            elif controller == "cpu":
                limits.update(_cpu_limits(version, directory))
            elif controller == "cpuset":
                limits.update(_cpuset_lists(version, directory))
            elif controller == "devices":
                limits["devices"] = (
                    _read_text(os.path.join(directory, "devices.list")).splitlines()
                    if version == "v1"
                    else ["bpf device program attached"]
                )
        return limits

    def posture(self) -> dict[str, object]:
        """What is enforced, for status reports."""
        return {
            "applied": self.applied,
            "reason": self.reason,
            "controllers": self.controllers,
            "skipped": dict(self.skipped),
            "paths": self.paths(),
            "limits": self.effective_limits() if self.applied else {},
        }


def _read_number(path: str) -> int | None:
    text = _read_text(path)
    if text == "max":
        return None
    value = int(text)
    return None if value >= _V1_UNLIMITED_FLOOR else value


def _memory_limits(version: str, directory: str) -> dict[str, int | None]:
    def read(file_name: str) -> int | None:
        path = os.path.join(directory, file_name)
        return _read_number(path) if os.path.exists(path) else None

    if version == "v1":
        return {
            "memory.limit": read("memory.limit_in_bytes"),
            "memory.swap": read("memory.memsw.limit_in_bytes"),
            "memory.reservation": read("memory.soft_limit_in_bytes"),
        }
    limit, swap = read("memory.max"), read("memory.swap.max")
    reservation = read("memory.low")
    return {
        "memory.limit": limit,
        "memory.swap": None if limit is None or swap is None else limit + swap,
        "memory.reservation": reservation or None,
    }


def _hugepage_limits(version: str, directory: str) -> dict[str, int | None]:
    suffix = ".max" if version == "v2" else ".limit_in_bytes"
    return {
        name[len("hugetlb.") : -len(suffix)]: _read_number(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if name.startswith("hugetlb.") and name.endswith(suffix) and name.count(".") == 2
    }


def _cpu_limits(version: str, directory: str) -> dict[str, int | None]:
    """cpu.shares (v1) or cpu.weight (v2), cpu.quota (None = unlimited) and cpu.period."""
    if version == "v1":
        quota = int(_read_text(os.path.join(directory, "cpu.cfs_quota_us")))
        return {
            "cpu.shares": int(_read_text(os.path.join(directory, "cpu.shares"))),
            "cpu.quota": None if quota == _UNLIMITED else quota,
            "cpu.period": int(_read_text(os.path.join(directory, "cpu.cfs_period_us"))),
        }
    quota_text, period_text = _read_text(os.path.join(directory, "cpu.max")).split()
    return {
        "cpu.weight": int(_read_text(os.path.join(directory, "cpu.weight"))),
        "cpu.quota": None if quota_text == "max" else int(quota_text),
        "cpu.period": int(period_text),
    }


def _cpuset_lists(version: str, directory: str) -> dict[str, str]:
    """The cpus and memory nodes the container's tasks may use now."""
    names = (
        ("cpuset.effective_cpus", "cpuset.effective_mems")
        if version == "v1"
        else ("cpuset.cpus.effective", "cpuset.mems.effective")
    )
    cpus, mems = (_read_text(os.path.join(directory, name)) for name in names)
    return {"cpu.cpus": cpus, "cpu.mems": mems}
