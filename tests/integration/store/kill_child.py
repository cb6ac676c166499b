"""Child process of the SIGKILL test.

Opens the intake store, accepts a burst of deliveries in waves and prints `ACK <n>` the moment
each accept() returns (that is when the gateway would answer 202). With `--workers`, a worker
pool runs the jobs meanwhile, slowly, so some are mid-run when the parent kills us
(`HANG <job id>` is printed when a run starts that will never end).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from auto_review.core.jobs import Job, JobKind, JobOutcome, JobRequest
from auto_review.core.refs import HostKind, RepoRef
from auto_review.gateway.worker import WorkerPool
from auto_review.store.base import DeliveryRef
from auto_review.store.sqlite_intake import SqliteIntakeStore


def burst_request(n: int) -> JobRequest:
    return JobRequest(
        kind=JobKind.REVIEW,
        repo=RepoRef(HostKind.FORGEJO, "acme", "widget"),
        pr_number=n + 1,
        head_sha=f"{n:040x}",
        comment_id=None,
        argument="",
        requested_by="alice",
        source="webhook",
    )


class SlowRunner:
    """Every fifth pull request hangs (and says so), so the kill finds jobs mid-run."""

    async def run(self, job: Job) -> JobOutcome:
        if job.request.pr_number % 5 == 0:
            sys.stdout.write(f"HANG {job.id}\n")
            sys.stdout.flush()
            await asyncio.Event().wait()
        await asyncio.sleep(0.01)
        return JobOutcome.SUCCEEDED

    async def conclude(self, job: Job, reason: str) -> None:
        pass  # no job here is stopped at a time limit


async def main(state_dir: Path, count: int, wave: int, workers: bool) -> None:
    store = SqliteIntakeStore.open(state_dir)
    if workers:
        await WorkerPool(store, SlowRunner(), concurrency=2).start()

    async def accept(n: int) -> None:
        await store.accept(DeliveryRef("forgejo", f"kill-{n}"), [burst_request(n)])
        sys.stdout.write(f"ACK {n}\n")
        sys.stdout.flush()

    for start in range(0, count, wave):
        await asyncio.gather(*(accept(n) for n in range(start, min(start + wave, count))))
        await asyncio.sleep(0.005)
    sys.stdout.write("ALL\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # until the SIGKILL


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--wave", type=int, default=20)
    parser.add_argument("--workers", action="store_true")
    options = parser.parse_args()
    asyncio.run(main(options.state_dir, options.count, options.wave, options.workers))
