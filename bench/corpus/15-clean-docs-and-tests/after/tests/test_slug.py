from __future__ import annotations

import pytest

from slug import slugify


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Hello, World!", "hello-world"),
        ("Café au lait", "cafe-au-lait"),
        ("  --  ", "untitled"),
        ("日本語", "untitled"),
        ("a" * 70, "a" * 60),
    ],
)
def test_slugify(title: str, expected: str) -> None:
    assert slugify(title) == expected


def test_cut_does_not_leave_a_trailing_dash() -> None:
    assert slugify("abc def", max_length=4) == "abc"
