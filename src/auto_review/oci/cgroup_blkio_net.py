"""``linux.resources.blockIO``, ``network`` and ``memory.disableOOMKiller``: parsing into
(controller, setting, value) triples and the files each cgroup version takes them in.

blockIO goes to the v1 ``blkio`` controller or the v2 ``io`` one: ``weight`` and
``leafWeight`` to ``blkio.weight``/``blkio.leaf_weight`` (v2: ``io.weight`` "default N",
the weight mapped from 10..1000 onto 1..10000 as runc maps it; v2 has no leaf weight),
``weightDevice`` to ``blkio.weight_device`` and ``blkio.leaf_weight_device`` (v2:
``io.weight`` "MAJ:MIN N"), the four throttles to ``blkio.throttle.*_device`` (v2: one
``io.max`` line per device and limit). network goes to the v1 ``net_cls.classid`` and
``net_prio.ifpriomap``; v2 has neither controller. disableOOMKiller writes v1
``memory.oom_control``; v2 has no such switch. A setting the host's cgroups cannot take is
a ``StepError("cgroup", ...)`` naming it, never skipped.
"""

from __future__ import annotations

import errno

from auto_review.oci.errors import SpecError, StepError

Setting = tuple[str, str, int | str]

_WEIGHT_RANGE = (10, 1000)
# spec field -> (v1 file suffix after "blkio.throttle.", v2 io.max key)
_THROTTLES = {
    "throttleReadBpsDevice": ("read_bps_device", "rbps"),
    "throttleWriteBpsDevice": ("write_bps_device", "wbps"),
    "throttleReadIOPSDevice": ("read_iops_device", "riops"),
    "throttleWriteIOPSDevice": ("write_iops_device", "wiops"),
}
_UINT64_MAX = (1 << 64) - 1


def _number(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"linux.resources.{where}: must be an integer from {low} to {high}")
    return value


def _device(entry: object, where: str) -> str:
    if not isinstance(entry, dict):
        raise SpecError(f"linux.resources.{where}: must be an object")
    major = _number(entry.get("major"), f"{where}.major", 0, _UINT64_MAX)
    minor = _number(entry.get("minor"), f"{where}.minor", 0, _UINT64_MAX)
    return f"{major}:{minor}"


def blkio_requested(block_io: object) -> list[Setting]:
    """Settings of the blkio controller; names carry the device ("throttle rbps 8:0")."""
    if not isinstance(block_io, dict):
        raise SpecError("linux.resources.blockIO: must be an object")
    wanted: list[Setting] = []
    for name in ("weight", "leafWeight"):
        if block_io.get(name) is not None:
            wanted.append(("blkio", name,
                           _number(block_io[name], f"blockIO.{name}", *_WEIGHT_RANGE)))
    for index, entry in enumerate(block_io.get("weightDevice") or []):
        where = f"blockIO.weightDevice[{index}]"
        device = _device(entry, where)
        for name in ("weight", "leafWeight"):
            if entry.get(name) is not None:
                value = _number(entry[name], f"{where}.{name}", *_WEIGHT_RANGE)
                wanted.append(("blkio", f"{name}Device {device}", value))
    for field in _THROTTLES:
        for index, entry in enumerate(block_io.get(field) or []):
            where = f"blockIO.{field}[{index}]"
            device = _device(entry, where)
            rate = _number(entry.get("rate"), f"{where}.rate", 0, _UINT64_MAX)
            wanted.append(("blkio", f"{field} {device}", rate))
    return wanted


def network_requested(network: object) -> list[Setting]:
    if not isinstance(network, dict):
        raise SpecError("linux.resources.network: must be an object")
    wanted: list[Setting] = []
    if network.get("classID") is not None:
        wanted.append(("net_cls", "classID",
                       _number(network["classID"], "network.classID", 0, (1 << 32) - 1)))
    for index, entry in enumerate(network.get("priorities") or []):
        where = f"network.priorities[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not (
                entry["name"] and entry["name"].isprintable() and " " not in entry["name"]):
            raise SpecError(f"linux.resources.{where}.name: an interface name expected")
        priority = _number(entry.get("priority"), f"{where}.priority", 0, (1 << 32) - 1)
        wanted.append(("net_prio", f"ifpriomap {entry['name']}", priority))
    return wanted


def _v2_weight(weight: int) -> int:
    return 1 + (weight - 10) * 9999 // 990


def blkio_writes(version: str, settings: dict[str, int | str]) -> list[tuple[str, str]]:
    """(file, text) for the blkio settings on one cgroup version, in the spec's order."""
    writes: list[tuple[str, str]] = []
    for name, value in settings.items():
        kind, _, device = name.partition(" ")
        if version == "v1":
            if kind in ("weight", "leafWeight"):
                writes.append(("blkio.weight" if kind == "weight" else "blkio.leaf_weight",
                               str(value)))
            elif kind in ("weightDevice", "leafWeightDevice"):
                file_name = "blkio.weight_device" if kind == "weightDevice" else (
                    "blkio.leaf_weight_device")
                writes.append((file_name, f"{device} {value}"))
            else:
                writes.append((f"blkio.throttle.{_THROTTLES[kind][0]}", f"{device} {value}"))
        elif kind in ("leafWeight", "leafWeightDevice"):
            raise StepError("cgroup", errno.EOPNOTSUPP,
                            f"linux.resources.blockIO.{kind}: cgroup v2 has no leaf weight")
        elif kind == "weight":
            writes.append(("io.weight", f"default {_v2_weight(int(value))}"))
        elif kind == "weightDevice":
            writes.append(("io.weight", f"{device} {_v2_weight(int(value))}"))
        else:
            writes.append(("io.max", f"{device} {_THROTTLES[kind][1]}={value}"))
    return writes


def network_writes(controller: str, settings: dict[str, int | str]) -> list[tuple[str, str]]:
    if controller == "net_cls":
        return [("net_cls.classid", str(settings["classID"]))]
    return [("net_prio.ifpriomap", f"{name.partition(' ')[2]} {value}")
            for name, value in settings.items()]


def oom_killer_write(version: str) -> tuple[str, str]:
    if version != "v1":
        raise StepError("cgroup", errno.EOPNOTSUPP,
                        "linux.resources.memory.disableOOMKiller: cgroup v2 has no such switch")
    return ("memory.oom_control", "1")
