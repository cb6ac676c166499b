"""The inner interpreter's explicit search path: what site would add, without running any
.pth code, and an interpreter started with it imports the gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from auto_review.isolation.outer.inner_path import (
    INNER_INTERPRETER_OPTIONS,
    explicit_search_path,
    inner_interpreter_args,
    inner_python_path,
    package_root,
    pth_directories,
)


def make_site(tmp_path: Path) -> tuple[Path, Path, Path]:
    site_dir = tmp_path / "site-packages"
    named = tmp_path / "named-by-pth"
    marker = tmp_path / "pth-code-ran"
    for directory in (site_dir, named, site_dir / "relative"):
        directory.mkdir()
    (site_dir / "a-paths.pth").write_text(
        f"# a comment\n\n{named}\nrelative\n{tmp_path / 'missing'}\n"
    )
    (site_dir / "b-code.pth").write_text(
        f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n"
    )
    return site_dir, named, marker


def test_pth_paths_are_kept_and_import_lines_are_not_run(tmp_path: Path):
    site_dir, named, marker = make_site(tmp_path)
    assert pth_directories(str(site_dir)) == [str(named), str(site_dir / "relative")]
    assert not marker.exists()


def test_search_path_order_uniqueness_and_existence(tmp_path: Path):
    site_dir, named, _ = make_site(tmp_path)
    extra = tmp_path / "extra"
    extra.mkdir()
    python_path = os.pathsep.join(
        [str(extra), "relative-entry", str(tmp_path / "gone"), str(extra)]
    )
    found = explicit_search_path(python_path, [str(site_dir)], str(named))
    assert found == [str(extra), str(site_dir), str(named), str(site_dir / "relative")]


def test_package_root_is_always_on_the_path(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    assert explicit_search_path("", [], str(root)) == [str(root)]


def test_hermetic_inner_interpreter_imports_the_gateway_without_site(tmp_path: Path):
    args = inner_interpreter_args("auto_review.isolation.inner.entry")
    assert args[0] == sys.executable
    assert args[1:3] == list(INNER_INTERPRETER_OPTIONS)
    probe = (
        "import sys, auto_review.gateway.service, auto_review.isolation.inner.entry; "
        "print('site' in sys.modules, sys.flags.no_site, sys.flags.safe_path)"
    )
    completed = subprocess.run(
        [sys.executable, *INNER_INTERPRETER_OPTIONS, "-c", probe],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": inner_python_path()},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["False", "1", "True"]
    assert package_root() in inner_python_path().split(os.pathsep)
