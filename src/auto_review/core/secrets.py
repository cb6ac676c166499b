"""The one wrapper for secret values (tokens, keys, webhook secrets).

A :class:`Secret` prints as stars wherever it ends up (repr, str, f-strings, ``vars()``
dumps, tracebacks of locals); :meth:`Secret.reveal` is the one way to the value, so every
place that uses a credential is easy to find.
"""

from __future__ import annotations

from typing import Final

MASK: Final = "**********"


class Secret:
    """A secret string. Equality and hashing use the value; printing never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret value must be a string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

