"""Installation-token exchanges per API call, for tokens of different lifetimes.

Usage:
    .venv/bin/python bench/github_token_exchanges.py [--calls 3600] [--interval 1.0]

Measured on the development machine (3600 calls, one a second):

     token lifetime  exchanges  per 100 calls  previous rule
              3600s          2           0.06              2
               600s          8           0.22             12
               300s         16           0.44           3600
               120s         40           1.11           3600
                30s        157           4.36           3600

A GitHubClient calls the loopback GitHub (tests/support/fake_github.py) ``--calls`` times,
one call every ``--interval`` seconds of a simulated clock that the client and the fake
share (nothing sleeps), once per token lifetime the fake issues. Printed per lifetime: the
token exchanges, the exchanges per 100 calls, and what the previous rule (reuse only while
more than 5 minutes remain) would have cost: one exchange per call for tokens of 5 minutes
or less.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT)]  # the checkout's code and its fakes

from tests.support.fake_github import FakeGitHub, generate_app_key  # noqa: E402

from auto_review.core.refs import HostKind, RepoRef  # noqa: E402
from auto_review.hosts.github import GitHubClient  # noqa: E402

LIFETIMES = (3600.0, 600.0, 300.0, 120.0, 30.0)
REPO = RepoRef(HostKind.GITHUB, "bench", "widgets")
OLD_MARGIN = 300.0


class SimulatedClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def previous_rule(lifetime: float, calls: int, interval: float) -> int:
    """Exchanges under the old rule: reuse while more than OLD_MARGIN seconds remain."""
    if lifetime <= OLD_MARGIN:
        return calls
    reuse = lifetime - OLD_MARGIN
    return math.ceil(calls * interval / reuse) if interval < reuse else calls


async def exchanges_for(lifetime: float, calls: int, interval: float) -> int:
    private, public = generate_app_key()
    clock = SimulatedClock()
    hub = FakeGitHub(4711, public, token_lifetime=lifetime, clock=clock).start()
    try:
        hub.install(REPO.owner, REPO.name)
        hub.add_pull_request(REPO.owner, REPO.name, 1, head_sha="a" * 40, base_sha="b" * 40)
        async with GitHubClient("4711", private, api_url=hub.url, clock=clock) as client:
            for _ in range(calls):
                await client.get_pull_request(REPO, 1)
                clock.now += interval
        return hub.token_exchanges
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3600)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    print(f"{args.calls} API calls, one every {args.interval:g} s (simulated clock)")
    print(f"{'token lifetime':>15} {'exchanges':>10} {'per 100 calls':>14} {'previous rule':>14}")
    for lifetime in LIFETIMES:
        count = asyncio.run(exchanges_for(lifetime, args.calls, args.interval))
        before = previous_rule(lifetime, args.calls, args.interval)
        print(f"{lifetime:>14g}s {count:>10} {100 * count / args.calls:>14.2f} {before:>14}")


if __name__ == "__main__":
    main()
