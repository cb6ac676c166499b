"""The single file's unpacked runtime (its cache entry) is checked again before the bundle
binds it: a directory of this user's that nobody else can write, else one line naming the
path. The checks the file's own script makes on every start: tests/unit/test_single_file.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from auto_review.isolation.outer import frozen
from auto_review.isolation.outer.rootfs import (
    BundleError,
    frozen_layout,
    is_single_file,
    plan_read_only_binds,
)


def private_dir(tmp_path: Path) -> Path:
    home = tmp_path / "0.1.0-0123456789abcdef"
    home.mkdir(mode=0o700)
    return home


def test_a_private_directory_of_this_user_is_accepted(tmp_path: Path) -> None:
    frozen.check_unpacked_dir(str(private_dir(tmp_path)))


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    home = private_dir(tmp_path)
    home.chmod(mode)
    with pytest.raises(frozen.UnpackedRuntimeError) as raised:
        frozen.check_unpacked_dir(str(home))
    assert str(raised.value) == (
        f"unpacked runtime {home} is writable by group or others (mode {mode:04o})"
    )


def test_a_directory_another_user_owns_is_refused(tmp_path: Path) -> None:
    home = private_dir(tmp_path)
    with pytest.raises(frozen.UnpackedRuntimeError) as raised:
        frozen.check_unpacked_dir(str(home), uid=os.geteuid() + 4242)
    assert str(raised.value) == (
        f"unpacked runtime {home} is owned by uid {os.geteuid()}, not {os.geteuid() + 4242}"
    )


def test_a_parent_others_can_write_without_the_sticky_bit_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    home = private_dir(parent)
    parent.chmod(0o777)
    with pytest.raises(frozen.UnpackedRuntimeError) as raised:
        frozen.check_unpacked_dir(str(home))
    assert str(raised.value) == (
        f"unpacked runtime {home} is in {parent}, which group or others can write without "
        "the sticky bit (mode 0777)"
    )
    parent.chmod(0o1777)  # as /tmp: others may not rename what is not theirs
    frozen.check_unpacked_dir(str(home))


def test_a_link_or_a_missing_path_is_refused(tmp_path: Path) -> None:
    home = private_dir(tmp_path)
    link = tmp_path / "entry-link"
    link.symlink_to(home)
    with pytest.raises(frozen.UnpackedRuntimeError, match="is not a directory"):
        frozen.check_unpacked_dir(str(link))
    with pytest.raises(frozen.UnpackedRuntimeError, match="No such file or directory"):
        frozen.check_unpacked_dir(str(tmp_path / "gone"))


def test_frozen_the_bundle_runs_the_entrys_program_from_its_checked_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The single file's script ran the cache entry's executable and named the file.
    home = private_dir(tmp_path)
    executable = home / "auto-review"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(home / "_internal"), raising=False)
    monkeypatch.setattr(sys, "executable", str(executable))
    monkeypatch.setenv(frozen.SINGLE_FILE_VARIABLE, "/usr/local/bin/auto-review")
    assert frozen.single_file() == "/usr/local/bin/auto-review"
    assert frozen.unpacked_dir() == str(home)
    args = frozen.inner_args()
    assert args == [str(executable), frozen.INNER_COMMAND]
    assert is_single_file(args)
    layout = frozen_layout(args[0])
    assert (layout.search_path, layout.package_root) == ((str(home),), str(home))
    home.chmod(0o777)
    with pytest.raises(BundleError) as raised:
        frozen_layout(args[0])
    assert str(raised.value) == (
        f"bundle staging failed: step=interpreter: unpacked runtime {home} is writable by "
        "group or others (mode 0777)"
    )
    monkeypatch.delenv(frozen.SINGLE_FILE_VARIABLE)
    assert frozen.single_file() == str(executable)  # the entry's program run directly


def test_the_entry_is_checked_at_every_launch_even_with_a_cached_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    home = private_dir(cache)
    (home / "auto-review").write_bytes(b"")  # stands in for the entry's executable
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(home / "_internal"), raising=False)
    monkeypatch.setattr(sys, "executable", str(home / "auto-review"))
    plans = tmp_path / "plans"
    plans.mkdir(mode=0o700)
    args, env = frozen.inner_args(), {"PATH": "/usr/bin:/bin"}
    binds = plan_read_only_binds(args, env, str(plans))
    assert [b for b in binds if b.source == str(home)]  # the entry, bound read-only
    assert len(list(plans.iterdir())) == 1  # the plan is cached
    cache.chmod(0o777)  # the entry itself unchanged: its plan's fingerprint still holds
    with pytest.raises(BundleError, match=f"unpacked runtime {home} is in {cache}, which"):
        plan_read_only_binds(args, env, str(plans))
