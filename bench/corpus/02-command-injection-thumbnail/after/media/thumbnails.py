"""Thumbnails for uploaded images, made with ImageMagick."""

from __future__ import annotations

import subprocess
from pathlib import Path

THUMBNAIL_SIZE = "256x256"


def make_thumbnail(source: Path, target: Path, size: str = THUMBNAIL_SIZE) -> Path:
    command = f"convert '{source}' -thumbnail {size} '{target}'"
    subprocess.run(command, shell=True, check=True, timeout=30)
    return target
