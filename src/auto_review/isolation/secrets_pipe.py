"""Settings, secrets included, reach the inner gateway through an inherited pipe.

The launcher writes one JSON document into a pipe and closes the write end; the read end
becomes descriptor 4 of the inner process (3 is the listening socket). The launcher may
start the container first and write the document once the egress proxy listens: the inner
process blocks on the read until then. It reads once, to end of file, and closes it.
Nothing of it is written to the bundle, the runtime's environment or any command line, so
a secret never appears in ``config.json``, ``/proc/PID/environ`` or ``/proc/PID/cmdline``.

The whole settings model travels this way (not only the secret fields): the inner process
then needs no ``AR_*`` environment at all, and the bundle carries no settings to check.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from auto_review.config import SECRET_FIELDS, Settings, env_name
from auto_review.core.secrets import Secret

LISTEN_FD = 3
SECRETS_FD = 4
INNER_FDS = 2  # descriptors the container inherits: listening socket, secrets pipe
FORMAT_VERSION = 1
# A pipe holds 64 KiB by default; the document (a PEM key at most a few KiB) is written
# whole before the reader exists, so it must fit. Larger requests grow the pipe first.
MAX_DOCUMENT_BYTES = 1024 * 1024
_F_SETPIPE_SZ = 1031


class SecretsPipeError(RuntimeError):
    """The settings document cannot be written or read; the message holds no value."""


# Not a setting: the key under which read_settings_pipe returns the host's state directory.
HOST_STATE_DIR_KEY = "_host_state_dir"
ROLE_KEY = "_role"  # gateway or worker (gateway/roles.py), from the launch options


def settings_document(
    settings: Settings, *, state_dir: Path, ca_file: Path | None = None
) -> dict[str, Any]:
    """Every setting with secrets revealed; the state directory and, when given, the CA
    file (``AR_CA_FILE``, bound read-only into the bundle) as the container sees them."""
    values: dict[str, Any] = {}
    for name in settings.field_names():
        value = getattr(settings, name)
        if isinstance(value, Secret):
            value = value.reveal()
        elif isinstance(value, Path):
            value = str(value)
        values[name] = value
    values["state_dir"] = str(state_dir)
    if ca_file is not None:
        values["ca_file"] = str(ca_file)
    # The operator's own path of the state directory: what /info and errors should show.
    return {
        "version": FORMAT_VERSION,
        "settings": values,
        "host_state_dir": str(settings.state_dir),
    }


class SettingsPipe:
    """A pipe whose read end the inner process inherits; the document follows later.

    The launcher hands the read end to the container first and writes the document only
    once the egress proxy listens, so the inner process, which reads its settings before
    anything else, never starts serving without the proxy. Both ends are close-on-exec;
    the pipe is sized up front, so :meth:`deliver` never blocks.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self._data = json.dumps(document, separators=(",", ":")).encode()
        if len(self._data) > MAX_DOCUMENT_BYTES:
            raise SecretsPipeError(f"settings document too large ({len(self._data)} bytes)")
        self.read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        self._write_fd: int | None = write_fd
        try:
            if len(self._data) >= 65536:
                fcntl.fcntl(write_fd, _F_SETPIPE_SZ, MAX_DOCUMENT_BYTES)
        except OSError as exc:
            self.close()
            raise SecretsPipeError(f"cannot size the settings pipe: {exc.strerror}") from None

    def deliver(self) -> None:
        """Write the whole document and close the write end: the reader sees end of file."""
        write_fd = self._take_write_end()
        try:
            written = os.write(write_fd, self._data)
            if written != len(self._data):
                raise SecretsPipeError("settings pipe accepted a partial write")
        except OSError as exc:
            raise SecretsPipeError(f"cannot write the settings pipe: {exc.strerror}") from None
        finally:
            os.close(write_fd)
            self._data = b""

    def abandon(self) -> None:
        """Close the write end with nothing written: the reader refuses an empty document."""
        with contextlib.suppress(SecretsPipeError, OSError):
            os.close(self._take_write_end())
        self._data = b""

    def close(self) -> None:
        """Close whatever is still open. Idempotent."""
        self.abandon()
        if self.read_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.read_fd)
            self.read_fd = -1

    def _take_write_end(self) -> int:
        write_fd, self._write_fd = self._write_fd, None
        if write_fd is None:
            raise SecretsPipeError("settings pipe was already written or abandoned")
        return write_fd


def write_settings_pipe(document: dict[str, Any]) -> int:
    """Write ``document`` into a new pipe and return its read end (close-on-exec)."""
    pipe = SettingsPipe(document)
    try:
        pipe.deliver()
    except BaseException:
        pipe.close()
        raise
    return pipe.read_fd


def read_settings_pipe(fd: int = SECRETS_FD) -> dict[str, Any]:
    """Read the document to end of file and close ``fd``; returns the settings values."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise SecretsPipeError("settings pipe holds more than the maximum document")
            chunks.append(chunk)
    except OSError as exc:
        raise SecretsPipeError(f"cannot read the settings pipe (fd {fd}): {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        document = json.loads(b"".join(chunks))
    except ValueError:
        # The exception text could quote part of the document: say only what failed.
        raise SecretsPipeError("settings pipe does not hold a JSON document") from None
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise SecretsPipeError("settings pipe holds an unknown document version")
    values = document.get("settings")
    if not isinstance(values, dict):
        raise SecretsPipeError("settings pipe document has no settings object")
    host_state_dir = document.get("host_state_dir")
    if isinstance(host_state_dir, str):
        values[HOST_STATE_DIR_KEY] = host_state_dir
    role = document.get("role")
    if isinstance(role, str):
        values[ROLE_KEY] = role
    return values


def secret_variable_names() -> frozenset[str]:
    return frozenset(env_name(field) for field in SECRET_FIELDS)


def scrub_secret_environment(names: frozenset[str] | None = None) -> bool:
    """Overwrite the values of secret ``AR_*`` variables in this process's initial
    environment (what ``/proc/PID/environ`` shows) and drop them from ``os.environ``.

    An operator who passes secrets as environment variables instead of an env file would
    otherwise leave them readable there for the process's lifetime. Returns False when
    the kernel refuses writes to ``/proc/self/mem``; the values then stay visible to root
    and this user only.
    """
    names = secret_variable_names() if names is None else names
    if not names & set(os.environ):
        return True  # nothing to hide
    for name in names:
        os.environ.pop(name, None)
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(start)
            block = memory.read(end - start)
            offset = 0
            for entry in block.split(b"\0"):
                key, sep, value = entry.partition(b"=")
                if sep and value and key.decode("ascii", "replace") in names:
                    memory.seek(start + offset + len(key) + 1)
                    memory.write(b"*" * len(value))
                offset += len(entry) + 1
    except (OSError, ValueError, IndexError):
        return False
    return True
