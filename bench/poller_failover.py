"""How long the chat poller is without a leader when its replica is killed (SIGKILL).

Two `auto-review gateway` processes (bare, the tests' recording runner) share a throwaway
PostgreSQL cluster and poll a loopback fake Forgejo; each round kills the leader and times
until the survivor reports `auto_review_poller_leader 1` (scraped every 20 ms), then starts
a fresh replica for the next round. The takeover is bounded by the survivor's retry period
(a third of AR_DATABASE_LEASE_SECONDS, at least 1 s): the server frees a killed session's
advisory lock at once.

    .venv/bin/python bench/poller_failover.py --rounds 5 --lease-seconds 3
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's tests/

from tests.integration.gateway.conftest import (
    BOT_LOGIN,
    FORGEJO_TOKEN,
    base_settings,
    metric_value,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import GatewayProcess, start_gateway
from tests.support.postgres import running_cluster


def leads(gateway: GatewayProcess) -> bool:
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=2) as client:
            return metric_value(client, "auto_review_poller_leader") == 1.0
    except httpx.TransportError:
        return False


def wait_for_leader(replicas: list[GatewayProcess], timeout: float = 60.0) -> GatewayProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for replica in replicas:
            if leads(replica):
                return replica
        time.sleep(0.02)  # the scrape interval of this measurement, not a synchronisation
    raise RuntimeError("no replica leads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease-seconds", type=float, default=3.0)
    options = parser.parse_args()
    takeovers: list[float] = []
    period = max(options.lease_seconds / 3, 1.0)
    with (
        running_cluster() as server,
        FakeForgejo(FORGEJO_TOKEN, bot_login=BOT_LOGIN) as forge,
        tempfile.TemporaryDirectory(prefix="bench-failover-") as work,
    ):
        database = server.create_database("failover")
        forge.add_pull_request("poll", "repo", 5, head_sha="5" * 40, base_sha="6" * 40)
        settings = {
            **base_settings(forge.url),
            "AR_DATABASE_URL": server.url(database),
            "AR_DATABASE_LEASE_SECONDS": str(options.lease_seconds),
            "AR_POLL_REPOS": "forgejo:poll/repo",
            "AR_POLL_INTERVAL_SECONDS": "0.5",
        }
        replicas = [start_gateway(Path(work) / f"r{index}", settings) for index in range(2)]
        try:
            for round_number in range(options.rounds):
                leader = wait_for_leader(replicas)
                replicas.remove(leader)
                # A kill at a random moment of the survivor's retry period: a replica that
                # was just started would otherwise always have just tried.
                time.sleep(random.uniform(0, period))
                killed = time.monotonic()
                leader.process.send_signal(signal.SIGKILL)
                leader.process.wait()
                wait_for_leader(replicas)
                takeovers.append(time.monotonic() - killed)
                print(f"round {round_number + 1}: takeover {takeovers[-1]:.2f} s", flush=True)
                replicas.append(start_gateway(Path(work) / f"n{round_number}", settings))
        finally:
            for replica in replicas:
                replica.stop()
    print(
        f"lease {options.lease_seconds:g} s (retry every "
        f"{period:g} s): takeover after SIGKILL "
        f"min {min(takeovers):.2f} s, median {statistics.median(takeovers):.2f} s, "
        f"max {max(takeovers):.2f} s over {len(takeovers)} rounds"
    )


if __name__ == "__main__":
    main()
