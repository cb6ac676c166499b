"""Bundles of launchers that died: found by their ``launcher.pid`` marker and removed.

The marker records the launcher's pid, its start time (field 22 of ``/proc/<pid>/stat``,
clock ticks since boot) and the container id. A pid that is alive but started at another
time belongs to a different process (pid reuse): that launcher is dead too. Any state the
embedded runtime still keeps for the container is deleted with ``delete --force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

MARKER_NAME = "launcher.pid"
BUNDLE_PREFIX = "bundle-"


@dataclass(frozen=True, slots=True)
class LauncherMarker:
    pid: int
    start_time: int
    container_id: str


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 overall; fields[0] is field 3


def write_marker(bundle_dir: Path, container_id: str) -> LauncherMarker:
    start_time = process_start_time(os.getpid())
    if start_time is None:  # pragma: no cover - /proc/self always exists on Linux
        raise OSError("cannot read /proc/self/stat")
    marker = LauncherMarker(os.getpid(), start_time, container_id)
    data = json.dumps(
        {"pid": marker.pid, "start_time": marker.start_time, "container_id": container_id}
    )
    path = bundle_dir / MARKER_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(data)
    return marker


def read_marker(bundle_dir: Path) -> LauncherMarker | None:
    try:
        with open(bundle_dir / MARKER_NAME, encoding="utf-8") as handle:
            document = json.load(handle)
        return LauncherMarker(
            int(document["pid"]), int(document["start_time"]), str(document["container_id"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def launcher_alive(pid: int, start_time: int | None) -> bool:
    """Whether the process is alive and (when given) started at ``start_time``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


def _pid_from_name(name: str) -> int | None:
    parts = name[len(BUNDLE_PREFIX) :].split("-")
    return int(parts[0]) if parts and parts[0].isdigit() else None


def _owned_bundle_dirs(runtime_dir: Path) -> list[Path]:
    try:
        entries = list(os.scandir(runtime_dir))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if not entry.name.startswith(BUNDLE_PREFIX):
            continue
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            found.append(Path(entry.path))
    return found


def _delete_container(container_id: str, oci_root: Path | None) -> None:
    from auto_review.oci import api
    from auto_review.oci.errors import OciError

    # OciError: nothing recorded for it (never created, or already removed).
    with contextlib.suppress(OciError):
        api.delete(container_id, root=oci_root, force=True)


def remove_stale_bundles(runtime_dir: Path, *, oci_root: Path | None = None) -> list[Path]:
    """Remove the bundles (and embedded-runtime state) of launchers that are gone.

    ``oci_root`` is the embedded runtime's state root (its default when None). Only
    directories owned by the caller are considered. Returns the bundles removed.
    """
    removed = []
    for bundle in _owned_bundle_dirs(Path(runtime_dir)):
        marker = read_marker(bundle)
        if marker is not None:
            if launcher_alive(marker.pid, marker.start_time):
                continue
            _delete_container(marker.container_id, oci_root)
        else:
            # No marker: the launcher died between mkdir and writing it (it writes it first).
            pid = _pid_from_name(bundle.name)
            if pid is not None and launcher_alive(pid, None):
                continue
        shutil.rmtree(bundle, ignore_errors=True)
        if not bundle.exists():
            removed.append(bundle)
    return removed
