"""Import of theme bundles uploaded by site administrators."""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

THEMES = Path("/var/lib/site/themes")


def read_manifest(bundle_dir: Path) -> dict[str, str]:
    with (bundle_dir / "theme.json").open(encoding="utf-8") as handle:
        manifest = json.load(handle)
    if not isinstance(manifest, dict) or "name" not in manifest:
        raise ValueError("theme.json must be an object with a name")
    return manifest


def import_bundle(upload: Path) -> Path:
    """Unpack an uploaded .tar.gz theme bundle and install it under THEMES."""
    staging = Path(tempfile.mkdtemp(prefix="theme-", dir=THEMES))
    with tarfile.open(upload, mode="r:gz") as archive:
        archive.extractall(staging)
    manifest = read_manifest(staging)
    target = THEMES / manifest["name"]
    staging.rename(target)
    return target
