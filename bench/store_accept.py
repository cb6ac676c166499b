"""Throughput and latency of durable intake: concurrent `SqliteIntakeStore.accept()` calls.

Usage:
    python3 bench/store_accept.py                       # both modes, synchronous=FULL
    python3 bench/store_accept.py --synchronous NORMAL  # compare with NORMAL
    python3 bench/store_accept.py --mode open --rate 1500 --seconds 10
    python3 bench/store_accept.py --postgres            # PostgresIntakeStore instead, on a
                                                        # throwaway local cluster

Modes:
  closed  N callers (--concurrency) each call accept() back to back: the most the store
          can take. --concurrency 1 shows one transaction (and one fsync) per accept.
  open    accept() calls start on a fixed schedule (--rate per second), as webhooks arrive;
          latency counts from the scheduled start, so a stalled writer shows up in p99.
          --request-cpu-us N busy-waits N microseconds on the event loop before each
          accept, standing in for the HTTP request work of the real gateway.

Every accept is one new delivery plus one new review job, committed (fsync'd with FULL)
before it returns. The jobs go round --prs pull requests (default 100,000: every job is
the first of its pull request); with fewer, each new head supersedes the queued review of
the pull request's previous head (coalescing), as pushes to busy pull requests do.
With --postgres the store is `PostgresIntakeStore` on a throwaway cluster that
tests/support/postgres.py starts (Debian's server binaries, fsync on, shared_buffers 16 MB,
over TCP on loopback with a password), one transaction per accept from a pool of
--pool-size connections; "accepts per commit" does not apply there.
The state directory is a fresh temporary directory on the disk that
holds --dir (default: the system temp dir). Also printed: the raw fsync cost there, and
the mean number of accepts per group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from auto_review.core.jobs import JobKind, JobRequest
from auto_review.core.refs import HostKind, RepoRef
from auto_review.store.base import DeliveryRef
from auto_review.store.sqlite_intake import SqliteIntakeStore

REPO = RepoRef(HostKind.FORGEJO, "bench", "widget")
PULL_REQUESTS = [100_000]  # --prs


def request(n: int) -> JobRequest:
    return JobRequest(
        kind=JobKind.REVIEW,
        repo=REPO,
        pr_number=1 + n % PULL_REQUESTS[0],
        head_sha=f"{n:040x}",
        comment_id=None,
        argument="",
        requested_by="alice",
        source="webhook",
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def report(
    label: str,
    latencies: list[float],
    elapsed: float,
    store: Any,
    waited_before: float | None,
) -> None:
    latencies.sort()
    waited_after = run_queue_wait()
    starved = ""
    if waited_before is not None and waited_after is not None:
        # On a shared machine, time the loop thread sat waiting for a CPU explains tails.
        starved = f"  [loop thread waited {waited_after - waited_before:.2f} s for a CPU]"
    per_commit = ""
    if isinstance(store, SqliteIntakeStore):
        batches, operations = store._writer.stats
        per_commit = f"  ({operations / max(batches, 1):.1f} accepts per commit)"
    print(
        f"{label}: {len(latencies)} accepts in {elapsed:.2f} s = {len(latencies) / elapsed:,.0f}/s"
        f"  p50 {percentile(latencies, 0.50) * 1e3:.2f} ms"
        f"  p99 {percentile(latencies, 0.99) * 1e3:.2f} ms"
        f"  max {latencies[-1] * 1e3:.2f} ms"
        f"{per_commit}{starved}"
    )


async def closed_loop(store: Any, concurrency: int, count: int) -> None:
    latencies: list[float] = []
    counter = iter(range(count))

    async def caller() -> None:
        for n in counter:
            started = time.perf_counter()
            await store.accept(DeliveryRef("forgejo", f"c-{n}"), [request(n)])
            latencies.append(time.perf_counter() - started)

    waited = run_queue_wait()
    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    report(f"closed loop, {concurrency} callers", latencies, elapsed, store, waited)


async def open_loop(
    store: Any,
    rate: float,
    seconds: float,
    offset: int,
    request_cpu_seconds: float = 0.0,
) -> None:
    latencies: list[float] = []
    total = int(rate * seconds)
    waited = run_queue_wait()
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    began = time.perf_counter()

    async def one(n: int, due: float) -> None:
        busy_wait(request_cpu_seconds)  # the request's own work (parse, verify) on the loop
        await store.accept(DeliveryRef("forgejo", f"o-{n}"), [request(offset + n)])
        latencies.append(time.perf_counter() - due)

    tasks = []
    for n in range(total):
        due = began + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(n, due)))
    await asyncio.gather(*tasks)
    label = f"open loop at {rate:,.0f}/s"
    if request_cpu_seconds:
        label += f" with {request_cpu_seconds * 1e6:.0f} us of loop work per request"
    report(label, latencies, time.perf_counter() - began, store, waited)


def run_queue_wait() -> float | None:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat)."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def busy_wait(seconds: float) -> None:
    """Hold the GIL on the loop thread, as request parsing and HMAC checks do."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def fsync_cost(directory: Path, rounds: int = 200) -> str:
    probe = directory / "fsync-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
    timings = []
    try:
        for _ in range(rounds):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            timings.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        probe.unlink()
    timings.sort()
    return (
        f"fsync of 4 KiB: p50 {percentile(timings, 0.5) * 1e3:.3f} ms,"
        f" p99 {percentile(timings, 0.99) * 1e3:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["closed", "open", "both"], default="both")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--request-cpu-us",
        type=float,
        default=0.0,
        help="open loop: busy-wait this long on the event loop before each accept",
    )
    parser.add_argument(
        "--prs", type=int, default=100_000, help="pull requests the jobs go round"
    )
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--no-uvloop", action="store_true", help="use the default event loop")
    parser.add_argument(
        "--postgres", action="store_true", help="PostgresIntakeStore on a throwaway cluster"
    )
    parser.add_argument("--pool-size", type=int, default=10, help="with --postgres")
    options = parser.parse_args()
    PULL_REQUESTS[0] = max(options.prs, 1)

    if not options.no_uvloop:
        try:
            import uvloop  # the gateway runs on uvloop

            uvloop.install()
        except ImportError:
            print("uvloop not installed; using the default event loop", file=sys.stderr)

    with tempfile.TemporaryDirectory(dir=options.dir, prefix="store-accept-") as scratch:
        state_dir = Path(scratch) / "state"
        print(f"state dir {state_dir}; synchronous={options.synchronous}; {os.cpu_count()} CPUs")
        print(fsync_cost(Path(scratch)))
        with opened_store(options, state_dir) as store:
            if options.mode in ("closed", "both"):
                asyncio.run(closed_loop(store, options.concurrency, options.count))
            if options.mode in ("open", "both"):
                asyncio.run(
                    open_loop(
                        store,
                        options.rate,
                        options.seconds,
                        options.count,
                        options.request_cpu_us / 1e6,
                    )
                )
            print(f"jobs pending after the run: {store.queue_depth():,}")


@contextmanager
def opened_store(options: argparse.Namespace, state_dir: Path) -> Iterator[Any]:
    if not options.postgres:
        store: Any = SqliteIntakeStore.open(state_dir, synchronous=options.synchronous)
        try:
            yield store
        finally:
            store.close()
        return
    from auto_review.core.secrets import Secret
    from auto_review.store.pg_connect import PgConnection
    from auto_review.store.pg_intake import PostgresIntakeStore
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's tests/
    from tests.support.postgres import running_cluster

    with running_cluster() as server:
        server.create_database("bench")
        print(f"PostgreSQL: throwaway cluster on 127.0.0.1:{server.port}, pool {options.pool_size}")
        connection = PgConnection(
            host="127.0.0.1",
            port=server.port,
            dbname="bench",
            user="postgres",
            password=Secret(server.password),
            ca_file=None,
            pool_size=options.pool_size,
        )
        store = PostgresIntakeStore(connection)
        try:
            yield store
        finally:
            store.close()


if __name__ == "__main__":
    main()
