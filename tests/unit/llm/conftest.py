"""The ``fake`` fixture: a loopback LLM server whose whole traffic is checked against the
OpenAI description when the test ends, so no client request escapes the check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.fake_llm import FakeLlm, check_recorded_traffic


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with FakeLlm() as server:
        yield server
        check_recorded_traffic(server)
