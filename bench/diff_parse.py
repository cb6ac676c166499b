"""Parse a generated multi-megabyte git diff and print throughput and peak memory.

Usage:
    python3 bench/diff_parse.py               # 50 MB diff
    python3 bench/diff_parse.py --size-mb 200

The diff is written to a temporary file first (with bounded memory) and mixes what real PR
diffs contain: many files, hunks with context, long and CRLF lines, renames, new and
deleted files, binary files and ``\\ No newline at end of file``. It also has one huge file
whose hunks exceed the per-file caps, to exercise truncation.

Figures:
* streaming  - ``iter_file_diffs`` over the file object; each file is dropped once seen
  (how the workspace consumes a diff; freeing it is inside the timed loop). MB/s (median of
  ``--repeat`` runs), and peak traced Python memory.
* keep-all   - ``parse_diff`` keeping every file (bounded by the per-file caps).
* process peak RSS (VmHWM) of each run, measured in a fresh child process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import BinaryIO

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from auto_review.review.diff.model import DiffLimits, iter_file_diffs, parse_diff  # noqa: E402


def write_diff(out: BinaryIO, target_bytes: int) -> int:
    """Write a synthetic git diff of about ``target_bytes``; return the number of files."""
    written = 0
    index = 0

    def emit(chunk: bytes) -> None:
        nonlocal written
        out.write(chunk)
        written += len(chunk)

    # One huge file first: 400k added lines, beyond the default per-file line cap.
    emit(
        b"diff --git a/vendor/huge.min.js b/vendor/huge.min.js\nnew file mode 100644\n"
        b"index 0000000..1111111\n--- /dev/null\n+++ b/vendor/huge.min.js\n"
        b"@@ -0,0 +1,400000 @@\n"
    )
    line = b"+var x = function(a, b) { return a + b; }; // generated\n"
    emit(line * 400_000)
    while written < target_bytes:
        index += 1
        kind = index % 10
        path = b"src/module_%05d/file_%d.py" % (index // 20, index)
        if kind == 0:
            emit(
                b"diff --git a/%s b/%s\nindex 1..2 100644\nBinary files a/%s and b/%s differ\n"
                % (path, path, path, path)
            )
            continue
        if kind == 1:
            emit(
                b"diff --git a/old/%s b/%s\nsimilarity index 87%%\nrename from old/%s\n"
                b"rename to %s\nindex 1..2 100644\n" % (path, path, path, path)
            )
        else:
            emit(b"diff --git a/%s b/%s\nindex 3333333..4444444 100644\n" % (path, path))
        emit(b"--- a/%s\n+++ b/%s\n" % (path, path))
        start = 1
        for hunk in range(12):
            ending = b"\r\n" if kind == 7 else b"\n"
            body = [
                b" def function_%d(argument):%s" % (hunk, ending),
                b"     value = compute(argument, %d)%s" % (hunk, ending),
                b"-    return value * 2" + ending,
                b"+    # the new implementation rounds first" + ending,
                b"+    return round(value) * 2 + len('" + b"x" * (hunk * 20) + b"')" + ending,
                b" " + ending,
                b" " + b"# filler comment line with some text in it" + ending,
            ]
            emit(b"@@ -%d,5 +%d,6 @@ class Thing%d:\n" % (start, start, hunk) + b"".join(body))
            start += 40
        if kind == 3:
            emit(
                b"@@ -%d,1 +%d,1 @@\n-last\n\\ No newline at end of file\n+last\n" % (start, start)
            )
    return index + 1


def measure(path: Path, mode: str) -> dict[str, float]:
    size = path.stat().st_size
    limits = DiffLimits()
    with path.open("rb") as handle:
        started = time.perf_counter()
        if mode == "streaming":
            files = changed = truncated = 0
            for files, file_diff in enumerate(iter_file_diffs(handle, limits), start=1):  # noqa: B007
                changed += len(file_diff.changed_lines())
                truncated += file_diff.truncated
        else:
            parsed = parse_diff(handle, limits)
            files = len(parsed.files)
            changed = sum(len(f.changed_lines()) for f in parsed.files)
            truncated = sum(f.truncated for f in parsed.files)
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "mb_per_s": size / 1e6 / elapsed,
        "files": files,
        "changed_lines": changed,
        "truncated_files": truncated,
    }


def child(path: Path, mode: str, traced: bool) -> None:
    if traced:
        tracemalloc.start()
    result = measure(path, mode)
    if traced:
        result["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    result["rss_peak_mb"] = int(hwm.split()[1]) / 1024
    print(json.dumps(result))


def run_child(path: Path, mode: str, traced: bool) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", str(path), "--mode", mode]
    if traced:
        args.append("--traced")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per mode")
    parser.add_argument("--child", type=Path)
    parser.add_argument("--mode", default="streaming")
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mode, args.traced)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.diff"
        with path.open("wb") as out:
            write_diff(out, int(args.size_mb * 1e6))
        size_mb = os.path.getsize(path) / 1e6
        print(f"diff: {size_mb:.1f} MB at {path.name}")
        probe = (
            f"import sys; sys.path.insert(0, {str(REPO_ROOT / 'src')!r}); "
            "import auto_review.review.diff.model; "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
        )
        baseline = subprocess.run(
            [sys.executable, "-c", probe], check=True, capture_output=True, text=True
        ).stdout.strip()
        print(f"interpreter + module baseline RSS: {int(baseline) / 1024:.1f} MB")
        for mode in ("streaming", "keep-all"):
            runs = sorted(
                (run_child(path, mode, traced=False) for _ in range(args.repeat)),
                key=lambda run: run["mb_per_s"],
            )
            timed = runs[len(runs) // 2]  # the median run
            traced = run_child(path, mode, traced=True)
            print(
                f"{mode:9s}: {timed['mb_per_s']:.1f} MB/s median of {args.repeat} "
                f"(best {runs[-1]['mb_per_s']:.1f}, {timed['seconds']:.2f} s), "
                f"{timed['files']:.0f} files, {timed['changed_lines']:.0f} changed lines, "
                f"{timed['truncated_files']:.0f} truncated; "
                f"peak RSS {timed['rss_peak_mb']:.1f} MB, "
                f"peak traced Python memory {traced['traced_peak_mb']:.2f} MB"
            )


if __name__ == "__main__":
    main()
