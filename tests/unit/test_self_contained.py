"""The repository tests itself: no test or bench reads data from outside it.

The reference data lives in ``tests/reference`` with its sources and licences. These
tests scan the test and bench sources for paths that leave the repository, and check that
every reference folder says where its files came from. ``.ci/run`` also runs the suite
from a lone copy of the repository, which is the end-to-end proof.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.reference import REFERENCE_DIR, REPO_ROOT

# Ways a path can leave the repository: the old sibling folder beside the checkout, an
# absolute path into the workspace above it, or a parent of the repository root. The
# names are assembled so that this file does not itself hold such a path.
SIBLING = "sha" + "red"
WORKSPACE = "/" + "work" + "/"
ROOT_PARENT = "REPO_ROOT" + ".parent"
OUTSIDE_PATTERNS = (
    re.compile("[\"']" + re.escape(WORKSPACE)),
    re.compile(SIBLING + "[\"']?\\s*/\\s*[\"']?reference"),
    re.compile(re.escape("../" + SIBLING)),
    re.compile(re.escape(ROOT_PARENT) + r"\b"),
)


def paths_leaving_the_repository(root: Path) -> list[str]:
    """``file:line`` for every source line under ``root`` that names a path outside it."""
    offenders = []
    for source in sorted(root.rglob("*.py")):
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if any(pattern.search(line) for pattern in OUTSIDE_PATTERNS):
                offenders.append(f"{source.relative_to(root)}:{number}: {line.strip()}")
    return offenders


def test_no_test_or_bench_reads_outside_the_repository() -> None:
    offenders = paths_leaving_the_repository(REPO_ROOT / "tests")
    offenders += paths_leaving_the_repository(REPO_ROOT / "bench")
    assert offenders == []


def test_the_scan_finds_a_path_outside_the_repository(tmp_path: Path) -> None:
    absolute = f'A = Path("{WORKSPACE}{SIBLING}/reference/oci")'
    sibling = f'B = {ROOT_PARENT} / "{SIBLING}" / "reference"'
    relative = f'D = open("../{SIBLING}/x.json")'
    (tmp_path / "test_x.py").write_text(
        f'{absolute}\n{sibling}\nC = REPO_ROOT / "tests" / "reference"\n{relative}\n'
    )
    assert paths_leaving_the_repository(tmp_path) == [
        f"test_x.py:1: {absolute}",
        f"test_x.py:2: {sibling}",
        f"test_x.py:4: {relative}",
    ]


def test_reference_data_is_inside_the_repository_with_sources_and_licences() -> None:
    assert REFERENCE_DIR.is_relative_to(REPO_ROOT)
    folders = sorted(p for p in REFERENCE_DIR.iterdir() if p.is_dir())
    assert [p.name for p in folders] == ["cyclonedx", "forge", "github", "llm", "oci"]
    for folder in folders:
        names = {p.name for p in folder.rglob("*") if p.is_file()}
        assert names & {"SOURCES.md", "README.md"}, f"{folder.name}: no provenance file"
        assert any(name.startswith("LICENSE") for name in names), f"{folder.name}: no licence"
