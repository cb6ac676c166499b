"""The spec model: schema validation with its cache, and refusal of unsupported fields."""

from __future__ import annotations

import copy
import json
import marshal
from pathlib import Path
from typing import Any

import pytest
from tests.support.reference import reference_path

from auto_review.oci import spec
from auto_review.oci.default_spec import default_spec
from auto_review.oci.errors import SpecError


def _config(**changes: Any) -> dict[str, Any]:
    config = default_spec()
    config.update(changes)
    return config


def _bundle(tmp_path: Path, config: dict[str, Any]) -> Path:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_valid_and_supported(rootless: bool) -> None:
    config = default_spec(rootless=rootless)
    spec.validate_against_schema(config)
    spec.check_supported(config)


def test_runc_reference_default_spec_names_the_first_unsupported_field() -> None:
    config = json.loads(reference_path("oci", "runc-spec-default.json").read_text())
    with pytest.raises(SpecError, match=r"process\.terminal"):
        spec.check_supported(config)
    config["process"]["terminal"] = False
    spec.check_supported(config)  # the rest of runc's default posture is supported


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c["process"].update(apparmorProfile="x"), "process.apparmorProfile"),
        (lambda c: c["process"].update(selinuxLabel="x"), "process.selinuxLabel"),
        (lambda c: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_BE"}),
         "process.ioPriority"),
        (lambda c: c["linux"].update(intelRdt={}), "linux.intelRdt"),
        (lambda c: c["linux"]["namespaces"].append({"type": "time"}),
         "linux.namespaces[5].type=time"),
        (lambda c: c["mounts"].append({"destination": "/x", "type": "overlay"}),
         "mounts[6].type=overlay"),
        (lambda c: c["mounts"][0].update(uidMappings=[]), "mounts[0].uidMappings"),
        (lambda c: c.update(solaris={}), "solaris"),
        (lambda c: c["process"]["user"].update(username="x"), "process.user.username"),
        (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW",
                                              "listenerPath": "/x"}),
         "linux.seccomp.listenerPath"),
        (lambda c: c["linux"].update(resources={"rdma": {"mlx5_1": {"hcaHandles": 3}}}),
         "linux.resources.rdma"),
    ],
)
def test_unsupported_fields_are_named(edit: Any, named: str) -> None:
    config = default_spec()
    edit(config)
    with pytest.raises(SpecError) as caught:
        spec.check_supported(config)
    assert named in str(caught.value)


def test_unknown_properties_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The runtime spec: a runtime must not fail on an unknown property, and ignores it."""
    config = default_spec()
    config["org.example.future"] = {"x": 1}
    config["process"]["user"]["futurePolicy"] = "strict"
    config["mounts"][0]["futureOption"] = True
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "futureMode": "log",
                                  "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                "futureComment": "x"}]}
    config["linux"]["resources"] = {"futureController": {}, "memory": {"futureKnob": 1}}
    expected = copy.deepcopy(config)
    del expected["org.example.future"]
    del expected["process"]["user"]["futurePolicy"]
    del expected["mounts"][0]["futureOption"]
    del expected["linux"]["seccomp"]["futureMode"]
    del expected["linux"]["seccomp"]["syscalls"][0]["futureComment"]
    expected["linux"]["resources"] = {"memory": {}}
    with caplog.at_level("DEBUG", logger="auto_review.oci"):
        spec.check_supported(config)
    assert config == expected
    logged = {record.getMessage() for record in caplog.records}
    assert logged == {
        "ignoring unknown field org.example.future",
        "ignoring unknown field process.user.futurePolicy",
        "ignoring unknown field mounts[0].futureOption",
        "ignoring unknown field linux.seccomp.futureMode",
        "ignoring unknown field linux.seccomp.syscalls[0].futureComment",
        "ignoring unknown field linux.resources.futureController",
        "ignoring unknown field linux.resources.memory.futureKnob",
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["process"].update(terminal=True), "process.terminal"),
        (lambda c: c["linux"].update(namespaces=[{"type": "mount"}, {"type": "mount"}]),
         "appears twice"),
        (lambda c: c["linux"].update(sysctl={"kernel.panic": "1"}), "not a namespaced"),
        (lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"},
                                     namespaces=[{"type": "mount"}, {"type": "uts"}]),
         "needs a network namespace"),
        (lambda c: c["linux"].update(namespaces=[{"type": "mount"}]), "hostname needs a uts"),
        (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
         "needs a user namespace"),
        (lambda c: c["process"].update(args=[]), "process.args"),
        (lambda c: c.pop("process"), "missing field process"),
    ],
)
def test_unsupported_values_are_refused(edit: Any, message: str) -> None:
    config = default_spec()
    edit(config)
    with pytest.raises(SpecError, match=message):
        spec.check_supported(config)


def test_schema_violation_names_the_place(tmp_path: Path) -> None:
    config = _config()
    config["process"]["rlimits"][0]["soft"] = "many"
    with pytest.raises(SpecError, match=r"process/rlimits/0/soft"):
        spec.load_bundle(_bundle(tmp_path, config), tmp_path / "cache")


def test_cache_holds_the_parsed_config_and_ignores_junk(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bundle = _bundle(tmp_path, _config())
    first = spec.load_bundle(bundle, str(cache))
    (entry,) = cache.iterdir()
    again = spec.load_bundle(bundle, str(cache))
    assert again.config == first.config
    entry.write_bytes(b"not marshal data")  # a damaged entry: parsed and validated anew
    assert spec.load_bundle(bundle, str(cache)).config == first.config
    # an entry others could have written is not trusted: the config is validated again
    (entry,) = cache.iterdir()
    assert entry.stat().st_mode & 0o777 == 0o600
    forged = _config()
    forged["hostname"] = "forged"
    raw = (bundle / "config.json").read_bytes()
    entry.write_bytes(marshal.dumps((b"other bytes", forged)))  # made from other bytes
    assert spec.load_bundle(bundle, str(cache)).config == first.config
    entry.write_bytes(marshal.dumps((raw, forged)))
    assert spec.load_bundle(bundle, str(cache)).config["hostname"] == "forged"  # ours: trusted
    entry.chmod(0o666)
    assert spec.load_bundle(bundle, str(cache)).config == first.config


def test_validation_is_cached_by_content(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bundle = _bundle(tmp_path, _config())
    loaded = spec.load_bundle(bundle, cache)
    assert loaded.rootfs == str(bundle / "rootfs")
    markers = list(cache.iterdir())
    assert len(markers) == 1
    # The marker is the sha256 of the exact bytes: other bytes are validated again.
    broken = copy.deepcopy(_config())
    broken["hostname"] = 5
    _bundle(tmp_path, broken)
    with pytest.raises(SpecError, match="hostname"):
        spec.load_bundle(bundle, cache)
    assert len(list(cache.iterdir())) == 1


def test_missing_config_and_bad_json_and_missing_rootfs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        spec.load_bundle(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        spec.load_bundle(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(_config()))
    with pytest.raises(SpecError, match="not a directory"):
        spec.load_bundle(tmp_path)
