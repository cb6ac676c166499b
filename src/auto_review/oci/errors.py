"""Errors of the embedded OCI runtime.

Every failure that happens while a container is being set up is reported as the step
that failed, the errno the kernel returned and the path involved, so the caller can print
one precise line (``step=mount errno=ENOENT path=/proc``) without guessing.
"""

from __future__ import annotations

import errno as errno_module
import os


class OciError(Exception):
    """Any error of the embedded runtime (bad spec, bad state, failed step)."""


class SpecError(OciError):
    """The bundle's config.json is invalid or asks for something unsupported."""


class StateError(OciError):
    """A lifecycle operation is not allowed in the container's current state."""


class StepError(OciError):
    """A container setup step failed with an errno, possibly inside the child."""

    def __init__(self, step: str, errno: int, path: str = "") -> None:
        self.step = step
        self.errno = errno
        self.path = path
        super().__init__(self.one_line())

    def one_line(self) -> str:
        name = errno_module.errorcode.get(self.errno, str(self.errno))
        text = f"container setup failed: step={self.step} errno={name} ({os.strerror(self.errno)})"
        if self.path:
            text += f" path={self.path}"
        return text
