"""Locate the shared reference data (real forge payloads, API descriptions, test vectors).

CI clones the repository with the shared folder beside it, so the data lives at
``../shared/reference`` relative to the repository root. When it is missing, tests that
need it fail with a message saying where it was expected, rather than passing vacuously.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


class ReferenceDataMissing(FileNotFoundError):
    """The shared reference data is not where the tests expect it."""


def reference_path(*parts: str) -> Path:
    """A path inside the reference data; it must exist."""
    path = REFERENCE_DIR.joinpath(*parts)
    if not REFERENCE_DIR.is_dir():
        raise ReferenceDataMissing(
            f"shared reference data not found at {REFERENCE_DIR} "
            "(expected ../shared/reference beside the repository root; clone it there)"
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
