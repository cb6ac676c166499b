"""OCI hooks: each runs with the container state JSON on its stdin.

A hook that cannot be started, exits non-zero or outlives its timeout raises
``StepError("hook-<phase>", errno, "<path> ...")``: ENOENT/EACCES from execve,
ETIMEDOUT for a timeout, ECANCELED for a non-zero exit status (the status is in the path
field). The caller decides whether that is fatal (prestart, createRuntime, createContainer,
startContainer) or only a warning (poststart, poststop), as the runtime spec says.
"""

from __future__ import annotations

import errno
import sys

from auto_review.oci.errors import StepError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
          "poststop")


def run_hooks(phase: str, hooks: list[dict[str, Any]] | None, state: dict[str, Any]) -> None:
    if not hooks:
        return
    import json
    import subprocess

    payload = json.dumps(state).encode()
    for hook in hooks:
        path = hook["path"]
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
        try:
            completed = subprocess.run(args, executable=path, input=payload, env=env,
                                       timeout=hook.get("timeout"), close_fds=True,
                                       check=False)
        except subprocess.TimeoutExpired as exc:
            raise StepError(f"hook-{phase}", errno.ETIMEDOUT, path) from exc
        except OSError as exc:
            raise StepError(f"hook-{phase}", exc.errno or errno.ENOEXEC, path) from exc
        if completed.returncode != 0:
            raise StepError(f"hook-{phase}", errno.ECANCELED,
                            f"{path} (exit status {completed.returncode})")


def run_hooks_warn(phase: str, hooks: list[dict[str, Any]] | None,
                   state: dict[str, Any]) -> None:
    """For poststart and poststop: a failure is reported on stderr and does not stop."""
    try:
        run_hooks(phase, hooks, state)
    except StepError as exc:
        print(f"warning: {exc.one_line()}", file=sys.stderr)
