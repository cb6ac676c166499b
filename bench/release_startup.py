"""Start-up of the single file next to the installed console script, and the file's size.

  .venv/bin/python bench/release_startup.py [DIST] [--runs N] [--tool PROGRAM]

Times N runs (after one unmeasured run) of ``--help`` and of ``version --verbose`` for the
executable in DIST (default ``dist/``, made by ``scripts/build-release``), for
``auto-review`` next to this interpreter (the virtual environment's console script; in the
dev ``.venv`` an editable install), and for the release's wheel installed as a tool
(``uv tool install``, non-editable, byte-compiled, into a temporary directory:
:mod:`tests.support.tool_install`; or the installed command PROGRAM), and prints the median
and the fastest of each in milliseconds, with the file's size. The single file unpacks its
runtime into a fresh temporary directory on every start (PyInstaller one-file), so each of
its runs is a cold start of the unpacked files as far as the file system is concerned; the
page cache is warm after the first run for all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.tool_install import uv_tool_install  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system, the children's) milliseconds of each run."""
    subprocess.run(argv, capture_output=True, check=True)  # unmeasured: fills the page cache
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), cpu_seconds()
        subprocess.run(argv, capture_output=True, check=True)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((cpu_seconds() - started_cpu) * 1000)
    return wall, cpu


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
    for label, program in (("single file", single), ("console script", script),
                           ("tool install", tool)):  # fmt: skip
        for command in (["--help"], ["version", "--verbose"]):
            wall, cpu = timed([str(program), *command], args.runs)
            median_wall, median_cpu = statistics.median(wall), statistics.median(cpu)
            print(f"{label:>15} {' '.join(command):<18} wall median {median_wall:7.1f} ms, "
                  f"fastest {min(wall):7.1f} ms; CPU median {median_cpu:7.1f} ms")  # fmt: skip
    work.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
