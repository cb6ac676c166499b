"""Run a test body in a forked child, so kernel restrictions it installs (seccomp, Landlock,
no_new_privs) never reach the pytest process, and read back what the body answered."""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Callable
from typing import Any

from auto_review.oci.errors import StepError

PR_SET_NO_NEW_PRIVS = 38
_libc = ctypes.CDLL(None, use_errno=True)


def fork_and_answer(body: Callable[[], Any]) -> tuple[bytes, int]:
    """The JSON the child wrote (empty if it died first) and its wait status.

    The child answers {"ok": result}, {"step_error": [step, errno, path]} or {"error": repr}.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            answer: Any = {"ok": body()}
        except StepError as exc:
            answer = {"step_error": [exc.step, exc.errno, exc.path]}
        except BaseException as exc:
            answer = {"error": repr(exc)}
        os.write(write_end, json.dumps(answer).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    _, status = os.waitpid(pid, 0)
    return data, status


def set_no_new_privs() -> None:
    assert _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
