"""The outer launcher: prepares the boundary on the host and runs the inner gateway in it.

Steps, in order; each failure stops startup with one sanitized line naming the step, and
everything made so far is undone (bundle removed, proxy stopped, descriptors closed):

``oci-runtime``     --oci-runtime / AR_OCI_RUNTIME resolved to an executable (when set)
``runtime-dir``     /run/auto-review (root) or $XDG_RUNTIME_DIR/auto-review, 0700
``stale-cleanup``   bundles, egress sockets and runtime state of dead launchers
``state-dir``       the host state directory, made 0700 if missing, must be writable
``ca-file``         AR_CA_FILE (when set) a regular file the container's root can read; it is
                    bound read-only at /etc/auto-review/ca.pem and the inner gateway gets
                    that path as its ``ca_file`` (git's http.sslCAInfo too)
``bind``            the listening socket on the host (AR_GATEWAY_BIND)
``egress-proxy``    the egress proxy's Unix socket in the runtime dir, bound and listening
``settings-pipe``   the pipe that carries settings and secrets to the inner process
``bundle``          the per-launch OCI bundle (no secret may be written into it)
``runtime``         the embedded runtime (or --oci-runtime) runs the inner gateway

Off the critical path: once the container is started, a launcher thread starts the egress
proxy's event loop on the bound socket (importing asyncio and the proxy costs about 30 ms)
while the inner interpreter starts, and only then writes the settings into the pipe. The
inner gateway reads its settings before anything else, so it never runs without the proxy;
if the proxy fails, the pipe is closed empty, the inner process exits, and the launcher
reports step ``egress-proxy``.

The launcher then waits: SIGTERM, SIGINT and SIGHUP go to the inner gateway, and the
launcher exits with its status. Tests inject a failure at any step with ``fail_at``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

from auto_review.config import Settings
from auto_review.isolation.inner.entry import (
    ENV_CGROUP_LIMITS,
    ENV_HOST_NAMESPACES,
    ENV_REQUIRED_CONTROLS,
    ENV_RUNTIME,
)
from auto_review.isolation.inner.selfcheck import INNER_STATE_DIR, namespace_ids
from auto_review.isolation.outer import frozen
from auto_review.isolation.outer.inner_path import inner_interpreter_args, inner_python_path
from auto_review.isolation.secrets_pipe import INNER_FDS, SettingsPipe, settings_document
from auto_review.wiring.redaction import install_secrets, redact

log = logging.getLogger("auto_review.isolation.outer.launcher")

LISTEN_BACKLOG = 2048
INNER_MODULE = "auto_review.isolation.inner.entry"
EGRESS_SOCKET_PREFIX = "egress-"
EGRESS_BACKLOG = 128  # the proxy's connection cap (ProxyLimits.max_connections)
EGRESS_START_TIMEOUT = 15.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class LaunchStep(StrEnum):
    OCI_RUNTIME = "oci-runtime"
    RUNTIME_DIR = "runtime-dir"
    STALE_CLEANUP = "stale-cleanup"
    STATE_DIR = "state-dir"
    CA_FILE = "ca-file"
    BIND = "bind"
    EGRESS_PROXY = "egress-proxy"
    SETTINGS_PIPE = "settings-pipe"
    BUNDLE = "bundle"
    RUNTIME = "runtime"


class LaunchError(RuntimeError):
    """A setup step failed. ``str()`` is one sanitized line naming the step."""

    def __init__(self, step: LaunchStep, detail: str) -> None:
        self.step = step
        self.detail = redact(" ".join(detail.split()))
        super().__init__(f"isolation setup failed at step {step}: {self.detail}")


class LaunchInterrupted(Exception):
    """SIGTERM/SIGINT/SIGHUP arrived before the inner gateway was running."""

    def __init__(self, number: int) -> None:
        self.number = number
        super().__init__(f"signal {number}")


@dataclass
class LaunchOptions:
    oci_runtime: Path | None = None  # None: the embedded runtime
    runtime_dir: Path | None = None  # None: /run/auto-review or $XDG_RUNTIME_DIR/auto-review
    required_controls: Sequence[str] = ()  # degraded controls made mandatory
    fail_at: LaunchStep | None = None  # tests: raise at the start of this step
    # Another program in the gateway's place, same bundle and boundary (egress probes).
    inner_command: Sequence[str] | None = None
    role: str = "gateway"  # or "worker": what the inner process serves (gateway/roles.py)
    stdio: tuple[int, int, int] | None = None  # embedded runtime: the inner's 0, 1, 2


@dataclass
class _Resources:
    """What the launcher made, so every exit path undoes exactly that."""

    listener: socket.socket | None = None
    proxy: Any = None
    egress_socket: Path | None = None
    egress_listener: socket.socket | None = None
    egress_start: threading.Thread | None = None
    settings_pipe: SettingsPipe | None = None
    bundle: Any = None
    undo_errors: list[str] = field(default_factory=list)

    def release(self) -> None:
        if self.egress_start is not None:
            # The thread sets proxy; it is bounded by the proxy's own start timeout.
            self.egress_start.join(EGRESS_START_TIMEOUT + 5)
            if self.egress_start.is_alive():
                self.undo_errors.append("egress proxy start did not end")
            self.egress_start = None
        if self.settings_pipe is not None:
            self.settings_pipe.close()
            self.settings_pipe = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.bundle is not None:
            try:
                self.bundle.remove()
            except OSError as exc:
                self.undo_errors.append(f"bundle removal: {exc.strerror}")
            self.bundle = None
        if self.proxy is not None:
            try:
                self.proxy.stop()
            except Exception as exc:
                self.undo_errors.append(f"egress proxy stop: {type(exc).__name__}")
            self.proxy = None
        if self.egress_listener is not None:
            self.egress_listener.close()
            self.egress_listener = None
        if self.egress_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self.egress_socket.unlink()
            self.egress_socket = None


# ---------------------------------------------------------------- host facts


def default_runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/auto-review")
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        raise LaunchError(
            LaunchStep.RUNTIME_DIR,
            "XDG_RUNTIME_DIR is not set: a non-root launcher keeps its bundles there",
        )
    return Path(base) / "auto-review"


def cgroup_limits_expectation(rootless: bool) -> str:
    """What the runtime will manage: limits in a cgroup, or rlimits only."""
    if rootless:
        return "not applied: no cgroup is delegated to this user; rlimits only"
    for candidate in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
        if os.access(candidate, os.W_OK):
            return "applied"
    return "not applied: no writable cgroup hierarchy; rlimits only"


def egress_socket_name(listener: socket.socket) -> str:
    """Named after the listening address, not the pid: the same settings give the same
    bundle bytes at every launch, so the runtime's validation cache hits."""
    host, port = listener.getsockname()[:2]
    safe_host = "".join(char if char.isalnum() else "_" for char in str(host))
    return f"{EGRESS_SOCKET_PREFIX}{safe_host}-{port}.sock"


