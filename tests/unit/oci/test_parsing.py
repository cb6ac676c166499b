"""Pure parsing helpers: mount options, safe joins, capabilities, rlimits, id maps, signals,
and the runc-style command line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from auto_review.oci import capabilities, cli, container, mounts, namespaces, rlimits
from auto_review.oci import syscalls as sc
from auto_review.oci.errors import OciError, SpecError, StepError


def test_mount_options_split_into_flags_propagation_and_data() -> None:
    parsed = mounts.parse_options(["nosuid", "noexec", "mode=755", "size=64k", "rslave", "ro",
                                   "rw"], "mounts[0]")
    assert parsed.flags == sc.MS_NOSUID | sc.MS_NOEXEC
    assert parsed.clear == sc.MS_RDONLY
    assert parsed.propagation == sc.MS_SLAVE | sc.MS_REC
    assert parsed.data == ["mode=755", "size=64k"]
    assert not parsed.bind
    rbind = mounts.parse_options(["rbind", "ro"], "mounts[1]")
    assert rbind.bind and rbind.recursive and rbind.flags == sc.MS_RDONLY


def test_data_options_on_a_bind_mount_are_set_aside() -> None:
    parsed = mounts.parse_options(["rbind", "mode=755", "ro", "size=1m"], "mounts[2]")
    assert parsed.bind and parsed.flags == sc.MS_RDONLY
    assert parsed.data == []
    assert parsed.ignored == ["mode=755", "size=1m"]


def test_an_unknown_word_on_a_bind_mount_is_refused() -> None:
    with pytest.raises(SpecError, match=r"mounts\[2\]: unknown option 'rdonly'"):
        mounts.parse_options(["bind", "mode=755", "rdonly"], "mounts[2]")


def test_ignored_bind_options_are_logged_before_anything_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    from auto_review.oci import spec
    from auto_review.oci.default_spec import default_spec

    config = default_spec()
    config["mounts"].append({"destination": "/data", "source": "/srv", "type": "bind",
                             "options": ["rbind", "mode=755"]})
    with caplog.at_level("DEBUG", logger="auto_review.oci"):
        spec.check_supported(config)
    assert [record.getMessage() for record in caplog.records] == [
        "mounts[6] (/data): ignoring data options of a bind mount: mode=755"]
    config["mounts"][-1]["options"].append("nosuidd")
    with pytest.raises(SpecError, match=r"unknown option 'nosuidd'"):
        spec.check_supported(config)


def test_mount_label_is_added_as_context_where_runc_adds_it() -> None:
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    assert mounts.labelled_data("mode=755", "tmpfs", label) == f'mode=755,context="{label}"'
    assert mounts.labelled_data(None, "devpts", label) == f'context="{label}"'
    for kind in ("proc", "sysfs", "mqueue", "cgroup"):
        assert mounts.labelled_data("x=1", kind, label) == "x=1"
    assert mounts.labelled_data("mode=755", "tmpfs", None) == "mode=755"


def test_mount_label_applies_only_where_selinux_is_enabled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    enforce = tmp_path / "enforce"
    monkeypatch.setattr(mounts, "SELINUX_ENFORCE", str(enforce))
    with caplog.at_level("DEBUG", logger="auto_review.oci"):
        assert mounts.mount_label("l:r:t:s0") is None
        enforce.write_text("1")
        assert mounts.mount_label("l:r:t:s0") == "l:r:t:s0"
    assert [record.getMessage() for record in caplog.records] == [
        "linux.mountLabel 'l:r:t:s0': SELinux is not enabled on this host, ignored",
        "linux.mountLabel 'l:r:t:s0': SELinux is enabled, applied as context= to the "
        "container's file-system mounts",
    ]


def test_existing_device_nodes_and_links_are_kept(tmp_path: Path) -> None:
    """A rootfs that shares the host's /dev (root "/", no /dev mount) must not have its
    nodes replaced or its links followed."""
    from auto_review.oci import devices

    dev = tmp_path / "dev"
    dev.mkdir()
    os.mknod(dev / "null", 0o20666, os.makedev(1, 3))
    os.chmod(dev / "null", 0o666)  # noqa: S103 - the mode /dev/null has
    (dev / "stdin").symlink_to("/proc/self/fd/0")
    before = {name: os.lstat(dev / name) for name in ("null", "stdin")}
    devices.setup_dev(str(tmp_path), [], bind=False)
    for name, info in before.items():
        assert os.lstat(dev / name).st_ino == info.st_ino, name
    assert sorted(p.name for p in dev.iterdir() if " " in p.name) == []
    assert os.readlink(dev / "stdout") == "/proc/self/fd/1"


def test_secure_join_keeps_symlinks_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    (root / "up").symlink_to("../../..")
    assert mounts.secure_join(str(root), "/escape/passwd") == str(root / "etc" / "passwd")
    assert mounts.secure_join(str(root), "/up/x") == str(root / "x")
    assert mounts.secure_join(str(root), "/../../x/./y") == str(root / "x" / "y")
    (root / "loop").symlink_to("loop")
    with pytest.raises(StepError) as caught:
        mounts.secure_join(str(root), "/loop/x")
    assert caught.value.errno == errno.ELOOP


def test_capability_names_become_masks_and_unknown_names_fail() -> None:
    masks = capabilities.parse({"bounding": ["CAP_KILL", "CAP_CHOWN"], "ambient": []})
    assert masks["bounding"] == (1 << 5) | (1 << 0)
    assert masks["effective"] == 0
    with pytest.raises(StepError) as caught:
        capabilities.parse({"effective": ["CAP_FLY"]})
    assert (caught.value.step, caught.value.errno, caught.value.path) == (
        "capabilities", errno.EINVAL, "CAP_FLY")


def test_capabilities_outside_the_held_bounding_set_are_named() -> None:
    masks = capabilities.parse({"bounding": ["CAP_KILL", "CAP_SYS_RESOURCE"],
                                "ambient": ["CAP_BPF"]})
    held = (1 << capabilities.NUMBERS["CAP_KILL"]) | (1 << capabilities.NUMBERS["CAP_CHOWN"])
    with pytest.raises(StepError) as caught:
        capabilities.check_held(masks, held)
    assert (caught.value.step, caught.value.errno) == ("capabilities", errno.EPERM)
    assert caught.value.path == "CAP_SYS_RESOURCE,CAP_BPF (not in the runtime's bounding set)"
    capabilities.check_held(capabilities.parse({"effective": ["CAP_KILL"]}), held)


def test_capability_table_matches_the_kernel() -> None:
    assert capabilities.last_cap() <= len(capabilities.NAMES) - 1
    assert capabilities.NUMBERS["CAP_SYS_ADMIN"] == 21
    assert capabilities.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40


def test_rlimits_parse_and_reject_unknown() -> None:
    assert rlimits.parse([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]) == [
        ("RLIMIT_NOFILE", 7, 10, 20)]
    with pytest.raises(StepError, match="RLIMIT_BOGUS"):
        rlimits.parse([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}])


def test_id_maps_default_to_the_callers_id() -> None:
    assert namespaces.default_mappings(None, 1234) == [
        {"containerID": 0, "hostID": 1234, "size": 1}]
    given = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert namespaces.default_mappings(given, 1) == given
    assert namespaces.format_map([*given, {"containerID": 70000, "hostID": 5, "size": 1}]) == (
        b"0 100000 65536\n70000 5 1\n")


def test_namespace_plan_separates_new_and_joined() -> None:
    plan = namespaces.NamespacePlan([{"type": "mount"}, {"type": "network", "path": "/x"},
                                     {"type": "user"}, {"type": "pid"}])
    assert plan.new_user and plan.in_user_namespace
    assert plan.join == [("network", "/x")]
    assert plan.new_flags == sc.CLONE_NEWNS | sc.CLONE_NEWPID


def test_missing_namespace_path_fails_before_fork() -> None:
    plan = namespaces.NamespacePlan([{"type": "network", "path": "/nonexistent/netns"}])
    with pytest.raises(StepError) as caught:
        plan.open_join_paths()
    assert caught.value.step == "namespace-network"
    assert caught.value.errno == errno.ENOENT


def test_signal_names_and_numbers() -> None:
    assert container.parse_signal("TERM") == 15
    assert container.parse_signal("SIGKILL") == 9
    assert container.parse_signal("kill") == 9
    assert container.parse_signal("10") == 10
    assert container.parse_signal(2) == 2
    with pytest.raises(OciError, match="unknown signal"):
        container.parse_signal("SIGNOPE")


def test_container_ids_are_checked() -> None:
    container.check_id("abc-1.2_3+x")
    for bad in ("", "../x", "a/b", "-x", "x" * 129):
        with pytest.raises(OciError, match="invalid container id"):
            container.check_id(bad)


def test_cli_parses_runc_shapes() -> None:
    assert cli._parse(["--root", "/r", "run", "-b", "/b", "--pid-file=p", "--detach", "x"]) == (
        "run", {"root": "/r", "bundle": "/b", "pid_file": "p", "detach": True}, ["x"])
    assert cli._parse(["kill", "x", "KILL"]) == ("kill", {}, ["x", "KILL"])
    assert cli._parse(["delete", "--force", "x"]) == ("delete", {"force": True}, ["x"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["start"], "wrong number"),
        (["frob", "x"], "unknown command"),
        (["start", "--force", "x"], "not valid for start"),
        (["run", "--root", "/r", "x"], "global option"),
        (["run", "--bundle"], "needs a value"),
        (["--bogus", "run", "x"], "unknown option"),
    ],
)
def test_cli_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(cli.UsageError, match=message):
        cli._parse(argv)


def test_cli_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    assert cli.main(["--root", str(tmp_path), "state", "nope"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "container nope does not exist" in error


def test_cli_spec_writes_config_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["spec", "--rootless", "--bundle", str(tmp_path)]) == 0
    text = (tmp_path / "config.json").read_text()
    assert f'"hostID": {os.geteuid()}' in text
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err


def test_default_state_root_for_non_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert container.state_root(None) == str(tmp_path / "auto-review-oci")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    with pytest.raises(OciError, match="no state root"):
        container.state_root(None)


def test_state_records_round_trip(tmp_path: Path) -> None:
    record = {"id": "x", "pid": 12, "ok": True, "none": None, "ratio": 0.5,
              "text": 'quote " backslash \\ tab \t newline \n del \x7f é ✓',
              "odd": "name-\udcff", "nested": {"list": [1, "two", [], {}]}}
    (tmp_path / "x").mkdir()
    path = tmp_path / "x" / container.STATE_FILE
    container.write_record(str(path), record)
    assert path.stat().st_mode & 0o777 == 0o600
    assert container.read_record(str(tmp_path), "x") == record
    path.chmod(0o666)  # a record others could have written is not trusted
    with pytest.raises(OciError, match="not written by this user"):
        container.read_record(str(tmp_path), "x")
    path.write_bytes(b"junk")
    path.chmod(0o600)
    with pytest.raises(OciError, match="unreadable state"):
        container.read_record(str(tmp_path), "x")
