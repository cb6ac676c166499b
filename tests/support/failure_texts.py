"""Every text a failed call leaves behind, for tests that check no secret is among them."""

from __future__ import annotations

import pytest


def failure_texts(exc: BaseException, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The exception's str and repr, the captured log text, and each log record's fields
    (``extra`` values land there and are not all in the formatted text)."""
    return [str(exc), repr(exc), caplog.text, *(repr(r.__dict__) for r in caplog.records)]
