"""One socket write per response: a transport that holds a response head for its body.

uvicorn writes a response's status line and headers, then its body, as two
``transport.write`` calls, and uvloop sends each at once: two ``send`` system calls and,
on loopback, two wake-ups of the client per answer. This wrapper holds the first write
and sends it together with the next one, at once, so an answer leaves in one write with
no added delay. A held write that no second write follows within the same event-loop
step (a response without a body) is sent on the next loop iteration (``call_soon``).
Nothing is reordered or dropped: ``close()`` sends what is held before closing, and a
transport that is already closing gets writes straight through, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescedWrites:
    """Wraps an ``asyncio.Transport``; everything but ``write``/``writelines``/``close``
    goes straight to it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(b"".join((*held, data)))
        elif self._transport.is_closing():
            self._transport.write(data)  # the transport decides, as without this wrapper
        else:
            self._held = [bytes(data)]
            self._loop.call_soon(self.flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is held, if anything."""
        held, self._held = self._held, None
        if held and not self._transport.is_closing():  # a lost connection takes no more
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
