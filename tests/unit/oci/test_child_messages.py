"""The parent's read of the child's report survives a child that exits with a message of
the parent's unread: the kernel reports the reset before the report it queued."""

from __future__ import annotations

import socket

from auto_review.oci.container import _read_message


def test_report_behind_a_reset_is_still_read() -> None:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent:
        parent.send(b"START")  # queued early, never read by the child
        child.send(b"ERR step")
        child.close()
        assert _read_message(parent.fileno()) == b"ERR step"
        assert _read_message(parent.fileno()) == b""  # then EOF


def test_a_plain_message_reads_once() -> None:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent, child:
        child.send(b"READY")
        assert _read_message(parent.fileno()) == b"READY"
