"""The isolation decision: default oci on Linux, explicit bare, external marker, refusal."""

from __future__ import annotations

import pytest

from auto_review.isolation.decision import IsolationMode, IsolationRefused, decide_isolation


def test_default_on_linux_is_oci() -> None:
    assert decide_isolation("linux", bare=False, external_isolation=None).mode is IsolationMode.OCI


def test_bare_only_when_asked() -> None:
    assert decide_isolation("linux", bare=True, external_isolation=None).mode is IsolationMode.BARE
    assert decide_isolation("darwin", bare=True, external_isolation=None).mode is IsolationMode.BARE


def test_external_marker() -> None:
    decision = decide_isolation("linux", bare=False, external_isolation="container")
    assert decision.mode is IsolationMode.EXTERNAL


def test_non_linux_refuses_without_bare() -> None:
    with pytest.raises(IsolationRefused, match="needs Linux"):
        decide_isolation("darwin", bare=False, external_isolation=None)
