"""The rootfs plan: interpreter layout, library closure, bind minimisation, mount points."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

import auto_review
from auto_review.isolation.outer.rootfs import (
    Bind,
    BundleError,
    canonical,
    describe_interpreter,
    interpreter_options,
    library_binds,
    minimal_binds,
    prepare_rootfs,
    read_only_binds,
    shared_libraries,
)


def test_interpreter_options_stop_at_the_module_or_code():
    assert interpreter_options(["/py", "-s", "-X", "dev", "-m", "x", "-s"]) == ["-s", "-X", "dev"]
    assert interpreter_options(["/py", "-c", "pass"]) == []
    assert interpreter_options(["/py", "-I", "script.py", "-B"]) == ["-I"]


def test_canonical_resolves_directories_but_keeps_the_name(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "file").write_text("")
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "real" / "alias").symlink_to("file")
    assert canonical(str(tmp_path / "link" / "alias")) == str(tmp_path / "real" / "alias")


def test_default_interpreter_layout_finds_the_package():
    layout = describe_interpreter([sys.executable, "-m", "auto_review"], dict(os.environ))
    package_root = os.path.dirname(os.path.dirname(os.path.realpath(auto_review.__file__)))
    assert os.path.realpath(layout.package_root) == package_root
    assert layout.executable == sys.executable
    assert all(os.path.isabs(entry) for entry in layout.search_path)
    assert layout.certifi_bundle is not None and layout.certifi_bundle.endswith(".pem")


def test_interpreter_that_cannot_run_is_refused(tmp_path: Path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o700)
    with pytest.raises(BundleError) as caught:
        describe_interpreter([str(fake), "-c", "pass"], {})
    assert caught.value.step == "interpreter"
    assert "exit 3" in str(caught.value)


def test_shared_libraries_of_python_and_git():
    libraries = shared_libraries([os.path.realpath(sys.executable), "/usr/bin/git"])
    names = {os.path.basename(path) for path in libraries}
    assert any(name.startswith("libc.so") for name in names)
    assert any(name.startswith("ld-linux") for name in names)
    assert any(name.startswith("libz.so") for name in names)  # git's
    assert all(os.path.isabs(path) for path in libraries)


def test_missing_library_is_reported(tmp_path: Path):
    # A copy of git whose loader path is fine but with a library the host lacks.
    import shutil

    binary = tmp_path / "tool"
    shutil.copy("/usr/bin/git", binary)
    data = bytearray(binary.read_bytes())
    index = data.find(b"libz.so.1\x00")
    assert index > 0
    data[index : index + 9] = b"libq.so.9"
    binary.write_bytes(bytes(data))
    binary.chmod(0o755)
    with pytest.raises(BundleError) as caught:
        shared_libraries([str(binary)])
    assert caught.value.step == "libraries"
    assert "libq.so.9" in str(caught.value)


def test_library_binds_take_the_c_library_directory_whole():
    libraries = shared_libraries(["/usr/bin/git"])
    binds = minimal_binds(library_binds(libraries))
    libc = next(lib for lib in libraries if os.path.basename(lib).startswith("libc.so"))
    library_dir = os.path.dirname(os.path.realpath(libc))
    assert Bind(library_dir, library_dir) in binds
    # Everything else ldd named is either in that directory or bound on its own.
    destinations = {bind.destination for bind in binds}
    for lib in libraries:
        path = canonical(lib)
        assert path.startswith(library_dir + "/") or path in destinations, lib


def test_minimal_binds_drop_covered_and_order_parents_first(tmp_path: Path):
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "file").write_text("")
    (tmp_path / "other").mkdir()
    top = str(tmp_path / "dir")
    inner = str(tmp_path / "dir" / "sub" / "file")
    elsewhere = Bind(str(tmp_path / "other"), top + "/sub/mounted")
    binds = minimal_binds([Bind(inner, inner), elsewhere, Bind(top, top), Bind(top, top)])
    assert binds == [Bind(top, top), elsewhere]


def test_minimal_binds_refuse_two_sources_for_one_destination(tmp_path: Path):
    with pytest.raises(BundleError) as caught:
        minimal_binds([Bind("/usr/bin/git", "/x"), Bind("/usr/bin/env", "/x")])
    assert caught.value.step == "rootfs"


def test_read_only_binds_cover_git_and_certificates():
    layout = describe_interpreter([sys.executable, "-c", "pass"], dict(os.environ))
    binds, watched = read_only_binds(layout)
    assert {bind.source for bind in binds} <= set(watched)
    destinations = {bind.destination for bind in binds}
    assert {"/usr/bin/git", "/etc/ssl/certs"} <= destinations
    assert not any(bind.writable for bind in binds)
    certs = next(bind for bind in binds if bind.destination == "/etc/ssl/certs")
    assert certs.executable is False


def test_prepare_rootfs_makes_private_mount_points_and_links(tmp_path: Path):
    rootfs = tmp_path / "rootfs"
    prepare_rootfs(
        str(rootfs),
        {"/usr/lib/x": True, "/lib64/ld.so": False, "/etc/passwd": False},
        {"lib64": "usr/lib64", "bin": "usr/bin"},
    )
    assert os.readlink(rootfs / "lib64") == "usr/lib64"
    # A destination through a top-level link lands in the link's target, inside the rootfs.
    assert (rootfs / "usr" / "lib64" / "ld.so").is_file()
    assert (rootfs / "usr" / "lib" / "x").is_dir()
    for path in (rootfs, rootfs / "usr", rootfs / "usr" / "lib", rootfs / "etc"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE((rootfs / "etc" / "passwd").stat().st_mode) == 0o600


def test_prepare_rootfs_refuses_dot_dot(tmp_path: Path):
    with pytest.raises(BundleError):
        prepare_rootfs(str(tmp_path / "rootfs"), {"/etc/../../escape": False}, {})
    assert not (tmp_path / "escape").exists()
