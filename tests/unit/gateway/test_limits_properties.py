"""Properties of the token bucket and the CI request parser, over generated inputs."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from auto_review.gateway.limits import RateLimiter
from auto_review.gateway.routes_ci import CiRequestInvalid, parse_ci_request


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=300, deadline=None)
@given(
    per_minute=st.integers(1, 100_000),
    burst=st.integers(1, 1_000),
    gaps=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=300),
)
def test_bucket_never_allows_more_than_burst_plus_refill(
    per_minute: int, burst: int, gaps: list[float]
) -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute, burst, clock=clock)
    allowed = 0
    for gap in gaps:
        clock.now += gap
        allowed += limiter.allow("client")
    budget = burst + clock.now * per_minute / 60.0
    assert allowed <= budget + 1e-6
    assert allowed >= 1  # the first request of a client always passes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
ci_like = st.fixed_dictionaries(
    {},
    optional={
        "host": st.sampled_from(["forgejo", "github", "gitlab", ""]) | json_values,
        "owner": st.text(max_size=120) | json_values,
        "repo": st.text(max_size=120) | json_values,
        "pr": st.integers(-5, 2**40) | json_values,
        "head_sha": st.sampled_from(["a" * 40, "B" * 64, "a" * 39]) | json_values,
    },
)


def _fixed_text(payload: object, value: str) -> str:
    """The error text when ``value`` is replaced by a same-length string of a character no
    message uses: what the parser says about the shape, not about the value."""
    probe = "\u2603" * len(value)
    swapped = (
        {k: probe if v == value else v for k, v in payload.items()}
        if isinstance(payload, dict)
        else probe
    )
    try:
        parse_ci_request(swapped)
    except CiRequestInvalid as exc:
        return str(exc)
    return ""


@settings(max_examples=500, deadline=None)
@given(payload=ci_like | json_values)
def test_ci_parser_accepts_or_names_the_problem(payload: object) -> None:
    try:
        parsed = parse_ci_request(payload)
    except CiRequestInvalid as exc:
        # The message names a field or the shape; it never repeats the submitted value.
        text = str(exc)
        assert text
        # The message for the same shape with a value no message could contain: whatever
        # of the submitted value shows up beyond that text was echoed.
        for value in payload.values() if isinstance(payload, dict) else [payload]:
            if isinstance(value, str) and len(value) > 12:
                assert value not in text or value in _fixed_text(payload, value)
        return
    assert parsed.pr > 0 and len(parsed.head_sha) in (40, 64)
    assert json.dumps(parsed.owner) and "/" not in parsed.owner + parsed.repo
