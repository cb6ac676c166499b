"""Hermetic git: the environment, the `-c` overrides and the process runner for every git call.

The repository under review is hostile data, so git must never execute anything it brings,
and nothing from the host's git set-up may leak in either:

* the environment is built from nothing (the caller's is not inherited): no system or global
  config, an empty ``HOME``, no askpass, no terminal prompt, no SSH command;
* ``-c`` overrides on every command switch off everything git can execute on its own
  (hooks, fsmonitor, LFS and other filters, pagers, proxy commands, credential helpers other
  than ours) and limit transports to https (``file`` only when explicitly allowed, for tests);
* the token reaches git through a credential helper that reads it from the environment of
  the git child: it is never on a command line, in a URL or in ``.git/config``;
* every command runs in its own process group with a wall-clock timeout and, optionally, a
  cap on the bytes a watched directory may grow to; exceeding either kills the whole group.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from auto_review.core.errors import PermanentError, TransientError

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

TOKEN_ENV = "AR_GIT_TOKEN"  # noqa: S105 - the name of a variable, not a secret
USERNAME_ENV = "AR_GIT_USERNAME"
HOST_ENV = "AR_GIT_HOST"

# A `!` helper runs through /bin/sh; `printf` is a shell builtin, so the token is never in the
# argv of any process. The helper answers only `get`, only for https and only for the one host
# it was configured for, so a redirect or a second URL cannot harvest the token.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; h=; p=; '
    'while IFS= read -r l && test -n "$l"; do case "$l" in '
    "host=*) h=${l#host=};; protocol=*) p=${l#protocol=};; esac; done; "
    f'test "$p" = https && test -n "$h" && test "$h" = "${HOST_ENV}" || return 0; '
    f'printf \'username=%s\\npassword=%s\\n\' "${USERNAME_ENV}" "${TOKEN_ENV}"; }}; f'
)

# Settings that make git execute a program, follow the network elsewhere, or change what is
# written to the work tree. Later `-c` values win over every config file, including the
# repository-local one, so these hold even if `.git/config` were tampered with.
_HARDENING: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.askPass", ""),
    ("core.sshCommand", ""),
    ("core.gitProxy", ""),
    ("core.pager", "cat"),
    ("core.editor", "false"),
    ("core.attributesFile", "/dev/null"),
    ("core.symlinks", "true"),
    ("core.protectNTFS", "true"),
    ("core.protectHFS", "true"),
    ("core.autocrlf", "false"),
    ("core.safecrlf", "false"),
    ("core.quotePath", "true"),
    ("core.splitIndex", "false"),
    ("safe.bareRepository", "explicit"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("fetch.writeCommitGraph", "false"),
    ("filter.lfs.smudge", ""),
    ("filter.lfs.clean", ""),
    ("filter.lfs.process", ""),
    ("filter.lfs.required", "false"),
    ("diff.noprefix", "false"),
    ("diff.mnemonicPrefix", "false"),
    ("diff.relative", "false"),
    ("diff.renames", "true"),
    ("color.ui", "false"),
    ("log.showSignature", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("advice.detachedHead", "false"),
    ("init.templateDir", ""),
    ("http.followRedirects", "false"),
    ("protocol.version", "2"),
    ("protocol.allow", "never"),
    ("protocol.https.allow", "always"),
)

# Attributes that select drivers or conversions, forced back to "unspecified" for every path
# in `$GIT_DIR/info/attributes` (highest precedence), so a hostile `.gitattributes` cannot name
# a filter or diff driver, and files are written byte for byte as committed.
NEUTRAL_ATTRIBUTES = b"* !filter !diff !merge !text !eol !ident !working-tree-encoding\n"


_SUBCOMMAND = re.compile(r"^[a-z][a-z0-9-]*$")


class GitError(Exception):
    """A git command failed; the message is redacted (no token, no URL credentials)."""


class GitTimeout(GitError, TransientError):
    """A git command ran past its time limit and its process group was killed."""


class GitSizeExceeded(GitError, PermanentError):
    """A watched directory grew past its byte cap; the git process group was killed."""


class GitUnavailable(GitError):
    """No git binary could be found."""


class GitNetworkError(GitError, TransientError):
    """git could not talk to the remote: connection refused or reset, a name that did not
    resolve, a stream that ended early, or an HTTP 5xx/408/429 answer. Worth retrying."""


class GitAuthRefused(GitError, PermanentError):
    """The remote answered HTTP 401 to the credentials git sent (or asked for some when none
    were configured). Retrying with the same credentials cannot help."""


# What git (LC_ALL=C) prints on stderr, read in this order: the first family that matches
# decides. A refused ref, a missing repository, a bad certificate or a corrupt repository
# on the remote are permanent even when the broken stream also looks like a network error;
# anything git says that matches none of them is a plain GitError, permanent too.
_AUTH_REFUSED = re.compile(
    r"Authentication failed for|could not read (?:Username|Password) for", re.IGNORECASE
)
_PERMANENT = re.compile(
    r"repository corruption|is corrupt|bad object|couldn't find remote ref|not our ref"
    r"|unadvertised object|repository '[^']*' not found|SSL certificate problem"
    r"|certificate verify|returned error: 4(?!08|29)\d\d"
    r"|code 4(?!08|29)\d\d from proxy after CONNECT"
    r"|CONNECT tunnel failed, response 4(?!08|29)\d\d",
    re.IGNORECASE,
)
_NETWORK = re.compile(
    r"Failed to connect|Couldn't connect|Connection refused|Connection reset"
    r"|Connection timed out|Operation timed out|Could not resolve (?:host|proxy)"
    r"|early EOF|remote end hung up unexpectedly|unexpected disconnect"
    r"|bytes of body are still expected|expected flush after|RPC failed"
    r"|transfer closed with outstanding read data|Empty reply from server"
    r"|GnuTLS recv error|SSL_read|SSL_ERROR_SYSCALL|TLS connection was non-properly terminated"
    r"|Recv failure|Send failure|HTTP/2 stream|returned error: (?:5\d\d|408|429)"
    r"|HTTP (?:5\d\d|408|429)|code (?:5\d\d|408|429) from proxy after CONNECT"
    r"|CONNECT tunnel failed, response (?:5\d\d|408|429)",
    re.IGNORECASE,
)


def classify_failure(stderr_text: str, message: str) -> GitError:
    """The GitError subclass for what git printed (see the patterns above)."""
    if _AUTH_REFUSED.search(stderr_text):
        return GitAuthRefused(message)
    if _PERMANENT.search(stderr_text):
        return GitError(message)
    if _NETWORK.search(stderr_text):
        return GitNetworkError(message)
    return GitError(message)


@dataclass(frozen=True, slots=True)
class GitCredentials:
    """Basic-auth credentials answered by the credential helper for one https host.

    ``host`` is what git sends in the credential request: the host name, plus ``:port`` when
    the URL has an explicit port.
    """

    username: str
    token: str = field(repr=False)
    host: str

    def __post_init__(self) -> None:
        for name in ("username", "token", "host"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"git credentials: {name} must be a non-empty string")
            if any(ch in value for ch in "\n\r\0"):
                raise ValueError(f"git credentials: {name} contains a forbidden control character")


@dataclass(frozen=True, slots=True)
class GitPolicy:
    """Operator-level choices for git subprocesses.

    ``allow_file_protocol`` exists for tests with local remotes; production leaves it off.
    The proxy and CA settings pass through only when set here: nothing is taken from the
    caller's environment.
    """

    allow_file_protocol: bool = False
    https_proxy: str | None = None
    no_proxy: str | None = None
    ca_file: Path | None = None
    trace_file: Path | None = None  # GIT_TRACE destination, for diagnostics

    def config(self, credentials: GitCredentials | None) -> list[tuple[str, str]]:
        pairs = list(_HARDENING)
        pairs.append(("protocol.file.allow", "always" if self.allow_file_protocol else "never"))
        pairs.append(("http.proxy", self.https_proxy or ""))
        if self.ca_file is not None:
            pairs.append(("http.sslCAInfo", str(self.ca_file)))
        # An empty value first resets any helper list inherited from any config file.
        pairs.append(("credential.helper", ""))
        if credentials is not None:
            pairs.append(("credential.helper", CREDENTIAL_HELPER))
        return pairs


def config_arguments(pairs: Sequence[tuple[str, str]]) -> list[str]:
    argv: list[str] = []
    for key, value in pairs:
        argv += ["-c", f"{key}={value}"]
    return argv


def hermetic_environment(
    home: Path, policy: GitPolicy, credentials: GitCredentials | None
) -> dict[str, str]:
    """The complete environment of a git child; nothing is inherited from this process."""
    env = {
        "PATH": SAFE_PATH,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_SYSTEM": "/dev/null",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "GIT_ALLOW_PROTOCOL": "https:file" if policy.allow_file_protocol else "https",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
    }
    if policy.https_proxy:
        env["HTTPS_PROXY"] = env["https_proxy"] = policy.https_proxy
    if policy.no_proxy:
        env["NO_PROXY"] = env["no_proxy"] = policy.no_proxy
    if policy.trace_file is not None:
        env["GIT_TRACE"] = str(policy.trace_file)
    if credentials is not None:
        env[TOKEN_ENV] = credentials.token
        env[USERNAME_ENV] = credentials.username
        env[HOST_ENV] = credentials.host
    return env


def find_git(explicit: str | None = None) -> str:
    found = explicit or shutil.which("git", path=SAFE_PATH)
    if not found or not os.access(found, os.X_OK):
        raise GitUnavailable("git executable not found on " + SAFE_PATH)
    return found


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class GitResult:
    stdout: bytes
    stderr: bytes


@dataclass(slots=True)
class GitRunner:
    """Runs git commands against one git directory with the hermetic set-up."""

    home: Path
    git_dir: Path
    work_tree: Path | None = None
    policy: GitPolicy = field(default_factory=GitPolicy)
    credentials: GitCredentials | None = None
    git: str = field(default_factory=find_git)
    poll_interval: float = 0.1

    def argv(self, args: Sequence[str]) -> list[str]:
        # The subcommand must come first: a leading "-c key=value" would be parsed after our
        # overrides and win over them.
        if not args or not _SUBCOMMAND.match(args[0]):
            raise GitError("git arguments must start with a subcommand name")
        argv = [self.git, "--no-pager", "--git-dir", str(self.git_dir)]
        if self.work_tree is not None:
            argv += ["--work-tree", str(self.work_tree)]
        argv += config_arguments(self.policy.config(self.credentials))
        return [*argv, *args]

    def environment(self) -> dict[str, str]:
        return hermetic_environment(self.home, self.policy, self.credentials)

    def _secrets(self) -> list[str]:
        return [self.credentials.token] if self.credentials else []

    def _failure(self, what: str, stderr: bytes) -> GitError:
        # One line: the last lines of stderr, joined, redacted, control characters dropped.
        text = redact(stderr.decode("utf-8", "replace"), self._secrets())
        printable = "".join(ch if ch.isprintable() or ch == "\n" else " " for ch in text)
        lines = [" ".join(line.split()) for line in printable.splitlines()]
        detail = " | ".join(line for line in lines if line)[-1500:]
        return classify_failure(text, f"git {what} failed" + (f": {detail}" if detail else ""))

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        watch: Mapping[Path, int] | None = None,
        stdin: bytes | None = None,
    ) -> GitResult:
        """Run one git command to completion.

        ``watch`` maps directories to byte caps, checked while the command runs.
        """
        what = args[0] if args else "command"
        proc = subprocess.Popen(
            self.argv(args),
            env=self.environment(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            cwd=str(self.home),
        )
        deadline = time.monotonic() + timeout
        next_size_check = 0.0
        pending_input = stdin
        try:
            while True:
                try:
                    out, err = proc.communicate(pending_input, timeout=self.poll_interval)
                    break
                except subprocess.TimeoutExpired:
                    pending_input = None
                if time.monotonic() > deadline:
                    _kill_group(proc)
                    proc.communicate()
                    raise GitTimeout(f"git {what} exceeded its time limit of {timeout:g}s")
                if watch and time.monotonic() >= next_size_check:
                    started = time.monotonic()
                    for directory, cap in watch.items():
                        if tree_size(directory, stop_above=cap) > cap:
                            _kill_group(proc)
                            proc.communicate()
                            raise GitSizeExceeded(
                                f"git {what} exceeded the size cap of {cap} bytes"
                            )
                    # Walking a large tree is not free: spend at most ~20% of the time on it.
                    next_size_check = time.monotonic() + 4 * (time.monotonic() - started)
        finally:
            _kill_group(proc)
        if proc.returncode != 0:
            raise self._failure(what, err)
        return GitResult(out, err)

    @contextmanager
    def stream(self, args: Sequence[str], *, timeout: float) -> Iterator[IO[bytes]]:
        """Run a git command whose stdout is consumed as a stream (e.g. a large diff).

        A watchdog kills the process group at the deadline; a failed exit raises on leaving
        the block. Large outputs must use this, not :meth:`run`, which buffers them.
        """
        what = args[0] if args else "command"
        # stderr goes to an anonymous file: nothing appears in the (empty) HOME.
        with tempfile.TemporaryFile() as err_file:
            proc = subprocess.Popen(
                self.argv(args),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err_file,
                start_new_session=True,
                close_fds=True,
                cwd=str(self.home),
            )
            watchdog = _Watchdog(proc, timeout)
            try:
                assert proc.stdout is not None
                yield proc.stdout
                proc.stdout.close()
                proc.wait()
            finally:
                watchdog.cancel()
                _kill_group(proc)
                proc.wait()
                err_file.seek(0)
                stderr = err_file.read(64 * 1024)
            if watchdog.fired:
                raise GitTimeout(f"git {what} exceeded its time limit of {timeout:g}s")
            # SIGPIPE: the caller stopped reading early on purpose; that is not a git failure.
            if proc.returncode not in (0, -signal.SIGPIPE):
                raise self._failure(what, stderr)


class _Watchdog:
    def __init__(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        self.fired = False
        self._proc = proc
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        _kill_group(self._proc)

    def cancel(self) -> None:
        self._timer.cancel()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The child leads its own session, so its pid is the group id; helpers it spawned
    # (remote-https, credential helper) die with it.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def tree_size(root: Path, *, stop_above: int | None = None) -> int:
    """Bytes used by regular files under ``root`` (symlinks not followed); 0 if absent."""
    total = 0
    stack = [str(root)]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
                if stop_above is not None and total > stop_above:
                    return total
    return total
