"""Bundle staging: config validity, privacy of files, no secrets, the exact mount set."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.reference import reference_path

import auto_review
from auto_review.isolation.outer.bundle import (
    BundleError,
    BundleRequest,
    ResourceLimits,
    StagedBundle,
    stage_bundle,
)
from auto_review.isolation.outer.rootfs import canonical, host_git, shared_libraries
from auto_review.isolation.outer.seccomp_profile import gateway_seccomp_profile

REFERENCE = reference_path("oci")
CANARY = "canary-4b1d6e0a-secret"
LIMITS = ResourceLimits(memory_bytes=512 * 1024 * 1024, pids=64, nofile=512,
                        tmp_size_bytes=16 * 1024 * 1024)  # fmt: skip


def reference_errors(config: dict[str, Any]) -> list[str]:
    """Errors of ``config`` against the reference runtime-spec schema (Draft 4)."""
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    schema_dir = REFERENCE / "schema"
    registry = Registry().with_resources(
        (path.as_uri(), Resource.from_contents(json.loads(path.read_text()),
                                               default_specification=DRAFT4))
        for path in schema_dir.glob("*.json")
    )  # fmt: skip
    validator = Draft4Validator({"$ref": (schema_dir / "config-schema.json").as_uri()},
                                registry=registry)  # fmt: skip
    return [f"{list(error.absolute_path)}: {error.message}" for error in
            validator.iter_errors(config)]  # fmt: skip


def bundles_in(runtime_dir: Path) -> list[str]:
    if not runtime_dir.exists():
        return []
    return [name for name in os.listdir(runtime_dir) if name.startswith("bundle-")]


@pytest.fixture
def egress_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "proxy.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    yield path
    listener.close()


def make_request(tmp_path: Path, egress: Path, **changes: Any) -> BundleRequest:
    fields: dict[str, Any] = {
        "runtime_dir": tmp_path / "run",
        "state_dir": tmp_path / "state",
        "egress_socket": egress,
        "inner_args": [sys.executable, "-m", "auto_review.isolation.inner.entry"],
        "inner_env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        "rootless": False,
        "preserve_fds": 2,
        "limits": LIMITS,
    }
    fields.update(changes)
    return BundleRequest(**fields)


@pytest.fixture
def staged(tmp_path: Path, egress_socket: Path) -> Iterator[StagedBundle]:
    bundle = stage_bundle(make_request(tmp_path, egress_socket), forbidden_values=[CANARY])
    yield bundle
    bundle.remove()


@pytest.mark.parametrize("rootless", [False, True])
def test_config_is_valid_against_the_reference_schema(
    tmp_path: Path, egress_socket: Path, rootless: bool
):
    bundle = stage_bundle(make_request(tmp_path, egress_socket, rootless=rootless))
    try:
        on_disk = json.loads((bundle.path / "config.json").read_text())
        assert on_disk == bundle.config
        assert reference_errors(on_disk) == []
        assert ("devices" in on_disk["linux"]["resources"]) is not rootless
    finally:
        bundle.remove()


def test_bundle_directories_are_0700_and_files_0600(staged: StagedBundle, tmp_path: Path):
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700
    seen_files = 0
    for directory, _dirs, files in os.walk(staged.path):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue  # rootfs/lib -> usr/lib and the like
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path
            seen_files += 1
    assert seen_files > 8
    assert staged.path.parent == tmp_path / "run"
    assert staged.path.name.startswith(f"bundle-{os.getpid()}-")


def test_existing_runtime_dir_is_tightened(tmp_path: Path, egress_socket: Path):
    (tmp_path / "run").mkdir(mode=0o755)
    os.chmod(tmp_path / "run", 0o755)  # noqa: S103 - too open on purpose
    bundle = stage_bundle(make_request(tmp_path, egress_socket))
    bundle.remove()
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700


def test_runtime_dir_of_another_user_is_refused(tmp_path: Path, egress_socket: Path):
    if os.geteuid() != 0:
        raise RuntimeError("this test chowns a directory to another user: run it as root")
    (tmp_path / "run").mkdir(mode=0o700)
    os.chown(tmp_path / "run", 65534, 65534)
    with pytest.raises(BundleError) as caught:
        stage_bundle(make_request(tmp_path, egress_socket))
    assert caught.value.step == "runtime-dir"
    assert bundles_in(tmp_path / "run") == []


def test_no_canary_in_any_bundle_file(staged: StagedBundle):
    for directory, _dirs, files in os.walk(staged.path):
        for name in files:
            path = Path(directory, name)
            assert path.is_symlink() or CANARY.encode() not in path.read_bytes()


@pytest.mark.parametrize(
    "changes",
    [
        {"inner_env": {"PATH": "/usr/bin:/bin", "AR_TOKEN": CANARY}},
        {"inner_args": [sys.executable, "-c", f"print({CANARY!r})"]},
        {"hostname": CANARY},
    ],
    ids=["env", "args", "hostname"],
)
def test_a_secret_in_the_bundle_is_refused_and_nothing_is_left(
    tmp_path: Path, egress_socket: Path, changes: dict[str, Any]
):
    with pytest.raises(BundleError) as caught:
        stage_bundle(make_request(tmp_path, egress_socket, **changes), forbidden_values=[CANARY])
    assert caught.value.step == "secret-scan"
    assert CANARY not in str(caught.value)
    assert bundles_in(tmp_path / "run") == []
    for entry in (tmp_path / "run").iterdir():  # the rootfs plan cache holds no secret either
        assert CANARY.encode() not in entry.read_bytes()


def test_security_controls_in_the_config(staged: StagedBundle):
    config = staged.config
    namespaces = [entry["type"] for entry in config["linux"]["namespaces"]]
    assert sorted(namespaces) == sorted(
        ["user", "pid", "network", "mount", "ipc", "uts", "cgroup"]
    )
    assert all("path" not in entry for entry in config["linux"]["namespaces"])
    process = config["process"]
    assert process["capabilities"] == {
        name: [] for name in ("bounding", "effective", "permitted", "inheritable", "ambient")
    }
    assert process["noNewPrivileges"] is True
    assert process["user"]["uid"] == 0 and process["user"]["gid"] == 0
    assert config["linux"]["uidMappings"] == [
        {"containerID": 0, "hostID": os.geteuid(), "size": 1}
    ]
    assert config["linux"]["seccomp"] == gateway_seccomp_profile()
    assert config["root"] == {"path": "rootfs", "readonly": True}
    runc = json.loads((REFERENCE / "runc-spec-default.json").read_text())["linux"]
    assert config["linux"]["maskedPaths"] == runc["maskedPaths"]
    assert config["linux"]["readonlyPaths"] == runc["readonlyPaths"]


def test_limits_rlimits_cgroups_and_annotations(staged: StagedBundle):
    config = staged.config
    rlimits = {entry["type"]: (entry["soft"], entry["hard"])
               for entry in config["process"]["rlimits"]}  # fmt: skip
    assert rlimits == {
        "RLIMIT_DATA": (LIMITS.memory_bytes, LIMITS.memory_bytes),
        "RLIMIT_NPROC": (LIMITS.pids, LIMITS.pids),
        "RLIMIT_NOFILE": (LIMITS.nofile, LIMITS.nofile),
        "RLIMIT_CORE": (0, 0),
    }
    assert "RLIMIT_AS" not in rlimits
    resources = config["linux"]["resources"]
    assert resources["memory"] == {"limit": LIMITS.memory_bytes}
    assert resources["pids"] == {"limit": LIMITS.pids}
    annotations = config["annotations"]
    assert annotations["org.auto-review.cgroups.best-effort"] == "true"
    assert json.loads(annotations["org.auto-review.limits"]) == staged.limits
    assert staged.limits["cgroup_best_effort"] is True
    assert staged.limits["processes_bounded_without_cgroup"] is (os.geteuid() != 0)
    landlock = json.loads(annotations["org.auto-review.landlock"])
    assert landlock["read_write"] == ["/var/lib/auto_review", "/tmp", "/dev/null"]
    assert landlock["mandatory"] is False
    read_only_binds = {
        mount["destination"] for mount in config["mounts"]
        if mount["type"] == "bind" and "ro" in mount["options"]
        and mount["destination"] != "/run/egress/proxy.sock"
    }  # fmt: skip
    assert set(landlock["read_only"]) == read_only_binds | {"/proc", "/dev", "/run/egress"}


def test_mandatory_cgroups_and_landlock_are_carried(tmp_path: Path, egress_socket: Path):
    strict = ResourceLimits(cgroup_best_effort=False)
    bundle = stage_bundle(
        make_request(tmp_path, egress_socket, limits=strict, landlock_mandatory=True)
    )
    bundle.remove()
    assert bundle.config["annotations"]["org.auto-review.cgroups.best-effort"] == "false"
    assert json.loads(bundle.config["annotations"]["org.auto-review.landlock"])["mandatory"]


def _outermost(paths: set[str]) -> set[str]:
    return {path for path in paths if not any(path.startswith(other + "/") for other in paths)}


def expected_destinations() -> set[str]:
    """What this host's default interpreter and git need, worked out independently."""
    # The standard library is the base interpreter's, site-packages this environment's
    # (a virtual environment's own, whose platstdlib would otherwise name its lib/ dir).
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    python_dirs = {os.path.realpath(base[key]) for key in ("stdlib", "platstdlib")}
    python_dirs |= {os.path.realpath(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    package_root = os.path.dirname(os.path.dirname(os.path.realpath(auto_review.__file__)))
    python_dirs.add(package_root)  # this process's sys.path has pytest's additions: not used
    python_dirs = _outermost(python_dirs)
    git, exec_path = host_git()
    shell = os.path.realpath("/bin/sh")  # git runs its credential helper with it
    libraries = shared_libraries(
        [os.path.realpath(sys.executable), git, os.path.join(exec_path, "git-remote-https"),
         shell]
    )  # fmt: skip
    libc = next(lib for lib in libraries if os.path.basename(lib).startswith("libc.so"))
    library_dir = os.path.dirname(os.path.realpath(libc))
    outside = {canonical(lib) for lib in libraries
               if not canonical(lib).startswith(library_dir + "/")
               and not any(canonical(lib).startswith(d + "/") for d in python_dirs)}  # fmt: skip
    certificates = {path for path in ("/etc/ssl/certs", "/usr/share/ca-certificates",
                                      "/usr/lib/ssl", "/etc/ssl/openssl.cnf", "/etc/ld.so.cache")
                    if os.path.exists(path)}  # fmt: skip
    in_venv = sys.prefix != sys.base_prefix
    venv_marker = {canonical(os.path.join(sys.prefix, "pyvenv.cfg"))} if in_venv else set()
    return {
        *venv_marker,
        "/proc", "/dev", "/tmp", "/run/egress/proxy.sock", "/var/lib/auto_review",
        "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf",
        canonical(sys.executable), git, exec_path, library_dir, canonical("/bin/sh"),
        *python_dirs, *outside, *certificates,
    }  # fmt: skip


def test_mounts_are_exactly_the_expected_set(staged: StagedBundle, tmp_path: Path):
    mounts = staged.config["mounts"]
    destinations = [mount["destination"] for mount in mounts]
    assert len(destinations) == len(set(destinations))
    assert set(destinations) == expected_destinations()
    writable = [mount for mount in mounts if mount["type"] == "bind" and "rw" in mount["options"]]
    assert writable == [
        {"destination": "/var/lib/auto_review", "type": "bind",
         "source": os.path.realpath(tmp_path / "state"),
         "options": ["bind", "rw", "nosuid", "nodev", "noexec"]}
    ]  # fmt: skip
    for mount in mounts:
        if mount["type"] == "bind" and mount not in writable:
            assert {"bind", "ro", "nosuid", "nodev"} <= set(mount["options"]), mount
    tmp = next(mount for mount in mounts if mount["destination"] == "/tmp")
    assert tmp["type"] == "tmpfs"
    assert {"nosuid", "nodev", "noexec", f"size={LIMITS.tmp_size_bytes}"} <= set(tmp["options"])
    # Parents are mounted before what lies under them.
    for index, destination in enumerate(destinations):
        for later in destinations[index + 1 :]:
            assert not destination.startswith(later + "/"), (destination, later)
    # Every mount point exists in the rootfs, nothing else is in it besides top-level links.
    for destination in destinations:
        inside = staged.path / "rootfs" / destination.lstrip("/")
        assert os.path.lexists(inside), destination


def test_generated_etc_files(staged: StagedBundle):
    etc = staged.path / "etc"
    assert (etc / "passwd").read_text().startswith("root:x:0:0:root:/var/lib/auto_review:")
    assert "127.0.0.1\tlocalhost" in (etc / "hosts").read_text()
    assert "auto-review" in (etc / "hosts").read_text()
    resolv = (etc / "resolv.conf").read_text()
    assert "nameserver" not in resolv
    assert "hosts: files\n" in (etc / "nsswitch.conf").read_text()
    sources = {mount["destination"]: mount["source"] for mount in staged.config["mounts"]}
    for name in ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf"):
        assert sources[f"/etc/{name}"] == f"etc/{name}"  # relative to the bundle


def test_marker_names_the_launcher_and_container(staged: StagedBundle):
    marker = json.loads((staged.path / "launcher.pid").read_text())
    assert marker["pid"] == os.getpid()
    assert marker["container_id"] == staged.container_id
    assert isinstance(marker["start_time"], int)


def test_remove_is_idempotent(staged: StagedBundle):
    staged.remove()
    staged.remove()
    assert not staged.path.exists()


def test_egress_path_that_is_not_a_socket_is_refused(tmp_path: Path):
    regular = tmp_path / "not-a-socket"
    regular.write_text("")
    with pytest.raises(BundleError) as caught:
        stage_bundle(make_request(tmp_path, regular))
    assert caught.value.step == "egress-socket"


def test_interpreter_without_the_package_is_refused(tmp_path: Path, egress_socket: Path):
    request = make_request(
        tmp_path, egress_socket, inner_args=["/usr/bin/python3", "-m", "auto_review"],
        inner_env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    with pytest.raises(BundleError) as caught:
        stage_bundle(request)
    assert caught.value.step == "interpreter"
    assert bundles_in(tmp_path / "run") == []


def test_relative_interpreter_is_refused(tmp_path: Path, egress_socket: Path):
    request = make_request(tmp_path, egress_socket, inner_args=["python3", "-c", "pass"])
    with pytest.raises(BundleError) as caught:
        stage_bundle(request)
    assert caught.value.step == "interpreter"


def test_search_path_binding_the_host_root_is_refused(tmp_path: Path, egress_socket: Path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/"}
    with pytest.raises(BundleError) as caught:
        stage_bundle(make_request(tmp_path, egress_socket, inner_env=env))
    assert caught.value.step == "rootfs"
    assert "too broad" in str(caught.value)


def test_config_bytes_repeat_and_share_the_runtimes_validation_cache(
    tmp_path: Path, egress_socket: Path
):
    oci_root = tmp_path / "oci"
    first = stage_bundle(make_request(tmp_path, egress_socket, oci_root=oci_root))
    second = stage_bundle(make_request(tmp_path, egress_socket, oci_root=oci_root))
    try:
        raw = (first.path / "config.json").read_bytes()
        assert raw == (second.path / "config.json").read_bytes()
        assert first.container_id != second.container_id
        cached = list((oci_root / ".validated").iterdir())
        assert [entry.name for entry in cached] == [hashlib.sha256(raw).hexdigest()]
        assert stat.S_IMODE(oci_root.stat().st_mode) == 0o700
    finally:
        first.remove()
        second.remove()


def test_rootfs_plan_is_cached_until_a_source_changes(
    tmp_path: Path, egress_socket: Path, monkeypatch: pytest.MonkeyPatch
):
    from auto_review.isolation.outer import rootfs

    site = tmp_path / "site"
    (site / "extra").mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}
    first = stage_bundle(make_request(tmp_path, egress_socket, inner_env=env))
    first.remove()
    plans = [entry for entry in (tmp_path / "run").iterdir() if entry.name.startswith("rootfs-")]
    assert len(plans) == 1 and stat.S_IMODE(plans[0].stat().st_mode) == 0o600

    asked: list[str] = []
    real = rootfs.describe_interpreter

    def counting(args: Any, inner_env: Any) -> Any:
        asked.append(args[0])
        return real(args, inner_env)

    monkeypatch.setattr(rootfs, "describe_interpreter", counting)
    again = stage_bundle(make_request(tmp_path, egress_socket, inner_env=env))
    again.remove()
    assert asked == []  # served from the plan
    assert again.binds == first.binds
    other = stage_bundle(make_request(tmp_path, egress_socket, inner_env={**env, "AR_X": "1"}))
    other.remove()
    assert asked == []  # a variable that does not move the search path: same plan
    (site / "new.pth").write_text("")  # the search path changed: ask again
    changed = stage_bundle(make_request(tmp_path, egress_socket, inner_env=env))
    changed.remove()
    assert asked == [sys.executable]


def test_rootless_best_effort_for_an_external_runtime_asks_for_no_cgroup(
    tmp_path: Path, egress_socket: Path
):
    external = stage_bundle(
        make_request(tmp_path, egress_socket, rootless=True, external_runtime=True)
    )
    strict = stage_bundle(
        make_request(tmp_path, egress_socket, rootless=True, external_runtime=True,
                     limits=ResourceLimits(cgroup_best_effort=False))
    )  # fmt: skip
    try:
        assert "resources" not in external.config["linux"]
        assert external.limits["cgroup"] is None
        assert reference_errors(external.config) == []
        # Without best effort the limits stay: the external runtime then refuses to start.
        assert strict.config["linux"]["resources"]["pids"] == {"limit": 256}
        assert strict.limits["cgroup"] == {"memory.limit": 1024**3, "pids.limit": 256}
    finally:
        external.remove()
        strict.remove()
