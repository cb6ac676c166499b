"""SIGKILL right after accept() answered: a restarted store has every acknowledged job, once,
and a worker pool then runs each job exactly once to the end."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from auto_review.core.jobs import RecordingRunner
from auto_review.gateway.worker import WorkerPool
from auto_review.store.base import DeliveryRef, JobStatus
from auto_review.store.sqlite_intake import STATE_FILE_NAME, SqliteIntakeStore

CHILD = Path(__file__).with_name("kill_child.py")
COUNT = 300


def run_child_and_kill(
    state_dir: Path, kill_after: str, *extra: str, hangs: int = 0
) -> tuple[set[int], set[int]]:
    """Start the child; SIGKILL it once `kill_after` is printed and `hangs` runs hang.

    Returns the acknowledged delivery numbers and the ids of the jobs hanging mid-run.
    """
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(state_dir), "--count", str(COUNT), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: set[int] = set()
    hanging: set[int] = set()
    seen_mark = False
    try:
        assert child.stdout is not None
        for line in child.stdout:
            word, _, number = line.strip().partition(" ")
            if word == "ACK":
                acked.add(int(number))
            elif word == "HANG":
                hanging.add(int(number))
            seen_mark = seen_mark or line.strip() == kill_after
            if seen_mark and len(hanging) >= hangs:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return acked, hanging


def job_rows(state_dir: Path) -> dict[int, tuple[int, str]]:
    """pr_number -> (job id, status), read straight from the file."""
    with sqlite3.connect(state_dir / STATE_FILE_NAME) as connection:
        rows = connection.execute("SELECT pr_number, id, status FROM jobs").fetchall()
    by_pr = {pr: (job_id, status) for pr, job_id, status in rows}
    assert len(by_pr) == len(rows), "one job per pull request"
    return by_pr


def drain_after_restart(state_dir: Path) -> tuple[list[int], SqliteIntakeStore]:
    store = SqliteIntakeStore.open(state_dir)
    runner = RecordingRunner()

    async def scenario() -> None:
        pool = WorkerPool(store, runner, concurrency=4)
        await pool.start()
        for _ in range(1000):
            counts = store.counts()
            if counts[JobStatus.PENDING] == counts[JobStatus.RUNNING] == 0:
                break
            await asyncio.sleep(0.01)
        await pool.stop()

    asyncio.run(scenario())
    return [job.id for job in runner.jobs], store


@pytest.mark.timeout(120)
def test_jobs_acknowledged_before_a_sigkill_mid_burst_are_all_there_once(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    acked, _ = run_child_and_kill(state_dir, f"ACK {COUNT // 2}")
    assert len(acked) >= COUNT // 4

    rows = job_rows(state_dir)
    for n in acked:
        assert n + 1 in rows, f"acknowledged delivery {n} lost"

    ran, store = drain_after_restart(state_dir)
    try:
        for n in acked:
            assert store.seen_delivery(DeliveryRef("forgejo", f"kill-{n}"))
        # every committed job (acknowledged or committed just before the kill) ran exactly once
        assert sorted(ran) == sorted(job_id for job_id, _ in rows.values())
        assert store.counts()[JobStatus.DONE] == len(rows)
    finally:
        store.close()


@pytest.mark.timeout(120)
def test_jobs_running_at_a_sigkill_are_resumed_and_finished_ones_not_rerun(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    acked, hanging = run_child_and_kill(state_dir, "ALL", "--workers", hangs=2)
    assert len(acked) == COUNT

    rows = job_rows(state_dir)
    assert set(rows) == {n + 1 for n in acked}
    finished_before = {job_id for job_id, status in rows.values() if status == "done"}
    interrupted = {job_id for job_id, status in rows.values() if status == "running"}
    assert finished_before, "the child's workers should have finished some jobs"
    assert interrupted == hanging  # both workers were stuck mid-run when killed

    ran, store = drain_after_restart(state_dir)
    try:
        assert len(ran) == len(set(ran)), "a job ran twice after the restart"
        assert not finished_before & set(ran), "a finished job ran again"
        assert interrupted <= set(ran)
        assert finished_before | set(ran) == {job_id for job_id, _ in rows.values()}
        assert store.counts() == {
            JobStatus.PENDING: 0,
            JobStatus.RUNNING: 0,
            JobStatus.DONE: COUNT,
            JobStatus.FAILED: 0,
        }
    finally:
        store.close()
