"""The soak bench's world: a loopback HTTPS Forgejo with real repositories and pull requests,
real pushes, and a loopback LLM with a fixed latency.

Each repository holds ``prs_per_repo`` pull requests, PR N on branch ``pr-N`` (its head
also under ``refs/pull/N/head``, as on Forgejo). A push is a real commit in the work
repository pushed to the bare one the forge serves over git smart HTTP; the forge's API
then reports the new head and diff. Every PR also gets a pool of older commits (never
announced) that the load uses as stale heads.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.fake_llm import Answer, FakeLlm, RecordedRequest, json_reply, slow, text_reply
from tests.support.git_env import isolated_git_env
from tests.support.https_forge import HttpsForgejo, TlsFiles, git

BOT = "auto-review-bot"
REASONING_MODEL = "soak-reasoner"
CHEAP_MODEL = "soak-checker"
OWNER = "acme"
GIT_PATH = "/usr/local/bin:/usr/bin:/bin"
FILE_NAME = re.compile(r"file: (src/pr_\d+\.py)")  # how the review prompt names a file


@dataclass
class PullRequest:
    repo: str
    number: int
    head: str = ""
    pushes: int = 0
    history: list[tuple[str, float]] = field(default_factory=list)  # announced heads, pushed at
    stale_pool: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> str:
        return f"src/pr_{self.number}.py"


@dataclass
class Repository:
    name: str
    work: Path
    bare: Path
    base_sha: str
    lock: threading.Lock = field(default_factory=threading.Lock)


class SoakForge:
    """The repositories and pull requests on a loopback HTTPS Forgejo."""

    def __init__(self, root: Path, tls: TlsFiles, token: str) -> None:
        self.root = root
        self.forge = HttpsForgejo.serve(root / "served", tls, token=token, bot_login=BOT)
        self.repos: dict[str, Repository] = {}
        self.pulls: list[PullRequest] = []

    def create(self, repos: int, prs_per_repo: int, stale_pool: int) -> None:
        number = 0
        for index in range(repos):
            repo = self._create_repository(f"service-{index}")
            for _ in range(prs_per_repo):
                number += 1
                pull = PullRequest(repo.name, number)
                pull.stale_pool = self._old_commits(repo, pull, stale_pool)
                self.pulls.append(pull)
                self.push(pull, announced=False)  # opened before the bot watched

    def _create_repository(self, name: str) -> Repository:
        work = self.root / f"work-{name}"
        work.mkdir(parents=True)
        git(work, "init", "-q", "-b", "main")
        (work / "README.md").write_text(f"{name}\n")
        git(work, "add", "-A")
        git(work, "commit", "-qm", "base")
        base = git(work, "rev-parse", "HEAD")
        bare = self.root / "served" / OWNER / f"{name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        git(self.root, "clone", "-q", "--bare", str(work), str(bare))
        repo = Repository(name, work, bare, base)
        self.repos[name] = repo
        return repo

    def _old_commits(self, repo: Repository, pull: PullRequest, count: int) -> list[str]:
        """``count`` real commits of the PR's file that were never its announced head."""
        stream = bytearray()
        for serial in range(1, count + 1):
            data = f"OLD_REVISION = {serial}\n".encode()
            stream += (
                f"commit refs/old/{pull.number}\nmark :{serial}\n"
                "committer Dev <dev@example.com> 1767225600 +0000\ndata 4\nold\n"
            ).encode()
            if serial == 1:
                stream += f"from {repo.base_sha}\n".encode()
            stream += f"M 100644 inline {pull.path}\ndata {len(data)}\n".encode() + data + b"\n"
        marks = self.root / f"marks-{pull.number}"
        subprocess.run(
            ["git", "fast-import", "--quiet", f"--export-marks={marks}"],
            cwd=repo.bare, input=bytes(stream), check=True, capture_output=True,
            env=isolated_git_env(repo.bare, path=GIT_PATH),
        )  # fmt: skip
        return [line.split()[1] for line in marks.read_text().splitlines()]

    def push(self, pull: PullRequest, *, announced: bool = True) -> str:
        """A real commit on the PR's branch, pushed; the forge then reports the new head.
        ``announced``: a webhook will tell the gateway (the head joins the PR's history)."""
        repo = self.repos[pull.repo]
        with repo.lock:  # one work tree per repository
            git(repo.work, "checkout", "-q", "-B", f"pr-{pull.number}",
                pull.head or repo.base_sha)  # fmt: skip
            target = repo.work / pull.path
            target.parent.mkdir(parents=True, exist_ok=True)
            pull.pushes += 1
            with target.open("a") as out:
                out.write(f"def revision_{pull.pushes}():\n    return {pull.pushes} / 0\n")
            git(repo.work, "add", "-A")
            git(repo.work, "commit", "-qm", f"revision {pull.pushes}")
            head = git(repo.work, "rev-parse", "HEAD")
            git(repo.work, "push", "-q", "--force", str(repo.bare),
                f"pr-{pull.number}:pr-{pull.number}")  # fmt: skip
            git(repo.bare, "update-ref", f"refs/pull/{pull.number}/head", head)
            diff = git(repo.work, "diff", "--full-index", repo.base_sha, head) + "\n"
        self.forge.add_pull_request(
            OWNER, pull.repo, pull.number, head_sha=head, base_sha=repo.base_sha, diff=diff,
            body="A soak pull request.",
        )  # fmt: skip
        with pull.lock:
            pull.head = head
            if announced:
                pull.history.append((head, time.time()))
        return head

    def stop(self) -> None:
        self.forge.stop()


class SlowModel:
    """The LLM's answers, each after ``latency`` seconds: one finding per review (a new
    title each time, so every review posts), every finding supported, questions answered."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self._serial = 0
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Answer:
        if request.model == CHEAP_MODEL:
            answer = json_reply({"supported": True, "reason": "checked"})
        elif "answering one question" in request.system_text:
            answer = text_reply("It divides by zero.")
        else:
            named = FILE_NAME.search(request.last_user_text)
            path = named[1] if named else "src/pr_1.py"
            with self._lock:
                self._serial += 1
                serial = self._serial
            answer = json_reply({"summary": "Reviewed.", "findings": [{
                "path": path, "start_line": 2, "end_line": 2, "severity": "high",
                "category": "bug", "title": f"Division by zero #{serial}",
                "body": "The function always raises ZeroDivisionError.",
            }]})  # fmt: skip
        return slow(answer, self.latency)


def start_llm(api_key: str, latency: float) -> FakeLlm:
    llm = FakeLlm(api_key=api_key, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    llm.respond(SlowModel(latency))
    return llm