def socket_listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def inner_args() -> list[str]:
    # The interpreter at the same absolute path inside (the bundle binds it there), without
    # site: its search path comes explicitly in PYTHONPATH (see inner_path). Frozen: the
    # single file's program, started from its unpacked cache entry (see frozen).
    if frozen.is_frozen():
        return frozen.inner_args()
    return inner_interpreter_args(INNER_MODULE)


def inner_database_settings(settings: Settings) -> dict[str, Any]:
    """AR_DATABASE_* as the inner process gets them: the password (read here from
    AR_DATABASE_PASSWORD_FILE, a host path) inside the URL, which goes through the settings
    pipe as every secret does; the CA file at the path the bundle binds it to."""
    if settings.database_url is None:
        return {}
    from urllib.parse import quote

    from auto_review.core.database_url import parse_database_url
    from auto_review.isolation.outer.bundle import DATABASE_CA_FILE_INSIDE
    from auto_review.wiring.stores import read_password_file

    url = parse_database_url(settings.database_url.reveal())
    password = url.password
    if settings.database_password_file is not None:
        password = read_password_file(settings.database_password_file)
        install_secrets([password.reveal()])
    secret = f":{quote(password.reveal(), safe='')}" if password is not None else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    query = f"?sslmode={url.sslmode}" if url.sslmode else ""
    return {
        "database_url": f"postgresql://{quote(url.user, safe='')}{secret}@{host}:{url.port}"
        f"/{quote(url.dbname, safe='')}{query}",
        "database_password_file": None,
        "database_ca_file": DATABASE_CA_FILE_INSIDE if settings.database_ca_file else None,
    }


