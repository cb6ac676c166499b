"""blockIO, network and disableOOMKiller: what is written where, on cgroup v1 and v2."""

from __future__ import annotations

import errno

import pytest

from auto_review.oci import cgroup_blkio_net as bn
from auto_review.oci import cgroups
from auto_review.oci.errors import SpecError, StepError

BLOCK_IO = {
    "weight": 500, "leafWeight": 300,
    "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
}  # fmt: skip


def _settings(wanted: list[bn.Setting]) -> dict[str, int | str]:
    return {name: value for _, name, value in wanted}


def test_block_io_on_v1() -> None:
    writes = bn.blkio_writes("v1", _settings(bn.blkio_requested(BLOCK_IO)))
    assert writes == [
        ("blkio.weight", "500"), ("blkio.leaf_weight", "300"),
        ("blkio.weight_device", "8:0 200"),
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_iops_device", "8:16 100"),
    ]  # fmt: skip


def test_block_io_on_v2_maps_weights_and_refuses_leaf_weights() -> None:
    request = {key: value for key, value in BLOCK_IO.items() if key != "leafWeight"}
    writes = bn.blkio_writes("v2", _settings(bn.blkio_requested(request)))
    assert writes == [
        ("io.weight", "default 4950"), ("io.weight", "8:0 1920"),
        ("io.max", "8:0 rbps=1048576"), ("io.max", "8:16 wiops=100"),
    ]  # fmt: skip
    with pytest.raises(StepError) as caught:
        bn.blkio_writes("v2", _settings(bn.blkio_requested({"leafWeight": 100})))
    assert caught.value.errno == errno.EOPNOTSUPP
    assert "leafWeight: cgroup v2 has no leaf weight" in caught.value.path


def test_block_io_values_are_checked() -> None:
    with pytest.raises(SpecError, match=r"blockIO.weight: must be an integer from 10 to 1000"):
        bn.blkio_requested({"weight": 5})
    with pytest.raises(SpecError, match=r"throttleReadBpsDevice\[0\].major"):
        bn.blkio_requested({"throttleReadBpsDevice": [{"minor": 0, "rate": 1}]})


def test_network_settings() -> None:
    wanted = bn.network_requested({"classID": 1048577,
                                   "priorities": [{"name": "eth0", "priority": 5},
                                                  {"name": "lo", "priority": 2}]})
    assert [controller for controller, _, _ in wanted] == ["net_cls", "net_prio", "net_prio"]
    assert bn.network_writes("net_cls", _settings(wanted[:1])) == [("net_cls.classid",
                                                                    "1048577")]
    assert bn.network_writes("net_prio", _settings(wanted[1:])) == [
        ("net_prio.ifpriomap", "eth0 5"), ("net_prio.ifpriomap", "lo 2")]
    with pytest.raises(SpecError, match="an interface name expected"):
        bn.network_requested({"priorities": [{"name": "a b", "priority": 1}]})


def test_oom_killer_switch_only_on_v1() -> None:
    assert bn.oom_killer_write("v1") == ("memory.oom_control", "1")
    with pytest.raises(StepError, match="disableOOMKiller: cgroup v2 has no such switch"):
        bn.oom_killer_write("v2")


def test_requests_reach_the_right_controllers() -> None:
    wanted = cgroups._requested({"memory": {"limit": 1 << 26, "disableOOMKiller": True},
                                 "blockIO": {"weight": 100}, "network": {"classID": 1}})
    assert ("memory", "disableOOMKiller", 1) in wanted
    assert ("blkio", "weight", 100) in wanted
    assert ("net_cls", "classID", 1) in wanted
    assert cgroups._requested({"memory": {"disableOOMKiller": False}}) == []
    writes = cgroups._controller_writes("v1", "memory", {"limit": 1 << 26,
                                                         "disableOOMKiller": 1}, {})
    assert writes == [("memory.limit_in_bytes", str(1 << 26)), ("memory.oom_control", "1")]


def test_a_missing_controller_is_named() -> None:
    hierarchies = cgroups.parse_hierarchies(
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        "4:memory:/\n")
    with pytest.raises(StepError, match="no mounted cgroup hierarchy offers net_cls"):
        cgroups._choose("net_cls", hierarchies)
    v2 = cgroups.parse_hierarchies("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                                   "0::/\n", lambda _: frozenset({"io", "memory"}))
    assert cgroups._choose("blkio", v2).version == "v2"
