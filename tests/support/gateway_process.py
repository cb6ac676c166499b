"""A real gateway in a subprocess, on a loopback port, with a recording job runner.

The parent binds ``127.0.0.1:0`` and hands the listening socket to the child as an
inherited descriptor, the way the isolation launcher does, so tests exercise
``serve(sock=...)`` and never race for a port. The child's stderr (its JSON log lines)
goes to a file that tests read, e.g. to check no secret ever appears in it. Every job the
worker pool runs is appended to a JSON-lines file by the recording runner.

Run as a script, this file is the child: ``python gateway_process.py`` with
``GATEWAY_TEST_FD``, ``GATEWAY_TEST_JOBS`` and ``GATEWAY_TEST_RUNNER`` set.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from auto_review.store.sqlite_intake import STATE_FILE_NAME

STARTUP_TIMEOUT_SECONDS = 30.0

# Runner modes: "record" answers SUCCEEDED; "crash" raises an exception whose message
# quotes every configured secret (the logs must still show none); "slow" sleeps first;
# "hang" never returns (for kill-and-restart tests).
RUNNER_MODES = ("record", "crash", "slow", "hang", "none")


def sign_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def forgejo_headers(
    secret: str, body: bytes, event: str, delivery: str | None = None
) -> dict[str, str]:
    """Headers of a Forgejo delivery (it sends the Gitea names too)."""
    signature = sign_hex(secret, body)
    delivery = delivery or str(uuid.uuid4())
    return {
        "Content-Type": "application/json",
        "X-Forgejo-Event": event,
        "X-Gitea-Event": event,
        "X-Forgejo-Delivery": delivery,
        "X-Gitea-Delivery": delivery,
        "X-Forgejo-Signature": signature,
        "X-Gitea-Signature": signature,
    }


def github_headers(
    secret: str, body: bytes, event: str, delivery: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + sign_hex(secret, body),
    }


@dataclass
class GatewayProcess:
    """Handle on a running gateway subprocess."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    jobs_path: Path
    state_dir: Path
    env: dict[str, str] = field(repr=False)

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def recorded_jobs(self) -> list[dict[str, Any]]:
        if not self.jobs_path.exists():
            return []
        lines = self.jobs_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line]

    def queued_jobs(self, **fields: object) -> list[dict[str, Any]]:
        """Job rows in the gateway's state store matching ``fields`` (column = value).

        The gateway commits every accepted job before it answers 2xx, so once a response
        is in hand this is final for that request: a test that checks that nothing was
        queued reads it instead of waiting for a runner that might still be on its way.
        """
        path = self.state_dir / STATE_FILE_NAME
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            rows = [dict(row) for row in db.execute("SELECT * FROM jobs ORDER BY id")]
        return [row for row in rows if all(row.get(k) == v for k, v in fields.items())]

    def wait_until_idle(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until no job row is pending or running, and return the rows.

        Past this point no runner can record anything more, so a test may then check that
        nothing was run twice or run at all."""

        # Imported here: this file also runs as the gateway child, where tests/ is no package.
        from tests.support.waiting import wait_until

        def idle() -> bool:
            return not any(row["status"] in ("pending", "running") for row in self.queued_jobs())

        wait_until(idle, timeout=timeout, what="no job pending or running")
        return self.queued_jobs()

    def finished_jobs(self) -> list[dict[str, Any]]:
        path = done_path(self.jobs_path)
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line]

    def wait_for_jobs(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.recorded_jobs()
            if len(jobs) >= count or time.monotonic() > deadline:
                return jobs
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the graceful shutdown, return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def done_path(jobs_path: Path) -> Path:
    """Where the recording runner appends the jobs it finished."""
    return jobs_path.with_name(jobs_path.name + ".done")


def concluded_path(jobs_path: Path) -> Path:
    """Where the recording runner appends the jobs the worker concluded (time limit)."""
    return jobs_path.with_name(jobs_path.name + ".concluded")


def gateway_env(state_dir: Path, settings: Mapping[str, str]) -> dict[str, str]:
    """A clean environment: no AR_* from the caller's shell leaks into the gateway."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AR_")}
    env.update(
        {
            "AR_GATEWAY_BARE": "true",
            "AR_STATE_DIR": str(state_dir),
            "AR_POLL_INTERVAL_SECONDS": "0",
            "AR_LOG_FORMAT": "json",
            "AR_LOG_LEVEL": "info",
        }
    )
    env.update(settings)
    return env


def start_gateway(
    workdir: Path,
    settings: Mapping[str, str],
    *,
    runner: str = "record",
    wait: bool = True,
) -> GatewayProcess:
    """Start a gateway with ``settings`` (AR_* names) and wait until /healthz answers."""
    if runner not in RUNNER_MODES:
        raise ValueError(f"runner must be one of {RUNNER_MODES}")
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir = workdir / "state"
    log_path = workdir / "gateway.log"
    jobs_path = workdir / "jobs.jsonl"
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listener.getsockname()[1]
    env = gateway_env(state_dir, settings)
    env.update(
        {
            "GATEWAY_TEST_FD": str(listener.fileno()),
            "GATEWAY_TEST_JOBS": str(jobs_path),
            "GATEWAY_TEST_RUNNER": runner,
        }
    )
    # Appended, so a restart on the same workdir keeps the earlier run's lines.
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
    listener.close()  # the child holds its own copy
    gateway = GatewayProcess(
        process, f"http://127.0.0.1:{port}", log_path, jobs_path, state_dir, env
    )
    if wait:
        wait_until_healthy(gateway)
    return gateway


def wait_until_healthy(gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    with httpx.Client(base_url=gateway.base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with status {gateway.process.returncode} during startup; "
                    f"log:\n{gateway.logs()}"
                )
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    gateway.stop()
    raise RuntimeError(f"gateway did not become healthy; log:\n{gateway.logs()}")


# ---- the child ---------------------------------------------------------------------------


class _FileRecordingRunner:
    """Appends each job to a JSON-lines file, then answers per the runner mode."""

    def __init__(self, path: Path, mode: str, secrets: list[str]) -> None:
        self.path = path
        self.mode = mode
        self.secrets = secrets

    async def run(self, job: Any) -> Any:
        import asyncio

        from auto_review.core.jobs import JobOutcome

        request = job.request
        record = {
            "id": job.id,
            "attempts": job.attempts,
            "kind": str(request.kind),
            "host": str(request.repo.host),
            "repo": request.repo.full_name,
            "pr": request.pr_number,
            "head_sha": request.head_sha,
            "comment_id": request.comment_id,
            "argument": request.argument,
            "requested_by": request.requested_by,
            "source": request.source,
        }
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        if self.mode == "slow":
            await asyncio.sleep(0.5)
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "crash":
            raise RuntimeError("runner crashed; secrets in scope: " + " ".join(self.secrets))
        # Completions go to their own file, so a test can tell started from finished work.
        with done_path(self.path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return JobOutcome.SUCCEEDED

    async def conclude(self, job: Any, reason: str) -> None:
        with concluded_path(self.path).open("a", encoding="utf-8") as out:
            out.write(json.dumps({"id": job.id, "reason": reason}) + "\n")


def _child_main() -> int:
    from auto_review.config import SettingsError, load_settings
    from auto_review.core.logs import configure_logging
    from auto_review.gateway.service import serve
    from auto_review.wiring.redaction import install_secrets, redact

    try:
        settings = load_settings(environ=os.environ)
    except SettingsError as exc:
        print(f"auto-review gateway: {redact(str(exc))}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_format,
        settings.log_level,
        install_secrets(settings.secret_values()),
        stream=sys.stderr,
    )
    listener = socket.socket(fileno=int(os.environ["GATEWAY_TEST_FD"]))
    if os.environ.get("GATEWAY_TEST_RUNNER") == "none":
        return serve(settings, None, sock=listener)
    runner = _FileRecordingRunner(
        Path(os.environ["GATEWAY_TEST_JOBS"]),
        os.environ.get("GATEWAY_TEST_RUNNER", "record"),
        settings.secret_values(),
    )
    return serve(settings, runner, sock=listener)


if __name__ == "__main__":
    sys.exit(_child_main())
