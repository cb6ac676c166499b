"""Host requirements of kernel tests: a missing one fails the test loudly, never skips it.

The suite runs as root on hosts with hybrid cgroups (CI does); a run where a requirement is
missing is a misconfigured run, and a skip would hide the feature it was meant to check.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

Test = TypeVar("Test", bound=Callable[..., Any])


def require(condition: bool, what: str) -> None:
    if not condition:
        pytest.fail(f"host requirement missing: {what} (run the suite as root on a host with it)")


def needs_root(test: Test) -> Test:
    """Decorator: the test fails with a clear message unless it runs as root."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require(os.geteuid() == 0, "root")
        return test(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
