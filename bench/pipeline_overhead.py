"""Review pipeline overhead without the LLM, on a large real diff: seconds and peak memory.

Usage:
    python3 bench/pipeline_overhead.py                       # Django 4.2 -> 5.0
    python3 bench/pipeline_overhead.py --package django --old 4.2 --new 5.0 --repeat 3
    python3 bench/pipeline_overhead.py --cache-dir DIR       # default ~/.cache/auto-review-bench

The large diff is two releases of a public project: both source distributions are
downloaded once with ``pip download`` from the package index and cached; a local git
repository gets release OLD as its first commit and release NEW as its second (also cached).
Later runs need no network. If the index cannot be reached and nothing is cached, the script
stops with one clear line (exit 2).

Each run then goes through the pipeline's own code on that repository, as for a pull request
whose merge base is OLD and head is NEW:

* clone    - ``open_workspace``: hermetic shallow fetch of both commits over file:// (the
             test switch ``allow_file_protocol``) and a checkout of the head;
* diff     - ``Workspace.diff``: ``git diff`` streamed through the diff parser, every file kept;
* triage   - ``triage_files`` with the default repository config and the checked-out tree;
* guard    - ``ChangedLines`` over the reviewable files (the path guard's index);
* context  - ``build_review_messages`` with the default token budget and the confined tree.

Printed per stage: median wall seconds of ``--repeat`` runs; the process's peak RSS after the
stage in the first pass (``getrusage``, monotonic: a stage that raises it is the one that
needed it); and, in a separate traced run, the peak of Python allocations during the stage
(``tracemalloc``, which slows the run, so its timings are not used). The RSS figures are this
process's: git runs in child processes. For git's own cost, the same fetch, checkout and diff
are then run without the workspace, each under GNU time (seconds and peak RSS).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from auto_review.review.diff.positions import ChangedLines  # noqa: E402
from auto_review.review.policy.repo_config import DEFAULT_REPO_CONFIG  # noqa: E402
from auto_review.review.policy.triage import triage_files  # noqa: E402
from auto_review.review.stages.context import build_review_messages  # noqa: E402
from auto_review.review.workspace.checkout import FetchRequest, open_workspace  # noqa: E402
from auto_review.review.workspace.gitenv import GitPolicy  # noqa: E402

STAGES = ("clone", "diff", "triage", "guard", "context")
CONTEXT_TOKENS = 16000  # the default of AR_LLM_CONTEXT_TOKENS
PIP_TIMEOUT = 900.0


class BenchSetupError(Exception):
    """The release pair could not be prepared; the message says why and what to do."""


# -- the release pair as a git repository --------------------------------------------------


def download_sdist(package: str, version: str, cache: Path) -> Path:
    """The cached sdist of package==version, downloaded with pip on the first run."""
    target = cache / "sdists" / f"{package}-{version}"
    found = sorted(target.glob("*.tar.gz")) if target.is_dir() else []
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    print(f"downloading {package}=={version} (source distribution) into {target} ...")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(target),
        f"{package}=={version}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchSetupError(
            f"downloading {package}=={version} took over {PIP_TIMEOUT:.0f} s: is the package "
            "index reachable?"
        ) from None
    found = sorted(target.glob("*.tar.gz"))
    if result.returncode != 0 or not found:
        raise BenchSetupError(
            f"cannot download {package}=={version}: the package index is unreachable or has "
            f"no such version (pip exit "
            f"{result.returncode}: {_pip_reason(result.stderr)}). This bench needs the index "
            f"once; later runs use the cache in {cache}."
        )
    return found[0]


_NETWORK_HINTS = ("connection", "could not fetch", "max retries", "name or service", "timed out")


def _pip_reason(stderr: str) -> str:
    """The line of pip's output that says why: a network problem first, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()] or ["no output"]
    network = [line for line in lines if any(h in line.lower() for h in _NETWORK_HINTS)]
    return (network[0] if network else lines[-1])[:300]


