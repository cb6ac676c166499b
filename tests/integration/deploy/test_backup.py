"""The backup DEPLOYMENT.md gives: `sqlite3 state.sqlite3 ".backup FILE"` on a running
gateway, while it accepts deliveries, is a consistent database another gateway can run on."""

from __future__ import annotations

import contextlib
import copy
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.gateway.conftest import (
    FORGEJO_TOKEN,
    base_settings,
    post_forgejo,
    stop_and_check,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import start_gateway
from tests.support.prometheus_text import sample_value
from tests.support.reference import load_json, reference_path

from auto_review.store.sqlite_intake import STATE_FILE_NAME

DELIVERIES = 40


def sqlite3_cli() -> str:
    path = shutil.which("sqlite3")
    if path is None:
        pytest.fail("sqlite3 not found: install Debian's `sqlite3` package")
    return path


@pytest.fixture
def forge() -> Iterator[FakeForgejo]:
    with FakeForgejo(FORGEJO_TOKEN) as fake:
        yield fake


def pending_heads(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT dedup_key FROM jobs WHERE status = 'pending'").fetchall()
    return {key.split("|")[3] for (key,) in rows}


def test_online_backup_of_a_busy_gateway_restores_into_a_working_one(
    tmp_path: Path, forge: FakeForgejo
) -> None:
    template = load_json(
        reference_path("forge", "payloads", "gitea_pull_request_synchronized.json")
    )
    # No LLM: no worker runs, so every accepted job stays queued and countable.
    first = start_gateway(tmp_path / "first", base_settings(forge.url), runner="none")
    backups = tmp_path / "backups"
    backups.mkdir()
    try:
        with httpx.Client(base_url=first.base_url, timeout=30) as client:

            def deliver(start: int, stop: int) -> None:
                for n in range(start, stop):
                    payload = copy.deepcopy(template)
                    # One pull request each: a newer head of the same one would supersede.
                    payload["number"] = payload["pull_request"]["number"] = 100 + n
                    payload["pull_request"]["head"]["sha"] = f"{n:040x}"
                    assert post_forgejo(client, payload, "pull_request").status_code == 202

            deliver(0, DELIVERIES // 2)
            writer = threading.Thread(target=deliver, args=(DELIVERIES // 2, DELIVERIES))
            writer.start()
            # While the second half is being accepted: a snapshot of some consistent moment.
            during = subprocess.run(
                [sqlite3_cli(), STATE_FILE_NAME, f".backup {backups / 'during.sqlite3'}"],
                cwd=first.state_dir,
                capture_output=True,
                text=True,
                timeout=60,
            )
            writer.join()
            assert during.returncode == 0, during.stderr
            after = subprocess.run(
                [sqlite3_cli(), STATE_FILE_NAME, f".backup {backups / 'after.sqlite3'}"],
                cwd=first.state_dir,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert after.returncode == 0, after.stderr
    finally:
        stop_and_check(first)

    every_head = {f"{n:040x}" for n in range(DELIVERIES)}
    snapshot = pending_heads(backups / "during.sqlite3")
    # At least the first half, never a job the gateway did not accept.
    assert {f"{n:040x}" for n in range(DELIVERIES // 2)} <= snapshot <= every_head
    assert pending_heads(backups / "after.sqlite3") == every_head

    # Restore: a fresh state directory with only the backup in it, and a new gateway on it.
    restored = tmp_path / "second" / "state"
    restored.mkdir(parents=True, mode=0o700)
    shutil.copy(backups / "after.sqlite3", restored / STATE_FILE_NAME)
    (restored / STATE_FILE_NAME).chmod(0o600)
    second = start_gateway(tmp_path / "second", base_settings(forge.url), runner="none")
    try:
        with httpx.Client(base_url=second.base_url, timeout=30) as client:
            metrics = client.get("/metrics").text
            assert sample_value(metrics, "auto_review_queue_depth") == DELIVERIES
            # The jobs came along: the same head again is a duplicate job.
            payload = copy.deepcopy(template)
            payload["number"] = payload["pull_request"]["number"] = 100
            payload["pull_request"]["head"]["sha"] = f"{0:040x}"
            again = post_forgejo(client, payload, "pull_request")
            assert again.status_code == 200 and again.json()["duplicate"] == "job"
    finally:
        stop_and_check(second)
