"""Stale bundle cleanup: dead launchers' bundles go, live ones stay, pid reuse is caught."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from auto_review.isolation.outer.stale import (
    MARKER_NAME,
    launcher_alive,
    process_start_time,
    read_marker,
    remove_stale_bundles,
    write_marker,
)


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def make_bundle(runtime_dir: Path, name: str, marker: dict | None) -> Path:
    bundle = runtime_dir / name
    (bundle / "rootfs" / "etc").mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    if marker is not None:
        (bundle / MARKER_NAME).write_text(json.dumps(marker))
    return bundle


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def test_start_time_of_this_process_and_of_a_dead_one():
    own = process_start_time(os.getpid())
    assert isinstance(own, int) and own > 0
    assert process_start_time(dead_pid()) is None


def test_marker_round_trip(tmp_path: Path):
    written = write_marker(tmp_path, "auto-review-1-ab")
    assert read_marker(tmp_path) == written
    assert written.pid == os.getpid()
    assert (tmp_path / MARKER_NAME).stat().st_mode & 0o777 == 0o600


def test_launcher_alive_checks_start_time():
    own = process_start_time(os.getpid())
    assert launcher_alive(os.getpid(), own) is True
    assert launcher_alive(os.getpid(), (own or 0) + 1) is False  # pid reused
    assert launcher_alive(dead_pid(), None) is False


def test_dead_launchers_bundle_is_removed_live_ones_stay(runtime_dir: Path, tmp_path: Path):
    own = {"pid": os.getpid(), "start_time": process_start_time(os.getpid()),
           "container_id": "auto-review-live"}  # fmt: skip
    live = make_bundle(runtime_dir, f"bundle-{os.getpid()}-aaaa", own)
    gone = dead_pid()
    dead_marker = {"pid": gone, "start_time": 1, "container_id": "auto-review-dead"}
    dead = make_bundle(runtime_dir, f"bundle-{gone}-bbbb", dead_marker)
    reused = make_bundle(runtime_dir, f"bundle-{os.getpid()}-cccc",
                         {**own, "start_time": own["start_time"] + 7})  # fmt: skip
    removed = remove_stale_bundles(runtime_dir, oci_root=tmp_path / "oci")
    assert sorted(removed) == sorted([dead, reused])
    assert live.is_dir() and not dead.exists() and not reused.exists()


def test_bundle_without_marker_is_judged_by_the_pid_in_its_name(runtime_dir: Path, tmp_path: Path):
    live = make_bundle(runtime_dir, f"bundle-{os.getpid()}-dddd", None)
    dead = make_bundle(runtime_dir, f"bundle-{dead_pid()}-eeee", None)
    removed = remove_stale_bundles(runtime_dir, oci_root=tmp_path / "oci")
    assert removed == [dead]
    assert live.is_dir()


def test_other_entries_are_left_alone(runtime_dir: Path, tmp_path: Path):
    gone = dead_pid()
    marker = {"pid": gone, "start_time": 1, "container_id": "x"}
    unrelated = make_bundle(runtime_dir, "something-else", marker)
    target = make_bundle(tmp_path, f"bundle-{gone}-ffff", marker)
    link = runtime_dir / f"bundle-{gone}-link"
    link.symlink_to(target)
    foreign = None
    if os.geteuid() == 0:
        foreign = make_bundle(runtime_dir, f"bundle-{gone}-0000", marker)
        os.chown(foreign, 65534, 65534)
    assert remove_stale_bundles(runtime_dir, oci_root=tmp_path / "oci") == []
    assert unrelated.is_dir() and target.is_dir() and link.is_symlink()
    assert foreign is None or foreign.is_dir()


def test_missing_runtime_dir_is_nothing_to_do(tmp_path: Path):
    assert remove_stale_bundles(tmp_path / "absent", oci_root=tmp_path / "oci") == []
