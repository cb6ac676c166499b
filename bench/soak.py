"""Soak: a gateway under sustained mixed load for minutes, with what an operator watches.

Usage:
    python3 bench/soak.py                                 # container mode, 20 minutes
    python3 bench/soak.py --duration 120 --report-every 30
    python3 bench/soak.py --bare --retention 0.01         # no container; retention in days
    python3 bench/soak.py --scale 0.5 --repos 4 --prs-per-repo 5

The world is real: a loopback Forgejo over HTTPS (private CA) whose repositories are real
git repositories served by git smart HTTP on the same host:port, real pushes, signed
webhooks, and an OpenAI-compatible LLM answering after ``--llm-latency`` seconds. The load
is issue 14 point 7's mix times ``--scale`` (see bench/soak_load.py). The gateway is
``auto-review gateway`` as an operator starts it (the OCI container unless ``--bare``).

Every ``--report-every`` seconds and at the end it prints: the requests sent and their
answers, the latency from each pull request's last push to a final status on that head
(must stay under 60 s; the oldest not yet reviewed latest head counts too), the queue by
state from /metrics, the RSS and descriptor count of the gateway's processes, and the
size of the state directory. Exit status 1 when a latest head waited 60 s or more.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT), str(Path(__file__).resolve().parent)]

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.support.https_forge import make_private_ca  # noqa: E402

from soak_load import FULL_MIX, Load  # noqa: E402
from soak_world import BOT, CHEAP_MODEL, REASONING_MODEL, SoakForge, start_llm  # noqa: E402

LATENCY_LIMIT_SECONDS = 60.0
FORGE_TOKEN = "soak-forge-token-0123456789abcdef"
WEBHOOK_SECRET = "soak-webhook-secret-0123456789abcdef0123"
LLM_KEY = "soak-llm-key-0123456789abcdef"
QUEUE_STATES = ("queued", "running", "waiting-retry", "done", "failed", "superseded")


# ---- the gateway -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    url: str
    state_dir: Path
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_gateway(workdir: Path, settings: dict[str, str]) -> Gateway:
    env_file = workdir / "gateway.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env_file.chmod(0o600)
    log = workdir / "gateway.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AR_")}
    # The gateway runs this checkout's package unless PYTHONPATH names another.
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH") or str(REPO_ROOT / "src")
    argv = [sys.executable, "-m", "auto_review.cli.main", "gateway", "--env-file", str(env_file)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=out, cwd="/")  # fmt: skip
    gateway = Gateway(process, "http://" + settings["AR_GATEWAY_BIND"],
                      Path(settings["AR_STATE_DIR"]), log)  # fmt: skip
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=2, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the gateway exited {process.returncode}:\n{log.read_text()}")
            try:
                if client.get(gateway.url + "/healthz").status_code == 200:
                    return gateway
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    gateway.stop()
    raise SystemExit(f"the gateway never became healthy:\n{log.read_text()}")


# ---- what is watched ---------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        tree += children
        frontier += children
    return tree


@dataclass(frozen=True)
class ProcessFigures:
    processes: int
    rss_mib: float
    fds: int
    by_name: dict[str, tuple[int, float, int]]  # comm -> count, RSS MiB, FDs


def process_figures(root: int) -> ProcessFigures:
    """RSS and open descriptors of the gateway's long-lived processes (the launcher, the
    runtime, the inner gateway, the egress proxy); short-lived git children left out."""
    by_name: dict[str, tuple[int, float, int]] = {}
    for pid in process_tree(root):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name.startswith("git"):
                continue
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kib = next((int(line.split()[1]) for line in status.splitlines()
                            if line.startswith("VmRSS:")), 0)  # fmt: skip
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, ValueError):
            continue  # gone meanwhile
        count, rss, held = by_name.get(name, (0, 0.0, 0))
        by_name[name] = (count + 1, rss + rss_kib / 1024, held + fds)
    return ProcessFigures(
        sum(c for c, _, _ in by_name.values()),
        sum(r for _, r, _ in by_name.values()),
        sum(f for _, _, f in by_name.values()),
        by_name,
    )


def directory_bytes(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file():
                total += entry.stat().st_size
        except OSError:
            pass
    return total


def queue_figures(text: str) -> dict[str, float]:
    """Jobs by state, and whatever queue-depth or oldest-job gauges the gateway exports."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "auto_review_jobs_by_state":
                found[sample.labels.get("state", "?")] = sample.value
            elif "queue" in sample.name or "oldest" in sample.name:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                name = sample.name.removeprefix("auto_review_")
                found[f"{name}{{{labels}}}" if labels else name] = sample.value
    return found


