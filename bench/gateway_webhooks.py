"""Fire signed Forgejo webhooks at a running gateway and print throughput, latency, RSS.

Usage:
    python3 bench/gateway_webhooks.py                 # starts a bare gateway subprocess
    python3 bench/gateway_webhooks.py --compare       # side by side: HMAC-only app, gateway
                                                      # at the default log level, at warning
    python3 bench/gateway_webhooks.py --url http://127.0.0.1:8080 --secret S --pid PID

Each request is a real Gitea ``pull_request`` delivery (from the reference payloads) with
its own delivery id, PR number and head SHA, so every one is verified, parsed, deduplicated
and committed to the durable queue as a new job. The load comes from this process, the
gateway runs in another one. Figures: accepted requests per second, p50/p99 latency, and
the gateway's peak RSS (VmHWM); with --compare also each server's CPU time per request on
its main (event-loop) thread and on its other threads (the gateway's commit thread).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = REPO_ROOT / "tests/reference/forge/payloads/gitea_pull_request_opened.json"
SECRET = "bench-webhook-secret-0123456789abcdef0123456789"


def build_requests(count: int, host: str, secret: str) -> list[bytes]:
    template = json.loads(PAYLOAD.read_text())
    requests: list[bytes] = []
    for index in range(count):
        payload = dict(template)
        pull = dict(template["pull_request"])
        head = dict(pull["head"])
        head["sha"] = hashlib.sha1(f"bench-{index}-{uuid.uuid4()}".encode()).hexdigest()  # noqa: S324
        pull["head"] = head
        pull["number"] = 1 + index % 5000
        payload["pull_request"] = pull
        payload["number"] = pull["number"]
        body = json.dumps(payload).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        head_lines = (
            f"POST /webhooks/forgejo HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "X-Forgejo-Event: pull_request\r\n"
            f"X-Forgejo-Delivery: {uuid.uuid4()}\r\n"
            f"X-Forgejo-Signature: {signature}\r\n\r\n"
        )
        requests.append(head_lines.encode() + body)
    return requests


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def connection_loop(
    host: str, port: int, queue: list[bytes], latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def fire(
    host: str, port: int, requests: list[bytes], concurrency: int
) -> tuple[float, list[float], dict[int, int]]:
    queue = list(requests)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(
        *(connection_loop(host, port, queue, latencies, statuses) for _ in range(concurrency))
    )
    return time.perf_counter() - started, latencies, statuses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(state_dir: str, port: int, log_level: str = "warning") -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AR_GATEWAY_BARE": "true",
        "AR_GATEWAY_BIND": f"127.0.0.1:{port}",
        "AR_STATE_DIR": state_dir,
        "AR_FORGEJO_URL": "http://127.0.0.1:9",
        "AR_FORGEJO_TOKEN": "bench-token-not-used-0000000000000000",
        "AR_WEBHOOK_SECRET": SECRET,
        "AR_RATE_LIMIT_PER_MINUTE": "100000000",
        "AR_RATE_LIMIT_BURST": "100000000",
        "AR_POLL_INTERVAL_SECONDS": "0",
        "AR_LOG_LEVEL": log_level,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "auto_review.cli.main", "gateway"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_listening(process, port)


def start_hmac_only(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "bench" / "hmac_only_app.py"), str(port), SECRET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_listening(process, port)


def wait_listening(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"server exited early with status {process.returncode}") from None
            time.sleep(0.05)
    process.kill()
    raise SystemExit("server did not start listening within 30 s")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) of each thread of ``pid``, by "name-tid"."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[f"{name}-{tid}"] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def cpu_per_request(
    pid: int, before: dict[str, float], requests: int
) -> tuple[float, float]:
    """(main thread, all other threads) CPU microseconds per request since ``before``."""
    after = thread_cpu_seconds(pid)
    main = f"{Path(f'/proc/{pid}/comm').read_text().strip()}-{pid}"
    used = {name: seconds - before.get(name, 0.0) for name, seconds in after.items()}
    loop = used.pop(main, 0.0)
    return loop / requests * 1e6, sum(used.values()) / requests * 1e6


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    start: str, requests: int, warmup: int, concurrency: int
) -> tuple[float, float, float, float, float]:
    """(accepted/s, p99 ms, peak RSS MB, main-thread and other threads' CPU us per
    request) of one freshly started server."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ar-bench-") as state:
        if start == "hmac-only":
            process = start_hmac_only(port)
        else:
            process = start_gateway(state, port, log_level=start.removeprefix("gateway-"))
        try:
            host = f"127.0.0.1:{port}"
            asyncio.run(fire("127.0.0.1", port, build_requests(warmup, host, SECRET), concurrency))
            batch = build_requests(requests, host, SECRET)
            cpu_before = thread_cpu_seconds(process.pid)
            elapsed, latencies, statuses = asyncio.run(
                fire("127.0.0.1", port, batch, concurrency)
            )
            loop_us, others_us = cpu_per_request(process.pid, cpu_before, len(latencies))
            rss = peak_rss_mb(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    if statuses.get(202, 0) != len(latencies):
        raise SystemExit(f"{start}: not every request was accepted: {statuses}")
    return (
        len(latencies) / elapsed,
        percentile(latencies, 0.99) * 1000,
        rss,
        loop_us,
        others_us,
    )


def compare(args: argparse.Namespace) -> int:
    """Round-robin over the three servers, ``--rounds`` times, so drift hits them alike."""
    runs: dict[str, list[tuple[float, float, float, float, float]]] = {}
    names = ("hmac-only", "gateway-info", "gateway-warning")
    for _ in range(args.rounds):
        for name in names:
            runs.setdefault(name, []).append(
                measure(name, args.requests, args.warmup, args.concurrency)
            )
    floor = statistics.median(r[0] for r in runs["hmac-only"])
    print(
        f"{'server':<16} {'accepted/s':>10} {'x hmac-only':>11} {'p99 ms':>7} {'RSS MB':>7}"
        f" {'main us/req':>11} {'other us/req':>12}"
    )
    for name in names:
        rate = statistics.median(r[0] for r in runs[name])
        p99 = statistics.median(r[1] for r in runs[name])
        rss = max(r[2] for r in runs[name])
        loop_us = statistics.median(r[3] for r in runs[name])
        others_us = statistics.median(r[4] for r in runs[name])
        print(
            f"{name:<16} {rate:>10.0f} {rate / floor:>11.2f} {p99:>7.2f} {rss:>7.1f}"
            f" {loop_us:>11.0f} {others_us:>12.0f}"
        )
    print(f"medians of {args.rounds} round(s) of {args.requests} requests, "
          f"{args.concurrency} connections; gateway-info is the default log level")
    print("main/other us/req: CPU time of the server's main (event-loop) thread and of its "
          "other threads (the gateway's commit thread) per request")
    print("targets: gateway-info >= 0.5x hmac-only, p99 < 25 ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true", help="HMAC-only app vs the gateway")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare")
    parser.add_argument("--url", help="gateway base URL (default: start one)")
    parser.add_argument("--secret", default=SECRET)
    parser.add_argument("--pid", type=int, help="gateway pid, for RSS, with --url")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.compare:
        return compare(args)

    process = None
    tmp = None
    if args.url:
        parts = urlsplit(args.url)
        host, port, pid = parts.hostname or "127.0.0.1", parts.port or 80, args.pid
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ar-bench-")
        host, port = "127.0.0.1", free_port()
        process = start_gateway(tmp.name, port)
        pid = process.pid
    try:
        warm = build_requests(args.warmup, f"{host}:{port}", args.secret)
        asyncio.run(fire(host, port, warm, args.concurrency))
        requests = build_requests(args.requests, f"{host}:{port}", args.secret)
        elapsed, latencies, statuses = asyncio.run(fire(host, port, requests, args.concurrency))
    finally:
        rss = peak_rss_mb(pid) if pid else float("nan")
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        if tmp is not None:
            tmp.cleanup()
    accepted = statuses.get(202, 0)
    print(f"requests: {len(latencies)}  concurrency: {args.concurrency}  statuses: {statuses}")
    print(f"accepted/s: {accepted / elapsed:.0f}")
    print(
        f"latency ms: p50 {percentile(latencies, 0.50) * 1000:.2f}  "
        f"p99 {percentile(latencies, 0.99) * 1000:.2f}  "
        f"mean {statistics.fmean(latencies) * 1000:.2f}"
    )
    print(f"gateway peak RSS MB: {rss:.1f}")
    print("targets: >= 1500 accepted/s, p99 < 25 ms, RSS < 120 MB")
    return 0 if accepted == len(latencies) else 1


if __name__ == "__main__":
    sys.exit(main())
