"""Readers for the probe's JSON report, shared by the posture and conformance tests."""

from __future__ import annotations

from typing import Any

Report = dict[str, Any]
MOUNT_FLAGS = frozenset({"ro", "rw", "nosuid", "nodev", "noexec"})


def mount_at(report: Report, destination: str) -> dict[str, Any] | None:
    """The mount visible at `destination`: the last one mounted there, or None."""
    found = None
    for mount in report["mounts"]:
        if mount["destination"] == destination:
            found = mount
    return found


def mount_flags(report: Report, destination: str) -> set[str]:
    mount = mount_at(report, destination)
    assert mount is not None, f"nothing mounted at {destination}"
    return set(mount["options"]) & MOUNT_FLAGS


def capabilities(report: Report, kind: str) -> list[str]:
    return sorted(report["security"]["capabilities"][kind])


def path_info(report: Report, path: str) -> dict[str, Any]:
    return report["paths"][path]


def env(report: Report) -> dict[str, str]:
    return report["identity"]["env"]
