"""Loopback ports for tests that need a connection to be refused."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback port nothing listens on: bound to get a free number, then released, so a
    connection to it is refused (another process could take it, but not in a test's span)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