def inner_environment(runtime: str, rootless: bool, required: Sequence[str]) -> dict[str, str]:
    """process.env of the bundle: never a setting, never a secret (those use the pipe)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(INNER_STATE_DIR),
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",  # noqa: S108 - the container's own tmpfs
        ENV_HOST_NAMESPACES: json.dumps(namespace_ids(), sort_keys=True),
        ENV_RUNTIME: runtime,
        ENV_CGROUP_LIMITS: cgroup_limits_expectation(rootless),
        ENV_REQUIRED_CONTROLS: ",".join(required),
    }
    if frozen.is_frozen():
        return env  # the entry's executable finds its runtime beside itself
    # The inner interpreter runs without site: this is its whole search path beyond the
    # standard library (the launcher's PYTHONPATH entries included).
    env["PYTHONPATH"] = inner_python_path()
    return env


def scrubbed_environment() -> dict[str, str]:
    """The launcher's environment without any AR_* value, for an external runtime."""
    return {key: value for key, value in os.environ.items() if not key.startswith("AR_")}


# ---------------------------------------------------------------- steps


class Launcher:
    def __init__(self, settings: Settings, options: LaunchOptions) -> None:
        self.settings = settings
        self.options = options
        self.rootless = os.geteuid() != 0
        self.resources = _Resources()
        self.runtime_dir = Path()
        self.runtime_path: Path | None = None
        self.runtime_label = "embedded"
        self.egress_policy: Any = None
        self.egress_failure: LaunchError | None = None

    @contextlib.contextmanager
    def step(self, step: LaunchStep) -> Iterator[None]:
        if self.options.fail_at == step:
            raise LaunchError(step, "failure injected by the caller")
        try:
            yield
        except LaunchError:
            raise
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise LaunchError(step, describe(exc)) from None

    def resolve_oci_runtime(self) -> None:
        with self.step(LaunchStep.OCI_RUNTIME):
            if self.options.oci_runtime is not None:
                from auto_review.isolation.outer import external_runtime

                self.runtime_path = external_runtime.resolve_runtime(self.options.oci_runtime)
                self.runtime_label = external_runtime.runtime_name(self.runtime_path)

    def prepare_runtime_dir(self) -> None:
        with self.step(LaunchStep.RUNTIME_DIR):
            directory = self.options.runtime_dir or default_runtime_dir()
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = directory.stat()
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                raise LaunchError(
                    LaunchStep.RUNTIME_DIR,
                    f"{directory} must be owned by uid {os.geteuid()} and mode 0700",
                )
            self.runtime_dir = directory

    def remove_stale(self) -> None:
        with self.step(LaunchStep.STALE_CLEANUP):
            from auto_review.isolation.outer.stale import remove_stale_bundles

            removed = remove_stale_bundles(self.runtime_dir, oci_root=self.embedded_state_root())
            for path in removed:
                log.info("removed a dead launcher's bundle", extra={"bundle": str(path)})
            for path in self.runtime_dir.glob(EGRESS_SOCKET_PREFIX + "*.sock"):
                if not socket_listening(path):
                    path.unlink(missing_ok=True)
            remove_stale_containers(self.embedded_state_root())
            if self.runtime_path is not None:
                from auto_review.isolation.outer import external_runtime

                external_runtime.remove_stopped_containers(
                    self.runtime_path, self.external_state_root()
                )

    def embedded_state_root(self) -> Path:
        return self.runtime_dir / "oci"

    def external_state_root(self) -> Path:
        return self.runtime_dir / f"oci-{self.runtime_label}"

    def check_state_dir(self) -> None:
        with self.step(LaunchStep.STATE_DIR):
            state_dir = self.settings.state_dir
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not state_dir.is_dir():
                raise LaunchError(LaunchStep.STATE_DIR, f"{state_dir} is not a directory")
            if not os.access(state_dir, os.R_OK | os.W_OK | os.X_OK):
                raise LaunchError(
                    LaunchStep.STATE_DIR, f"{state_dir} is not readable and writable by this user"
                )
            if state_dir.stat().st_uid != os.geteuid():
                # Inside, uid 0 is this user: a directory of another owner would be
                # read-only or unusable for the gateway (SQLite needs to create files).
                raise LaunchError(
                    LaunchStep.STATE_DIR, f"{state_dir} must be owned by uid {os.geteuid()}"
                )

    def check_ca_file(self) -> None:
        """AR_CA_FILE is a host path: checked here, bound into the bundle by :meth:`stage`."""
        with self.step(LaunchStep.CA_FILE):
            from auto_review.isolation.outer.bundle import ca_file_bind
            from auto_review.isolation.outer.rootfs import BundleError

            for name, path in (
                ("AR_CA_FILE", self.settings.ca_file),
                ("AR_DATABASE_CA_FILE", self.settings.database_ca_file),
            ):
                if path is None:
                    continue
                try:
                    ca_file_bind(path)
                except BundleError as exc:
                    raise LaunchError(LaunchStep.CA_FILE, f"{name}: {exc.detail}") from None

    def bind(self) -> None:
        with self.step(LaunchStep.BIND):
            host, port = self.settings.bind_host_port
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
            except OSError as exc:
                detail = f"cannot listen on AR_GATEWAY_BIND {host}:{port}: {exc.strerror}"
                raise LaunchError(LaunchStep.BIND, detail) from None
            self.resources.listener = listener

    def bind_egress_socket(self) -> None:
        """The proxy's socket exists (the bundle binds it) and queues connections from here;
        its event loop starts in :meth:`start_egress_proxy`, after the container's start."""
        with self.step(LaunchStep.EGRESS_PROXY):
            from auto_review.isolation.egress.policy import EgressPolicy
            from auto_review.isolation.egress.unix_socket import listen_unix

            self.egress_policy = EgressPolicy.from_settings(self.settings)
            assert self.resources.listener is not None
            path = self.runtime_dir / egress_socket_name(self.resources.listener)
            # The name follows the bound address, which this launcher now holds: a socket
            # file of that name belongs to a dead launcher (listen_unix replaces it).
            self.resources.egress_socket = path
            self.resources.egress_listener = listen_unix(path, EGRESS_BACKLOG)

    def open_settings_pipe(self) -> None:
        with self.step(LaunchStep.SETTINGS_PIPE):
            document = settings_document(
                self.settings, state_dir=INNER_STATE_DIR, ca_file=self.inner_ca_file()
            )
            document["settings"].update(inner_database_settings(self.settings))
            document["role"] = self.options.role
            self.resources.settings_pipe = SettingsPipe(document)

    def inner_ca_file(self) -> Path | None:
        """AR_CA_FILE as the inner gateway sees it (the bundle binds it there)."""
        if self.settings.ca_file is None:
            return None
        from auto_review.isolation.outer.bundle import CA_FILE_INSIDE

        return Path(CA_FILE_INSIDE)

    def start_egress_proxy(self, _inner_pid: int = 0) -> None:
        """Called once the container started: proxy and settings follow on a thread."""
        thread = threading.Thread(
            target=self._start_egress_then_deliver, name="egress-start", daemon=True
        )
        self.resources.egress_start = thread
        thread.start()

    def _start_egress_then_deliver(self) -> None:
        pipe = self.resources.settings_pipe
        assert pipe is not None
        try:
            from auto_review.isolation.egress.proxy import EgressProxyThread

            assert self.resources.egress_socket is not None
            proxy = EgressProxyThread(
                self.egress_policy,
                self.resources.egress_socket,
                sock=self.resources.egress_listener,
            )
            self.resources.proxy = proxy
            proxy.start(EGRESS_START_TIMEOUT)
            log.info("egress proxy listening", extra={"allowed": self.egress_policy.describe()})
        except Exception as exc:
            self.egress_failure = LaunchError(LaunchStep.EGRESS_PROXY, describe(exc))
            pipe.abandon()  # the inner process reads an empty document and exits
            return
        try:
            pipe.deliver()
        except Exception as exc:
            self.egress_failure = LaunchError(LaunchStep.SETTINGS_PIPE, describe(exc))

    def finish_egress_start(self) -> None:
        """Wait for the proxy thread; its failure is this launch's failure."""
        thread = self.resources.egress_start
        if thread is not None:
            thread.join(EGRESS_START_TIMEOUT + 5)
        if self.egress_failure is not None:
            raise self.egress_failure

    def stage(self) -> None:
        with self.step(LaunchStep.BUNDLE):
            from auto_review.isolation.outer.bundle import (
                BundleRequest,
                ResourceLimits,
                stage_bundle,
            )

            assert self.resources.egress_socket is not None
            request = BundleRequest(
                runtime_dir=self.runtime_dir,
                state_dir=self.settings.state_dir.resolve(),
                egress_socket=self.resources.egress_socket,
                inner_args=list(self.options.inner_command or inner_args()),
                inner_env=inner_environment(
                    self.runtime_label, self.rootless, self.options.required_controls
                ),
                rootless=self.rootless,
                preserve_fds=INNER_FDS,
                # A control the operator made mandatory is not best effort any more.
                limits=ResourceLimits(
                    cgroup_best_effort="cgroup-limits" not in self.options.required_controls
                ),
                landlock_mandatory="landlock" in self.options.required_controls,
                oci_root=self.embedded_state_root() if self.runtime_path is None else None,
                external_runtime=self.runtime_path is not None,
                ca_file=self.settings.ca_file,
                database_ca_file=self.settings.database_ca_file,
            )
            self.resources.bundle = stage_bundle(
                request, forbidden_values=self.settings.secret_values()
            )

    def run_inner(self) -> int:
        with self.step(LaunchStep.RUNTIME):
            listener, pipe = self.resources.listener, self.resources.settings_pipe
            assert listener is not None and pipe is not None
            bundle = self.resources.bundle
            fds = [listener.fileno(), pipe.read_fd]
            if self.runtime_path is None:
                status = self._run_embedded(bundle, fds)
            else:
                status = self._run_external(bundle, fds)
        self.finish_egress_start()
        return status

    def _run_embedded(self, bundle: Any, fds: list[int]) -> int:
        from auto_review.oci import api
        from auto_review.oci.errors import OciError

        log.info(
            "starting the inner gateway",
            extra={"runtime": "embedded", "container": bundle.container_id},
        )
        try:
            return api.run(
                bundle.container_id,
                bundle.path,
                root=self.embedded_state_root(),
                pass_fds=fds,
                stdio=self.options.stdio,
                forward_signals=True,
                on_started=self.start_egress_proxy,
            )
        except OciError as exc:
            raise LaunchError(LaunchStep.RUNTIME, str(exc)) from None

    def _run_external(self, bundle: Any, fds: list[int]) -> int:
        from auto_review.isolation.outer import external_runtime

        assert self.runtime_path is not None
        state_root = self.external_state_root()
        state_root.mkdir(mode=0o700, exist_ok=True)
        argv = external_runtime.run_command(
            self.runtime_path, state_root, bundle.path, bundle.container_id, len(fds)
        )
        log.info(
            "starting the inner gateway",
            extra={"runtime": str(self.runtime_path), "container": bundle.container_id},
        )
        with forwarding_signals() as child:
            # Handlers first: a stop signal right after the spawn reaches the runtime too.
            child.pid = external_runtime.spawn(argv, fds, scrubbed_environment())
            self.start_egress_proxy(child.pid)
            _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def remove_stale_containers(state_root: Path) -> None:
    """Delete the embedded runtime's records of containers whose init is gone."""
    if not state_root.is_dir():
        return
    from auto_review.oci import api
    from auto_review.oci.errors import OciError

    for entry in api.list_containers(root=state_root):
        if entry.get("status") in ("stopped", "creating"):
            with contextlib.suppress(OciError):
                api.delete(entry["id"], root=state_root, force=True)


