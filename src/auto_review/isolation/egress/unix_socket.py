"""The egress proxy's Unix socket, made before the proxy's event loop exists.

The launcher binds it synchronously, without asyncio, so that the socket file exists when
the container's bind mount is made; the proxy then adopts the listening socket. A client
that connects in between waits in the kernel's backlog.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

# Longest path a sockaddr_un holds, with its terminating NUL.
MAX_SOCKET_PATH = 107


class EgressProxyError(RuntimeError):
    """The proxy cannot start: the message names the problem, never a secret."""


def check_socket_directory(directory: Path) -> None:
    """The socket's directory must belong to this user and be closed to everyone else."""
    try:
        info = directory.lstat()
    except OSError as exc:
        raise EgressProxyError(
            f"egress socket directory {directory} cannot be read: {exc.strerror}"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise EgressProxyError(f"egress socket directory {directory} is not a directory")
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise EgressProxyError(
            f"egress socket directory {directory} must be owned by uid {os.geteuid()} "
            "with mode 0700"
        )


def listen_unix(socket_path: Path, backlog: int) -> socket.socket:
    """A listening Unix socket at ``socket_path`` (mode 0600) in a private directory.

    A socket file already there (a dead launcher's, in our private directory) is replaced;
    anything else at that path is refused.
    """
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise EgressProxyError(
            f"egress socket path is longer than {MAX_SOCKET_PATH} bytes: {socket_path}"
        )
    check_socket_directory(socket_path.parent)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(socket_path.lstat().st_mode):
            raise EgressProxyError(f"egress socket path {socket_path} exists and is no socket")
        socket_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(socket_path))
        os.chmod(socket_path, 0o600)
        listener.listen(backlog)
    except OSError as exc:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        raise EgressProxyError(
            f"egress proxy cannot listen on {socket_path}: {exc.strerror}"
        ) from None
    return listener
