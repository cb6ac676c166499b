"""Locate the reference data (real forge payloads, API descriptions, test vectors).

The data lives in the repository at ``tests/reference`` (sources and licences in its
README), so a plain clone tests itself. When a file is missing, tests that need it fail
with a message naming the path, rather than passing vacuously.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_ROOT / "tests" / "reference"


class ReferenceDataMissing(FileNotFoundError):
    """The reference data is not where the tests expect it."""


def reference_path(*parts: str) -> Path:
    """A path inside the reference data; it must exist."""
    path = REFERENCE_DIR.joinpath(*parts)
    if not REFERENCE_DIR.is_dir():
        raise ReferenceDataMissing(
            f"reference data not found at {REFERENCE_DIR} "
            "(expected tests/reference in the repository; restore it from git)"
        )
    if not path.exists():
        raise ReferenceDataMissing(f"reference file or folder missing: {path}")
    return path


def reference_json_files(*parts: str) -> list[Path]:
    """Every *.json file under a reference folder, sorted; an empty folder is an error."""
    folder = reference_path(*parts)
    files = sorted(p for p in folder.rglob("*.json") if p.is_file())
    if not files:
        raise ReferenceDataMissing(f"no JSON files under {folder}")
    return files


def load_json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))