@dataclass
class HeadLatency:
    """Push-to-review latency of each PR's latest head, from the forge's status log.

    Each push's head is latest from its push until the PR's next push. A head reviewed
    (a final status on it) while latest counts with its latency; a head superseded
    unreviewed counts as a wait of its whole time as latest, which is fine under 60 s (the
    newer head is what must be reviewed); the current latest heads count as waits so far."""

    reviewed_at: dict[str, float] = field(default_factory=dict)  # head -> first final status
    latencies: list[float] = field(default_factory=list)
    superseded: int = 0
    worst_superseded_wait: float = 0.0
    oldest_waiting: float = 0.0
    _cursor: int = 0

    def update(self, world: SoakForge) -> None:
        statuses = world.forge.status_list
        end = len(statuses)
        for status in statuses[self._cursor : end]:
            if status.state != "pending":
                when = status.created_at.astimezone(UTC).timestamp()
                self.reviewed_at.setdefault(status.sha, when)
        self._cursor = end
        now = time.time()
        self.latencies, self.superseded, waits = [], 0, [0.0]
        self.worst_superseded_wait = 0.0
        for pull in world.pulls:
            with pull.lock:
                history = list(pull.history)
            for index, (head, pushed) in enumerate(history):
                latest = index == len(history) - 1
                until = now if latest else history[index + 1][1]
                reviewed = self.reviewed_at.get(head)
                if reviewed is not None and reviewed <= until:
                    self.latencies.append(reviewed - pushed)
                elif latest:
                    waits.append(now - pushed)
                else:
                    self.superseded += 1
                    self.worst_superseded_wait = max(self.worst_superseded_wait, until - pushed)
        self.oldest_waiting = max(waits)

    @property
    def worst(self) -> float:
        return max([self.oldest_waiting, self.worst_superseded_wait, *self.latencies])


# ---- the run -----------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    world: SoakForge
    gateway: Gateway
    load: Load
    heads: HeadLatency = field(default_factory=HeadLatency)
    started: float = field(default_factory=time.monotonic)
    worst_wait: float = 0.0
    samples: list[tuple[float, ProcessFigures, int, dict[str, float]]] = field(
        default_factory=list
    )

    def report(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        self.heads.update(self.world)
        waiting = self.heads.oldest_waiting
        self.worst_wait = max(self.worst_wait, self.heads.worst)
        try:
            metrics = httpx.get(self.gateway.url + "/metrics", timeout=10, trust_env=False).text
            queue = queue_figures(metrics)
        except httpx.HTTPError as exc:
            queue = {f"metrics unreachable ({type(exc).__name__})": 0.0}
        figures = process_figures(self.gateway.process.pid)
        state = directory_bytes(self.gateway.state_dir)
        self.samples.append((elapsed, figures, state, queue))
        answers = self.load.counts.answers
        latencies = self.load.counts.take_latencies()
        kinds = sorted({kind for kind, _ in answers})
        sent = "; ".join(
            f"{kind} " + " ".join(f"{status}:{n}" for (k, status), n in sorted(answers.items())
                                  if k == kind)
            for kind in kinds
        )  # fmt: skip
        reviewed = self.heads.latencies
        title = "final" if final else f"t={elapsed:.0f}s"
        print(f"[{title}] requests: {sent}; transport errors "
              f"{dict(self.load.counts.transport_errors) or 0}")  # fmt: skip
        if latencies:
            ordered = sorted(latencies)
            print(f"  webhook answer p50 {statistics.median(ordered) * 1000:.0f} ms, "
                  f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.0f} ms "
                  f"({len(ordered)} since the last report)")  # fmt: skip
        pushes = sum(len(p.history) for p in self.world.pulls)
        spread = (f"p50 {statistics.median(reviewed):.1f} s, max {max(reviewed):.1f} s"
                  if reviewed else "none yet")  # fmt: skip
        print(f"  push->review of latest heads: {len(reviewed)} reviewed of {pushes} pushes "
              f"({spread}); {self.heads.superseded} superseded unreviewed (longest "
              f"{self.heads.worst_superseded_wait:.1f} s as latest); oldest unreviewed latest "
              f"head {waiting:.1f} s")  # fmt: skip
        states = ", ".join(f"{k} {queue[k]:g}" for k in QUEUE_STATES if k in queue)
        others = ", ".join(f"{k} {v:.3g}" for k, v in queue.items()
                           if k not in QUEUE_STATES and v)  # fmt: skip
        print(f"  queue: jobs {states}" + (f"; {others}" if others else "; other gauges 0"))
        names = ", ".join(
            f"{name}×{count} {rss:.0f} MiB {fds} fds"
            for name, (count, rss, fds) in sorted(figures.by_name.items())
        )
        print(f"  gateway processes: {figures.processes}, RSS {figures.rss_mib:.0f} MiB, "
              f"FDs {figures.fds} ({names}); state dir {state / 1e6:.2f} MB")  # fmt: skip
        sys.stdout.flush()

    def summary(self) -> None:
        warm = [s for s in self.samples if s[0] >= self.args.warm_up] or self.samples
        first, last = warm[0], warm[-1]
        peak_queue = max(
            (sum(q.get(state, 0.0) for state in ("queued", "waiting-retry")) for *_, q in warm),
            default=0.0,
        )
        print(
            f"summary after {last[0]:.0f} s (warm-up {self.args.warm_up:.0f} s): "
            f"RSS {first[1].rss_mib:.0f} -> {last[1].rss_mib:.0f} MiB, "
            f"FDs {first[1].fds} -> {last[1].fds}, state dir {first[2] / 1e6:.2f} -> "
            f"{last[2] / 1e6:.2f} MB, peak queued+waiting {peak_queue:g}, "
            f"worst push->review wait {self.worst_wait:.1f} s "
            f"({'under' if self.worst_wait < LATENCY_LIMIT_SECONDS else 'OVER'} "
            f"{LATENCY_LIMIT_SECONDS:.0f} s)"
        )


