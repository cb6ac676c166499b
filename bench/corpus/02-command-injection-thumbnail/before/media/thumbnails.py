"""Thumbnails for uploaded images, made with ImageMagick."""

from __future__ import annotations

import subprocess
from pathlib import Path

THUMBNAIL_SIZE = "256x256"


def make_thumbnail(source: Path, target: Path) -> Path:
    subprocess.run(
        ["convert", str(source), "-thumbnail", THUMBNAIL_SIZE, str(target)],
        check=True,
        timeout=30,
    )
    return target
