"""`auto-review worker` (bare) beside an intake-only `auto-review gateway --workers 0`, both
the real command on one PostgreSQL: the gateway accepts a signed webhook and runs nothing,
the worker clones the pull request from a loopback HTTPS forge, asks a loopback LLM and
posts the review. The worker's HTTP listener answers probes, not webhooks. The settings the
worker needs are refused by name when missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from tests.integration.review.test_pipeline_setup import (
    CHEAP_MODEL,
    REASONING_MODEL,
    ModelScript,
    finding,
    findings_answer,
    forgejo_pr_delivery,
)
from tests.support.fake_llm import FakeLlm
from tests.support.gateway_process import forgejo_headers
from tests.support.https_forge import HttpsForgejo, make_private_ca
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

BOT = "auto-review-bot"
TOKEN = "CANARY-forge-token-w0rker-5b1c"
WEBHOOK_SECRET = "CANARY-webhook-secret-w0rker-77d2a9"
LLM_KEY = "CANARY-llm-key-w0rker-0a9e"
CANARIES = (TOKEN, WEBHOOK_SECRET, LLM_KEY)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def command(
    workdir: Path, name: str, settings: dict[str, str], *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`auto-review NAME --bare` with ``settings``, its log file, stopped with SIGTERM."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AR_")}
    env.update(settings)
    env.update(AR_GATEWAY_BIND=f"127.0.0.1:{port}", AR_STATE_DIR=str(workdir / name / "state"))
    (workdir / name).mkdir(parents=True)
    log = workdir / name / "log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "auto_review.cli.main", name, "--bare", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=60, what=f"{name} healthy")
        yield process, base_url, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def jobs(server: PostgresServer, database: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(server.url(database), autocommit=True) as connection:
        return connection.execute("SELECT status, outcome FROM jobs ORDER BY id").fetchall()


def test_an_intake_only_gateway_and_a_worker_review_a_pull_request(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database("worker_role")
    tls = make_private_ca(tmp_path / "tls")
    forge = HttpsForgejo.serve(tmp_path / "served", tls, token=TOKEN, bot_login=BOT)
    llm = FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    try:
        llm.respond(ModelScript([findings_answer(finding("cart.py", 2, title="Twice"))]))
        repo = forge.create_repository("acme", "shop", {"cart.py": "a = 1\n"}, number=1)
        repo.push({"cart.py": "a = 1\nb = a - a - a\n"})
        forge.publish(repo, body="Adds b.")
        settings = {
            "AR_DATABASE_URL": postgres_server.url(database),
            "AR_FORGEJO_URL": forge.url,
            "AR_FORGEJO_TOKEN": TOKEN,
            "AR_CA_FILE": str(tls.ca),
            "AR_BOT_LOGIN": BOT,
            "AR_LLM_BASE_URL": llm.url,
            "AR_LLM_API_KEY": LLM_KEY,
            "AR_LLM_REASONING_MODEL": REASONING_MODEL,
            "AR_LLM_CHEAP_MODEL": CHEAP_MODEL,
            "AR_POLL_INTERVAL_SECONDS": "0",
            "AR_LOG_FORMAT": "json",
        }
        gateway_settings = {**settings, "AR_WEBHOOK_SECRET": WEBHOOK_SECRET}
        with command(tmp_path, "gateway", gateway_settings, "--workers", "0") as (_, gw, gw_log):
            body = json.dumps(
                forgejo_pr_delivery("acme", "shop", 1, repo.head_sha, repo.base_sha)
            ).encode()
            headers = forgejo_headers(WEBHOOK_SECRET, body, "pull_request")
            assert (
                httpx.post(f"{gw}/webhooks/forgejo", content=body, headers=headers).status_code
                == 202
            )
            # Committed and left for a worker: nobody here runs it.
            assert jobs(postgres_server, database) == [("pending", None)]
            assert forge.posted_reviews("acme", "shop", 1) == []
            # The worker: no webhook secret needed, it receives none.
            with command(tmp_path, "worker", settings) as (_, worker, worker_log):
                wait_until(
                    lambda: jobs(postgres_server, database) == [("done", "succeeded")],
                    timeout=90,
                    what="the worker finishing the job",
                )
                assert httpx.get(f"{worker}/info").json()["role"] == "worker"
                assert httpx.get(f"{gw}/info").json()["role"] == "gateway"
                refused = httpx.post(f"{worker}/webhooks/forgejo", content=body, headers=headers)
                assert refused.status_code == 404
                metrics = httpx.get(f"{worker}/metrics").text
                assert 'auto_review_jobs_total{outcome="succeeded"} 1.0' in metrics
            assert jobs(postgres_server, database) == [("done", "succeeded")]  # one job, once
        [review] = forge.posted_reviews("acme", "shop", 1)
        assert review.commit_id == repo.head_sha
        assert [(c.path, c.line) for c in review.comments] == [("cart.py", 2)]
        assert "Twice" in review.comments[0].body
        logs = gw_log.read_text() + worker_log.read_text()
        assert "intake only (AR_WORKERS=0)" in gw_log.read_text()
        assert "worker listening" in worker_log.read_text()
        for canary in CANARIES:
            assert canary not in logs
    finally:
        forge.stop()
        llm.stop()


def run_worker(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AR_")}
    env.update(
        AR_STATE_DIR=str(tmp_path / "state"),
        AR_FORGEJO_URL="https://forge.internal",
        AR_FORGEJO_TOKEN=TOKEN,
        **settings,
    )
    return subprocess.run(
        [sys.executable, "-m", "auto_review.cli.main", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_worker_without_postgres_or_llm_is_refused_naming_the_settings(
    tmp_path: Path,
) -> None:
    result = run_worker(tmp_path, AR_GATEWAY_BARE="true")
    assert result.returncode == 2
    assert "AR_DATABASE_URL (environment or env file only) is required by auto-review worker" in (
        result.stderr
    )
    assert "AR_LLM_BASE_URL (--llm-base-url) and AR_LLM_REASONING_MODEL are required" in (
        result.stderr
    )
    assert TOKEN not in result.stderr + result.stdout
