"""Gateway start-up time and webhook throughput: bare vs the container boundary.

Usage:
    .venv/bin/python bench/gateway_startup.py [--starts 10] [--requests 20000]
        [--modes bare,embedded,runc,single-file,single-file-cold,tool
         --single-file dist/auto-review-... --tool ~/.local/bin/auto-review]

1. Start-up: the time from spawning ``auto-review gateway`` to the first ``/healthz`` 200,
   in bare mode (``--bare``), with the embedded OCI runtime (the default) and with
   ``--oci-runtime runc``, and the single file of ``scripts/build-release`` in its default
   container mode: ``single-file`` warm (its unpack cache kept between starts: the first
   start unpacks, the others start from the entry) and ``single-file-cold`` (a new empty
   ``AR_UNPACK_CACHE`` at every start, so every start unpacks), and ``tool``: the
   ``auto-review`` command of the wheel installed with ``uv tool install`` or ``pipx
   install`` (``--tool``; run without PYTHONPATH, so it imports its own environment only), in
   its default container mode; the modes take turns, median of ``--starts`` starts each.
2. Throughput: the gateway-foundation webhook load (bench/gateway_webhooks.py's request
   builder and firing code: signed, distinct Gitea ``pull_request`` deliveries over
   keep-alive connections, each verified, parsed, deduplicated and committed) against a
   bare and an embedded-OCI gateway.

Targets (issue 4): embedded ready at most 150 ms after bare; at least 90% of bare's
throughput. The package is byte-compiled first: with PYTHONDONTWRITEBYTECODE set (as in
this environment) every start would otherwise compile it from source, and the container's
read-only binds could not cache it anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_webhooks as webhooks

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = {
    "bare": ["--bare"],
    "embedded": [],
    "runc": ["--oci-runtime", "runc"],
    "single-file": [],  # the --single-file executable instead of this interpreter
    "single-file-cold": [],  # the same, with a new empty unpack cache at every start
    "tool": [],  # the --tool command (a uv or pipx install of the wheel)
}
SINGLE_FILE: list[str] = []  # set from --single-file
TOOL: list[str] = []  # set from --tool
UNPACK_CACHES = Path(tempfile.gettempdir())  # replaced by a private directory in main()
READY_TIMEOUT = 60.0
READY_TARGET_MS = 150.0
THROUGHPUT_TARGET = 0.90


def gateway_env(state_dir: str, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AR_")}
    env.update(
        {
            "AR_GATEWAY_BIND": f"127.0.0.1:{port}",
            "AR_STATE_DIR": state_dir,
            "AR_FORGEJO_URL": "http://127.0.0.1:9",
            "AR_FORGEJO_TOKEN": "bench-token-not-used-0000000000000000",
            "AR_WEBHOOK_SECRET": webhooks.SECRET,
            "AR_RATE_LIMIT_PER_MINUTE": "100000000",
            "AR_RATE_LIMIT_BURST": "100000000",
            "AR_POLL_INTERVAL_SECONDS": "0",
            "AR_LOG_LEVEL": "warning",
        }
    )
    return env


def healthz_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start(
    mode: str, state_dir: str, port: int | None = None
) -> tuple[subprocess.Popen[bytes], int, float]:
    """Spawn a gateway; returns it, its port and the seconds until /healthz said 200."""
    port = port or webhooks.free_port()
    program = [sys.executable, "-m", "auto_review.cli.main"]
    env = gateway_env(state_dir, port)
    if mode.startswith("single-file"):
        program = SINGLE_FILE
        cache = UNPACK_CACHES / "warm"
        if mode == "single-file-cold":
            cache = Path(tempfile.mkdtemp(dir=UNPACK_CACHES)) / "cache"
        env["AR_UNPACK_CACHE"] = str(cache)
    elif mode == "tool":
        program = TOOL
        env.pop("PYTHONPATH", None)
    argv = [*program, "gateway", *MODES[mode]]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while not healthz_ok(port):
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise SystemExit(f"{mode} gateway exited {process.returncode}: {error[-2000:]}")
        if time.perf_counter() - started > READY_TIMEOUT:
            process.kill()
            raise SystemExit(f"{mode} gateway not ready within {READY_TIMEOUT:.0f} s")
        time.sleep(0.002)
    return process, port, time.perf_counter() - started


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure_startup(modes: list[str], starts: int) -> dict[str, list[float]]:
    """Restarts as an operator does them: each mode keeps its port and state directory, so
    only the first start of a mode is cold (it is dropped from the figures and reported
    apart: the runtime validates a new config.json once and caches the result)."""
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    states = {mode: tempfile.mkdtemp(prefix=f"ar-bench-{mode}-") for mode in modes}
    ports = {mode: webhooks.free_port() for mode in modes}
    try:
        for round_index in range(starts + 1):
            for mode in modes:
                process, _port, seconds = start(mode, states[mode], ports[mode])
                stop(process)
                if round_index == 0:
                    print(f"  {mode:<16} first (cold) start {seconds * 1000:7.1f} ms")
                else:
                    times[mode].append(seconds)
    finally:
        for state in states.values():
            shutil.rmtree(state, ignore_errors=True)
    return times


def measure_throughput(mode: str, requests: int, warmup: int, concurrency: int) -> float:
    state = tempfile.mkdtemp(prefix=f"ar-bench-{mode}-")
    try:
        process, port, _seconds = start(mode, state)
        try:
            host = f"127.0.0.1:{port}"
            warm = webhooks.build_requests(warmup, host, webhooks.SECRET)
            asyncio.run(webhooks.fire("127.0.0.1", port, warm, concurrency))
            batch = webhooks.build_requests(requests, host, webhooks.SECRET)
            elapsed, _latencies, statuses = asyncio.run(
                webhooks.fire("127.0.0.1", port, batch, concurrency)
            )
        finally:
            stop(process)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    accepted = statuses.get(202, 0)
    if accepted != requests:
        print(f"  {mode}: only {accepted} of {requests} accepted: {statuses}")
    return accepted / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", default="bare,embedded,runc")
    parser.add_argument("--single-file", type=Path, help="the executable for mode single-file")
    parser.add_argument("--tool", type=Path, help="the installed command for mode tool")
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]
    if any(mode.startswith("single-file") for mode in modes):
        if args.single_file is None:
            raise SystemExit("mode single-file needs --single-file PATH (scripts/build-release)")
        SINGLE_FILE.append(str(args.single_file.resolve()))
    if "tool" in modes:
        if args.tool is None:
            raise SystemExit("mode tool needs --tool PATH (a uv tool or pipx install of the wheel)")
        TOOL.append(str(args.tool.absolute()))
    global UNPACK_CACHES
    UNPACK_CACHES = Path(tempfile.mkdtemp(prefix="ar-bench-unpack-"))
    if "runc" in modes and shutil.which("runc") is None:
        raise SystemExit("runc is not installed (apt-get install -y runc) or drop it: --modes")
    compileall.compile_dir(str(REPO_ROOT / "src" / "auto_review"), quiet=1)

    try:
        times = measure_startup(modes, args.starts)
    finally:
        shutil.rmtree(UNPACK_CACHES, ignore_errors=True)
    print(f"start-up to /healthz 200, {args.starts} starts each (ms):")
    medians = {}
    for mode, values in times.items():
        medians[mode] = statistics.median(values) * 1000
        print(f"  {mode:<16} median {medians[mode]:7.1f}   min {min(values) * 1000:7.1f}   "
              f"max {max(values) * 1000:7.1f}")  # fmt: skip
    if "bare" in medians and "embedded" in medians:
        extra = medians["embedded"] - medians["bare"]
        verdict = "met" if extra <= READY_TARGET_MS else "NOT met"
        print(f"  embedded - bare: {extra:+.1f} ms (target <= {READY_TARGET_MS:.0f} ms: {verdict})")

    rates = {}
    for mode in ("bare", "embedded"):
        if mode in modes:
            rates[mode] = measure_throughput(mode, args.requests, args.warmup, args.concurrency)
    if rates:
        print(f"webhook throughput, {args.requests} deliveries, {args.concurrency} connections:")
        for mode, rate in rates.items():
            print(f"  {mode:<9} {rate:7.0f} accepted/s")
    if "bare" in rates and "embedded" in rates:
        share = rates["embedded"] / rates["bare"]
        verdict = "met" if share >= THROUGHPUT_TARGET else "NOT met"
        print(f"  embedded / bare: {share:.1%} (target >= {THROUGHPUT_TARGET:.0%}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