def settings_for(args: argparse.Namespace, workdir: Path, world: SoakForge, llm_url: str,
                 ca: Path) -> dict[str, str]:  # fmt: skip
    settings = {
        "AR_GATEWAY_BIND": f"127.0.0.1:{free_port()}",
        "AR_STATE_DIR": str(workdir / "state"),
        "AR_FORGEJO_URL": world.forge.url,
        "AR_FORGEJO_TOKEN": FORGE_TOKEN,
        "AR_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AR_LLM_BASE_URL": llm_url,
        "AR_LLM_API_KEY": LLM_KEY,
        "AR_LLM_REASONING_MODEL": REASONING_MODEL,
        "AR_LLM_CHEAP_MODEL": CHEAP_MODEL,
        "AR_BOT_LOGIN": BOT,
        "AR_CA_FILE": str(ca),
        "AR_POLL_INTERVAL_SECONDS": "0",
        "AR_LOG_FORMAT": "json",
        "AR_LOG_LEVEL": args.log_level,
        "AR_WORKERS": str(args.workers),
        # All load comes from one address: the per-address limit would measure itself.
        "AR_RATE_LIMIT_PER_MINUTE": "600000",
        "AR_RATE_LIMIT_BURST": "10000",
    }
    if args.bare:
        settings["AR_GATEWAY_BARE"] = "true"
    if args.retention is not None:
        settings["AR_STATE_RETENTION_DAYS"] = str(args.retention)
    return settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1200.0, help="seconds (default 1200)")
    parser.add_argument("--bare", action="store_true", help="no container (AR_GATEWAY_BARE)")
    parser.add_argument("--retention", type=float, default=None, metavar="DAYS",
                        help="the store's retention (AR_STATE_RETENTION_DAYS); default: "
                             "the gateway's")  # fmt: skip
    parser.add_argument("--scale", type=float, default=0.2,
                        help="share of issue 14's per-second mix (default 0.2)")  # fmt: skip
    parser.add_argument("--repos", type=int, default=4)
    parser.add_argument("--prs-per-repo", type=int, default=5)
    parser.add_argument("--stale-pool", type=int, default=200,
                        help="older commits per PR used as stale heads")  # fmt: skip
    parser.add_argument("--llm-latency", type=float, default=0.2, metavar="SECONDS")
    parser.add_argument("--workers", type=int, default=2, help="AR_WORKERS (default 2)")
    parser.add_argument("--report-every", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument(
        "--warm-up", type=float, default=120.0, metavar="SECONDS",
        help="figures before this are left out of the flatness summary",
    )  # fmt: skip
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="auto-review-soak-"))
    workdir.chmod(0o755)
    tls = make_private_ca(workdir / "tls")
    world = SoakForge(workdir / "forge", tls, FORGE_TOKEN)
    llm = start_llm(LLM_KEY, args.llm_latency)
    gateway: Gateway | None = None
    try:
        world.create(args.repos, args.prs_per_repo, args.stale_pool)
        settings = settings_for(args, workdir, world, llm.url, tls.ca)
        gateway = start_gateway(workdir, settings)
        mode = "bare" if args.bare else "container"
        print(f"soak: {mode} gateway at {gateway.url}, {len(world.pulls)} PRs in "
              f"{len(world.repos)} repositories, scale {args.scale:g} "
              f"({', '.join(f'{k} {v * args.scale:g}/s' for k, v in FULL_MIX.items())}), "
              f"LLM latency {args.llm_latency * 1000:.0f} ms, {args.duration:.0f} s; "
              f"work directory {workdir}")  # fmt: skip
        load = Load(world, gateway.url, WEBHOOK_SECRET, args.scale, args.seed)
        run = Run(args, world, gateway, load)
        done = threading.Event()

        def reporter() -> None:
            while not done.wait(args.report_every):
                run.report()
                world.forge.exchanges.clear()  # the fakes' logs would grow for the whole run
                llm.requests.clear()

        thread = threading.Thread(target=reporter, daemon=True)
        thread.start()

        async def drive() -> None:
            task = asyncio.create_task(load.run())
            await asyncio.sleep(args.duration)
            load.stop.set()
            await task

        asyncio.run(drive())
        done.set()
        thread.join()
        run.report(final=True)
        exit_status = gateway.stop()
        print(f"gateway exit status after SIGTERM: {exit_status}")
        run.summary()
        return 0 if run.worst_wait < LATENCY_LIMIT_SECONDS else 1
    finally:
        if gateway is not None:
            gateway.stop()
        world.stop()
        llm.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    sys.exit(main())