class _Child:
    """The process signals are relayed to; signals that came before it existed wait."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._pending: list[int] = []

    @property
    def pid(self) -> int:
        assert self._pid is not None
        return self._pid

    @pid.setter
    def pid(self, pid: int) -> None:
        self._pid = pid
        for number in self._pending:
            self.relay(number)
        self._pending.clear()

    def relay(self, number: int) -> None:
        if self._pid is None:
            self._pending.append(number)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, number)


@contextlib.contextmanager
def forwarding_signals() -> Iterator[_Child]:
    """Relay TERM/INT/HUP to the child while inside the block."""
    child = _Child()
    previous = {
        number: signal.signal(number, lambda n, _frame: child.relay(n))
        for number in HANDLED_SIGNALS
    }
    try:
        yield child
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def interruptible_setup() -> Iterator[None]:
    """During setup a stop signal unwinds (and cleans up) instead of killing the launcher."""

    def interrupt(number: int, _frame: FrameType | None) -> None:
        raise LaunchInterrupted(number)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, interrupt) for number in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def launch(settings: Settings, options: LaunchOptions | None = None) -> int:
    """Run the inner gateway in the container; returns its exit status.

    Raises :class:`LaunchError` (one line naming the step) when setup fails; everything
    made so far is removed first. A stop signal during setup returns 128+N after cleanup.
    """
    launcher = Launcher(settings, options or LaunchOptions())
    steps: list[Callable[[], None]] = [
        launcher.resolve_oci_runtime,
        launcher.prepare_runtime_dir,
        launcher.remove_stale,
        launcher.check_state_dir,
        launcher.check_ca_file,
        launcher.bind,
        launcher.bind_egress_socket,
        launcher.open_settings_pipe,
        launcher.stage,
    ]
    try:
        with interruptible_setup():
            for step in steps:
                step()
            return launcher.run_inner()
    except LaunchInterrupted as interrupted:
        log.warning("stopped by a signal during isolation setup")
        return 128 + interrupted.number
    finally:
        launcher.resources.release()
        for problem in launcher.resources.undo_errors:
            log.error("cleanup incomplete: %s", problem)


__all__ = ["LaunchError", "LaunchOptions", "LaunchStep", "launch"]
