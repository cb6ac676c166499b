"""Environment for test-side git commands: no user or system config, a fixed identity."""

from __future__ import annotations

from pathlib import Path


def isolated_git_env(home: Path, *, path: str) -> dict[str, str]:
    """Only ``PATH`` and ``HOME`` from outside; git reads no system or global config and
    commits as a fixed author, so what a test builds does not depend on the machine."""
    return {
        "PATH": path,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
