"""Python API of the embedded OCI runtime (the launcher and the tests use it).

The same functions back the runc-style CLI. ``root`` defaults to /run/auto-review-oci
for root and $XDG_RUNTIME_DIR/auto-review-oci otherwise.
"""

from __future__ import annotations

import os

from auto_review.oci import container, hooks, signal_relay

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

PathLike = str | os.PathLike[str]
FORWARDED_SIGNALS = signal_relay.FORWARDED_SIGNALS


def create(container_id: str, bundle: PathLike, *, root: PathLike | None = None,
           pid_file: PathLike | None = None, preserve_fds: int = 0,
           stdio: tuple[int, int, int] | None = None,
           pass_fds: Sequence[int] = ()) -> dict[str, Any]:
    """Create the container and leave its init waiting for start; returns its state.

    pass_fds: descriptors of the caller that the container gets as 3+preserve_fds, 4+...,
    in order (the caller's own numbering does not matter, unlike preserve_fds)."""
    state_root = container.state_root(root)
    created = container.create(container_id, bundle, state_root, pid_file=pid_file,
                               preserve_fds=preserve_fds, stdio=stdio, run_mode=False,
                               pass_fds=tuple(pass_fds))
    return container.public_state(created.record, "created")


def start(container_id: str, *, root: PathLike | None = None) -> None:
    container.start(container.state_root(root), container_id)


def state(container_id: str, *, root: PathLike | None = None) -> dict[str, Any]:
    return container.container_state(container.state_root(root), container_id)


def kill(container_id: str, signal: int | str = "TERM", *,
         root: PathLike | None = None) -> None:
    container.kill(container.state_root(root), container_id, signal)


def delete(container_id: str, *, root: PathLike | None = None, force: bool = False) -> None:
    container.delete(container.state_root(root), container_id, force=force)


def list_containers(*, root: PathLike | None = None) -> list[dict[str, Any]]:
    return container.list_all(container.state_root(root))


def default_spec(*, rootless: bool = False) -> dict[str, Any]:
    from auto_review.oci.default_spec import default_spec as build

    return build(rootless=rootless)


def run(container_id: str, bundle: PathLike, *, root: PathLike | None = None,
        pid_file: PathLike | None = None, preserve_fds: int = 0, detach: bool = False,
        stdio: tuple[int, int, int] | None = None, forward_signals: bool = True,
        pass_fds: Sequence[int] = (),
        on_started: Callable[[int], None] | None = None) -> int:
    """create + start; in the foreground, wait and return the container's exit status
    (128+signal when killed), then delete it. Detached: return 0 once started.

    ``on_started(host pid of init)`` runs in the foreground once the container was told to
    start and before the wait: the caller's remaining set-up overlaps the container's."""
    state_root = container.state_root(root)
    if detach:
        container.create(container_id, bundle, state_root, pid_file=pid_file,
                         preserve_fds=preserve_fds, stdio=stdio, run_mode=False,
                         pass_fds=tuple(pass_fds))
        try:
            container.start(state_root, container_id)
        except BaseException:
            container.delete(state_root, container_id, force=True)
            raise
        return 0
    relay: signal_relay.Relay | None = None

    def relay_signals(init_pid: int, runs_hooks: bool) -> None:
        nonlocal relay
        relay = signal_relay.start(init_pid, starts_others=runs_hooks or on_started is not None)

    try:
        created = container.create(container_id, bundle, state_root, pid_file=pid_file,
                                   preserve_fds=preserve_fds, stdio=stdio, run_mode=True,
                                   pass_fds=tuple(pass_fds),
                                   on_init_pid=relay_signals if forward_signals else None)
    except BaseException:
        if relay is not None:
            relay.close()
        raise
    pid = created.init_pid
    poststart = created.record["hooks"]["poststart"]
    try:
        try:
            container.send_start(created.sync_fd, already_sent=created.start_sent)
            if on_started is not None:
                on_started(pid)
            hooks.run_hooks_warn("poststart", poststart,
                                 container.public_state(created.record, "running"))
            status = relay.wait() if relay is not None else os.waitpid(pid, 0)[1]
        finally:
            if relay is not None:  # before delete: poststop hooks get the caller's signals
                relay.close()
    except BaseException:
        container.delete(state_root, container_id, force=True, cgroup=created.cgroup,
                         record=created.record)
        raise
    container.delete(state_root, container_id, force=True, cgroup=created.cgroup,
                     record=created.record)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code

