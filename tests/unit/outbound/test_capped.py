"""The size-cap reader: streamed, it stops pulling the body at the cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from auto_review.outbound.capped import CappedBody, read_capped


class Chunks(httpx.AsyncByteStream):
    """A body of ``count`` chunks of ``size`` bytes that counts how many were pulled."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(self.count):
            self.pulled += 1
            yield bytes([48 + index % 10]) * self.size


def read(stream: Chunks, limit: int, headers: dict[str, str] | None = None) -> CappedBody:
    response = httpx.Response(200, headers=headers, stream=stream)
    return asyncio.run(read_capped(response, limit))


def test_a_body_within_the_cap_is_read_whole() -> None:
    stream = Chunks(4, 10)
    body = read(stream, 40)
    assert body == CappedBody(b"0" * 10 + b"1" * 10 + b"2" * 10 + b"3" * 10, complete=True)
    assert stream.pulled == 4


def test_reading_stops_at_the_cap() -> None:
    stream = Chunks(1_000_000, 10)  # 10 MB on offer
    body = read(stream, 25)
    assert not body.complete
    assert body.data == b"0" * 10 + b"1" * 10 + b"2" * 5  # never more than the cap held
    assert stream.pulled == 3  # the rest was never asked for


def test_one_byte_over_is_over() -> None:
    assert not read(Chunks(1, 11), 10).complete
    assert read(Chunks(1, 10), 10).complete
    assert read(Chunks(0, 10), 0) == CappedBody(b"", complete=True)


def test_a_declared_length_over_the_cap_is_not_read() -> None:
    stream = Chunks(3, 10)
    body = read(stream, 20, headers={"Content-Length": "30"})
    assert body == CappedBody(b"", complete=False)
    assert stream.pulled == 0


def test_a_negative_cap_is_refused() -> None:
    with pytest.raises(ValueError):
        read(Chunks(1, 1), -1)
