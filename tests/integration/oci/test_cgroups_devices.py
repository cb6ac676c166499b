"""Device rules on the real kernel: v1 devices cgroup and v2 BPF program agree."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.requirements import needs_root, require

from auto_review.oci import cgroup_devices
from auto_review.oci.cgroups import Cgroup
from auto_review.oci.errors import SpecError

UNIFIED = Path("/sys/fs/cgroup/unified")
KMSG, LOOP = "/dev/kmsg", "/dev/loop0"



def attempt_open(path: str, flags: int) -> str:
    try:
        os.close(os.open(path, flags))
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]
    return "ok"


def attempt_mknod(directory: str, major: int, minor: int) -> str:
    node = os.path.join(directory, f"node-{major}-{minor}")
    try:
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]
    os.unlink(node)
    return "ok"


def probe_devices(scratch: str) -> dict[str, str]:
    return {
        "null rw": attempt_open("/dev/null", os.O_RDWR),
        "kmsg r": attempt_open(KMSG, os.O_RDONLY),
        "kmsg w": attempt_open(KMSG, os.O_WRONLY),
        "loop r": attempt_open(LOOP, os.O_RDONLY),
        "mknod kmsg": attempt_mknod(scratch, 1, 11),
    }


def probe_in(directories: list[str], scratch: str) -> dict[str, str]:
    """Probe device access from a child placed in the given cgroup directories."""
    report_read, report_write = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(go_read, 1)
        os.write(report_write, json.dumps(probe_devices(scratch)).encode())
        os._exit(0)
    os.close(report_write)
    for directory in directories:
        Path(directory, "cgroup.procs").write_text(str(pid))
    os.write(go_write, b"g")
    with os.fdopen(report_read) as report:
        answer = json.loads(report.read())
    os.waitpid(pid, 0)
    os.close(go_read)
    os.close(go_write)
    return answer


@pytest.fixture
def scratch() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield directory


@pytest.fixture
def v2_directory() -> Iterator[str]:
    require(
        UNIFIED.is_dir() and Path(KMSG).exists() and Path(LOOP).exists(),
        "a cgroup2 mount at /sys/fs/cgroup/unified, /dev/kmsg and /dev/loop0",
    )
    directory = UNIFIED / f"ar-dev-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    yield str(directory)
    directory.rmdir()


RUNC_DEFAULT = [{"allow": False, "access": "rwm"}]
RULE_SETS = {
    "runc default": (
        RUNC_DEFAULT,
        {"null rw": "ok", "kmsg r": "EPERM", "kmsg w": "EPERM", "loop r": "EPERM",
         "mknod kmsg": "ok"},
    ),
    "deny all, allow kmsg read": (
        [*RUNC_DEFAULT, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}],
        {"null rw": "ok", "kmsg r": "ok", "kmsg w": "EPERM", "loop r": "EPERM",
         "mknod kmsg": "ok"},
    ),
    "allow all, deny kmsg write": (
        [{"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"}],
        {"null rw": "ok", "kmsg r": "ok", "kmsg w": "EPERM", "loop r": "ok", "mknod kmsg": "ok"},
    ),
    "deny all, read every device": (
        [*RUNC_DEFAULT, {"allow": True, "type": "a", "access": "r"}],
        {"null rw": "ok", "kmsg r": "ok", "kmsg w": "EPERM", "loop r": "ok", "mknod kmsg": "ok"},
    ),
    "grant then take back": (
        [
            *RUNC_DEFAULT,
            {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"},
            {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"},
        ],
        {"null rw": "ok", "kmsg r": "ok", "kmsg w": "EPERM", "loop r": "EPERM",
         "mknod kmsg": "ok"},
    ),
    "deny all, allow loop block devices": (
        [*RUNC_DEFAULT, {"allow": True, "type": "b", "major": 7, "access": "rwm"}],
        {"null rw": "ok", "kmsg r": "EPERM", "kmsg w": "EPERM", "loop r": "ok",
         "mknod kmsg": "ok"},
    ),
}  # fmt: skip


@needs_root
@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_v1_devices_cgroup_and_v2_program_enforce_the_same_rules(
    name: str, scratch: str, v2_directory: str
) -> None:
    entries, expected = RULE_SETS[name]
    cgroup = Cgroup.create(f"ar-dev-{uuid.uuid4().hex[:8]}", None, {"devices": entries},
                           best_effort=False)  # fmt: skip
    try:
        assert cgroup.controllers == {"devices": "v1"}
        v1_answer = probe_in(cgroup.paths(), scratch)
    finally:
        cgroup.destroy()
    cgroup_devices.attach_v2_program(v2_directory, cgroup_devices.parse_rules(entries))
    v2_answer = probe_in([v2_directory], scratch)
    assert v1_answer == expected
    assert v2_answer == expected


@needs_root
def test_v1_device_list_reads_back() -> None:
    cgroup = Cgroup.create(f"ar-dev-{uuid.uuid4().hex[:8]}", None, {"devices": RUNC_DEFAULT},
                           best_effort=False)  # fmt: skip
    try:
        listed = cgroup.effective_limits()["devices"]
    finally:
        cgroup.destroy()
    assert "c 1:3 rwm" in listed and "c 136:* rwm" in listed
    assert not any(line.startswith("a") for line in listed)


def test_rules_reduce_like_the_v1_kernel_list() -> None:
    rules = cgroup_devices.parse_rules(
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 4, "minor": -1, "access": "rw"},
            {"allow": False, "type": "c", "major": 4, "access": "w"},
            {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
            {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "r"},
        ]
    )
    default_allow, exceptions = cgroup_devices.reduce_rules(rules)
    assert default_allow is False
    assert ("c", 4, -1, 2) in exceptions  # read left, write taken back
    assert not any(kind == "b" and major == 8 for kind, major, _, _ in exceptions)
    assert ("c", 1, 3, 7) in exceptions  # the runtime's default /dev/null


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"allow": False}, "must be a list"),
        ([{"access": "rwm"}], r"devices\[0\]: allow must be true or false"),
        ([{"allow": True, "type": "u"}], r"devices\[0\]\.type"),
        ([{"allow": True, "type": "c", "access": "rx"}], r"devices\[0\]\.access"),
        ([{"allow": True, "type": "c", "major": -2}], r"devices\[0\]\.major"),
    ],
)
def test_malformed_device_rules_are_spec_errors(entries: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Cgroup.create("c1", None, {"devices": entries}, best_effort=True)
