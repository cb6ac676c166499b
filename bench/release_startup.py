"""Start-up of the single file, cold and warm, next to the installed console script, and
the file's size.

  .venv/bin/python bench/release_startup.py [DIST] [--runs N] [--tool PROGRAM]

Times N runs (after one unmeasured run) of ``--help`` and of ``version --verbose`` for the
executable in DIST (default ``dist/``, made by ``scripts/build-release``), for
``auto-review`` next to this interpreter (the virtual environment's console script; in the
dev ``.venv`` an editable install), and for the release's wheel installed as a tool
(``uv tool install``, non-editable, byte-compiled, into a temporary directory:
:mod:`tests.support.tool_install`; or the installed command PROGRAM), and prints the median
and the fastest of each in milliseconds, with the file's size. The single file runs twice
over: ``cold``, each run with a new empty unpack cache (``AR_UNPACK_CACHE`` in a temporary
directory, removed between runs, untimed), so it unpacks; ``warm``, every run with the
cache the unmeasured run filled, so it starts from the entry. The page cache is warm after
the first run for all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.tool_install import uv_tool_install  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    argv: list[str], runs: int, env: dict[str, str] | None = None,
    before_each: Callable[[], None] = lambda: None,
) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system, the children's) milliseconds of each run."""
    subprocess.run(argv, capture_output=True, check=True, env=env)  # unmeasured: page cache
    wall, cpu = [], []
    for _ in range(runs):
        before_each()
        started, started_cpu = time.perf_counter(), cpu_seconds()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((cpu_seconds() - started_cpu) * 1000)
    return wall, cpu


def report(label: str, command: list[str], wall: list[float], cpu: list[float]) -> None:
    median_wall, median_cpu = statistics.median(wall), statistics.median(cpu)
    print(f"{label:>19} {' '.join(command):<18} wall median {median_wall:7.1f} ms, "
          f"fastest {min(wall):7.1f} ms; CPU median {median_cpu:7.1f} ms")  # fmt: skip


def single_file_runs(single: Path, command: list[str], runs: int) -> None:
    """Cold (a new empty cache before each run) and warm (the cache kept)."""
    work = Path(tempfile.mkdtemp(prefix="ar-bench-unpack-"))
    cache = work / "cache"
    env = {**os.environ, "AR_UNPACK_CACHE": str(cache)}
    try:
        def empty() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        report("single file, cold", command,
               *timed([str(single), *command], runs, env, before_each=empty))  # fmt: skip
        report("single file, warm", command, *timed([str(single), *command], runs, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dist", nargs="?", type=Path, default=ROOT / "dist")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tool", type=Path, help="an installed auto-review command "
                        "[default: DIST's wheel, installed with uv tool install]")  # fmt: skip
    args = parser.parse_args()
    provenance = json.loads((args.dist / "provenance.json").read_text())
    single = args.dist / provenance["artifact"]["name"]
    script = Path(sys.executable).parent / "auto-review"
    work = tempfile.TemporaryDirectory(prefix="auto-review-bench-tool-")
    tool = args.tool or uv_tool_install(
        Path(work.name), args.dist / provenance["wheel"]["name"]
    ).command
    print(f"single file: {single.name}, {single.stat().st_size / 1e6:.1f} MB; "
          f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs each")  # fmt: skip
    for command in (["--help"], ["version", "--verbose"]):
        single_file_runs(single, command, args.runs)
        for label, program in (("console script", script), ("tool install", tool)):
            report(label, command, *timed([str(program), *command], args.runs))
    work.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