def _git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    result = subprocess.run(
        ["git", "-c", "core.autocrlf=false", "-c", "init.defaultBranch=main", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _unpack_release(sdist: Path, work: Path) -> None:
    """Replace the work tree (all but .git) with the sdist's single top-level directory."""
    for entry in work.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    with tempfile.TemporaryDirectory(dir=work.parent) as tmp, tarfile.open(sdist) as archive:
        archive.extractall(tmp, filter="data")
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise BenchSetupError(f"{sdist.name} does not hold one top-level directory")
        for entry in tops[0].iterdir():
            shutil.move(str(entry), work / entry.name)


@dataclass(frozen=True, slots=True)
class ReleasePair:
    repo: Path
    old_sha: str
    new_sha: str


def release_repository(package: str, old: str, new: str, cache: Path) -> ReleasePair:
    """A git repository with release ``old`` committed, then release ``new`` (cached)."""
    repo = cache / "repos" / f"{package}-{old}..{new}"
    marker = repo / ".git" / "auto-review-bench-ready"
    if marker.is_file():
        old_sha, new_sha = marker.read_text().split()
        return ReleasePair(repo, old_sha, new_sha)
    old_sdist = download_sdist(package, old, cache)
    new_sdist = download_sdist(package, new, cache)
    print(f"building {repo} ...")
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    _git(repo, "init", "--quiet")
    shas = []
    for version, sdist in ((old, old_sdist), (new, new_sdist)):
        _unpack_release(sdist, repo)
        _git(repo, "add", "--all", "--force")
        _git(repo, "commit", "--quiet", "--no-verify", "-m", f"{package} {version}")
        shas.append(_git(repo, "rev-parse", "HEAD"))
    marker.write_text(" ".join(shas) + "\n")
    return ReleasePair(repo, shas[0], shas[1])


# -- one pass through the pipeline's stages ------------------------------------------------


@dataclass(slots=True)
class Pass:
    seconds: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)  # process peak after the stage
    traced_mb: dict[str, float] = field(default_factory=dict)  # Python peak during it
    facts: dict[str, float] = field(default_factory=dict)


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


@contextmanager
def _stage(record: Pass, name: str, traced: bool) -> Iterator[None]:
    if traced:
        tracemalloc.reset_peak()
    started = time.perf_counter()
    yield
    record.seconds[name] = time.perf_counter() - started
    record.rss_mb[name] = _peak_rss_mb()
    if traced:
        record.traced_mb[name] = tracemalloc.get_traced_memory()[1] / 1e6


def run_pass(pair: ReleasePair, *, traced: bool) -> Pass:
    record = Pass()
    request = FetchRequest(
        url=pair.repo.as_uri(), head_sha=pair.new_sha, merge_base_sha=pair.old_sha
    )
    policy = GitPolicy(allow_file_protocol=True)
    with tempfile.TemporaryDirectory(prefix="ar-overhead-") as parent, ExitStack() as stack:
        with _stage(record, "clone", traced):
            workspace = stack.enter_context(
                open_workspace(request, parent=Path(parent), policy=policy)
            )
        tree = workspace.confined()
        with _stage(record, "diff", traced), workspace.diff() as stream:
            files = list(stream)
        with _stage(record, "triage", traced):
            triage = triage_files(files, DEFAULT_REPO_CONFIG, tree=tree)
        with _stage(record, "guard", traced):
            ChangedLines(triage.reviewable)
        with _stage(record, "context", traced):
            prompt = build_review_messages(
                title=f"Release {pair.new_sha[:12]}",
                body="The whole difference between two releases.",
                files=triage.reviewable,
                changed_paths=[f.path for f in files],
                tree=tree,
                guidelines="",
                learnings=(),
                budget_tokens=CONTEXT_TOKENS,
            )
    record.facts = {
        "files": len(files),
        "reviewable": len(triage.reviewable),
        "skipped": len(triage.skipped),
        "hunks": sum(len(f.hunks) for f in files),
        "changed_lines": sum(len(f.changed_lines()) for f in files),
        "truncated": sum(f.truncated for f in files),
        "included_hunks": prompt.included_hunks,
        "omitted_hunks": prompt.omitted_hunks,
        "prompt_tokens": prompt.estimated_tokens,
    }
    return record


def _plain_git_env(home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }


def diff_bytes(pair: ReleasePair) -> int:
    """Size of the diff, counted as it streams (holding it would inflate this process's RSS)."""
    args = ["diff", "--no-color", "--no-ext-diff", "--find-renames", pair.old_sha, pair.new_sha]
    size = 0
    with subprocess.Popen(
        ["git", "-C", str(pair.repo), *args],
        stdout=subprocess.PIPE,
        env=_plain_git_env(str(pair.repo)),
    ) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            size += len(chunk)
    if proc.returncode != 0:
        raise BenchSetupError(f"git diff failed in {pair.repo} (exit {proc.returncode})")
    return size


def git_alone(pair: ReleasePair) -> list[str]:
    """The same git work without the workspace, each command under GNU time: git's own
    seconds and peak RSS (getrusage cannot give them: children spawned from this process
    inherit its high-water mark)."""
    timer = shutil.which("time", path="/usr/bin:/bin")
    if timer is None:
        return ["git alone: not measured (GNU time is not installed at /usr/bin/time)"]
    lines = []
    with tempfile.TemporaryDirectory(prefix="ar-git-alone-") as tmp:
        env = _plain_git_env(tmp)
        steps = (
            ("init", ["init", "--quiet"]),
            (
                "fetch",
                [
                    "-c",
                    "protocol.file.allow=always",
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--depth=1",
                    pair.repo.as_uri(),
                    f"+{pair.new_sha}:refs/head",
                    f"+{pair.old_sha}:refs/base",
                ],
            ),
            ("checkout", ["checkout", "--quiet", "--detach", pair.new_sha]),
            ("diff", ["diff", "--no-color", "--find-renames", pair.old_sha, pair.new_sha]),
        )
        for name, args in steps:
            result = subprocess.run(
                [timer, "-f", "%e %M", "git", "-C", tmp, *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=True,
            )
            seconds, kilobytes = result.stderr.strip().splitlines()[-1].split()
            if name != "init":
                megabytes = int(kilobytes) / 1024
                lines.append(
                    f"git {name} alone: {float(seconds):.2f} s, peak RSS {megabytes:.1f} MB"
                )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="django")
    parser.add_argument("--old", default="4.2")
    parser.add_argument("--new", default="5.0")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (median is shown)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "auto-review-bench",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        pair = release_repository(args.package, args.old, args.new, args.cache_dir)
    except BenchSetupError as exc:
        print(f"pipeline_overhead: {exc}", file=sys.stderr)
        return 2
    size = diff_bytes(pair)
    print(
        f"diff: {args.package} {args.old} -> {args.new}, {size / 1e6:.1f} MB "
        f"({pair.old_sha[:12]}..{pair.new_sha[:12]} in {pair.repo})"
    )
    baseline_rss = _peak_rss_mb()
    timed = [run_pass(pair, traced=False) for _ in range(args.repeat)]
    tracemalloc.start()
    traced = run_pass(pair, traced=True)
    tracemalloc.stop()

    facts = timed[0].facts
    print(
        f"files {facts['files']:.0f} (reviewable {facts['reviewable']:.0f}, skipped "
        f"{facts['skipped']:.0f}), hunks {facts['hunks']:.0f}, changed lines "
        f"{facts['changed_lines']:.0f}, truncated files {facts['truncated']:.0f}; prompt "
        f"{facts['prompt_tokens']:.0f} tokens with {facts['included_hunks']:.0f} hunks "
        f"({facts['omitted_hunks']:.0f} left out by the {CONTEXT_TOKENS}-token budget)"
    )
    print(f"process peak RSS before the first pass: {baseline_rss:.1f} MB")
    print(f"{'stage':<8} {'seconds':>8} {'min':>7} {'max':>7}  {'peak RSS':>9}  {'py peak':>8}")
    for stage in STAGES:
        values = [p.seconds[stage] for p in timed]
        print(
            f"{stage:<8} {statistics.median(values):>8.3f} {min(values):>7.3f} "
            f"{max(values):>7.3f}  {timed[0].rss_mb[stage]:>6.1f} MB  "
            f"{traced.traced_mb[stage]:>5.1f} MB"
        )
    totals = [sum(p.seconds.values()) for p in timed]
    print(f"{'total':<8} {statistics.median(totals):>8.3f} {min(totals):>7.3f} {max(totals):>7.3f}")
    for line in git_alone(pair):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
