"""The one response reader with a size cap: streamed, it stops reading at the cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httpx

# Ask for an uncompressed body where the cap must count what is held in memory: a
# compressed chunk could expand far past the cap in one step.
IDENTITY_ENCODING: Final = {"Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class CappedBody:
    """What was read. ``complete`` is False when the body went past the cap (``data`` then
    holds at most ``limit`` bytes of it) or declared a length over it (``data`` empty)."""

    data: bytes
    complete: bool


async def read_capped(response: httpx.Response, limit: int) -> CappedBody:
    """Read ``response``'s body (opened with ``stream=True``), at most ``limit`` bytes."""
    if limit < 0:
        raise ValueError("a size cap must not be negative")
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        return CappedBody(b"", complete=False)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return CappedBody(b"".join(chunks), complete=False)
        size += len(chunk)
        chunks.append(chunk)
    return CappedBody(b"".join(chunks), complete=True)
