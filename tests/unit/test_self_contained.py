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

# Ways a path can leave the repository: the old sibling folder, an absolute path into the
# workspace above it, or a parent of the repository root.
OUTSIDE_PATTERNS = (
    re.compile(r"""["']/work/"""),
    re.compile(r"""shared["']?\s*/\s*["']?reference"""),
    re.compile(r"""\.\./shared"""),
    re.compile(r"""REPO_ROOT\.parent\b"""),
)


def paths_leaving_the_repository(root: Path) -> list[str]:
    """``file:line`` for every source line under ``root`` that names a path outside it."""
    offenders = []
    for source in sorted(root.rglob("*.py")):
        if source.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if any(pattern.search(line) for pattern in OUTSIDE_PATTERNS):
                offenders.append(f"{source.relative_to(root)}:{number}: {line.strip()}")
    return offenders


def test_no_test_or_bench_reads_outside_the_repository() -> None:
    offenders = paths_leaving_the_repository(REPO_ROOT / "tests")
    offenders += paths_leaving_the_repository(REPO_ROOT / "bench")
    assert offenders == []


def test_the_scan_finds_a_path_outside_the_repository(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        'A = Path("/work/shared/reference/oci")\n'
        'B = REPO_ROOT.parent / "shared" / "reference"\n'
        'C = REPO_ROOT / "tests" / "reference"\n'
    )
    assert paths_leaving_the_repository(tmp_path) == [
        'test_x.py:1: A = Path("/work/shared/reference/oci")',
        'test_x.py:2: B = REPO_ROOT.parent / "shared" / "reference"',
    ]


def test_reference_data_is_inside_the_repository_with_sources_and_licences() -> None:
    assert REFERENCE_DIR.is_relative_to(REPO_ROOT)
    folders = sorted(p for p in REFERENCE_DIR.iterdir() if p.is_dir())
    assert [p.name for p in folders] == ["forge", "github", "llm", "oci"]
    for folder in folders:
        names = {p.name for p in folder.rglob("*") if p.is_file()}
        assert names & {"SOURCES.md", "README.md"}, f"{folder.name}: no provenance file"
        assert any(name.startswith("LICENSE") for name in names), f"{folder.name}: no licence"
