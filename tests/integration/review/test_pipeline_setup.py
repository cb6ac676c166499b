"""What the end-to-end pipeline tests share (no tests here): a real repository served over
loopback HTTPS, signed webhook payloads built from the forges' real deliveries, the
loopback LLM's responder, and a gateway subprocess running the real review pipeline.

The gateway child is ``tests/support/gateway_process.py`` with runner ``"none"``: it calls
``serve(settings, None)``, which builds the pipeline because the LLM is configured. Git in
the child trusts the loopback server's throwaway CA through ``AR_CA_FILE``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests.integration.review.smart_http import SmartHttpServer, make_certificate
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import Answer, FakeLlm, RecordedRequest, json_reply, text_reply
from tests.support.gateway_process import (
    GatewayProcess,
    forgejo_headers,
    github_headers,
    start_gateway,
)
from tests.support.git_env import isolated_git_env
from tests.support.reference import load_json, reference_path

WEBHOOK_SECRET = "CANARY-pipeline-hook-3Fq8Lw1Zx6Cv9Bn2Mk5Jh7Gd4Sa0P"
GITHUB_WEBHOOK_SECRET = "CANARY-pipeline-gh-hook-8Tr2Yu6Io0Pa4Sd9Fg3Hj7Kl1Zx"
FORGE_TOKEN = "CANARY-pipeline-forge-token-5Nb1Vc7Xz3Lk9Jh"
LLM_KEY = "CANARY-pipeline-llm-key-2Wq8Er4Ty6Ui0Op3As"
CANARIES = (WEBHOOK_SECRET, GITHUB_WEBHOOK_SECRET, FORGE_TOKEN, LLM_KEY)
BOT = "auto-review-bot"
REASONING_MODEL = "big-reviewer"
CHEAP_MODEL = "small-checker"


# ---- git ------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {
        **isolated_git_env(cwd, path="/usr/local/bin:/usr/bin:/bin"),
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode("utf-8", "replace").strip()


@dataclass
class ServedRepo:
    """A work repository and its bare copy served over HTTPS as ``owner/name.git``; the PR
    head lives under ``refs/pull/<number>/head`` in the bare copy, as on the forges."""

    work: Path
    bare: Path
    server: SmartHttpServer
    number: int
    base_sha: str
    head_sha: str = ""

    @property
    def clone_url(self) -> str:
        return self.server.url(f"{self.bare.parent.name}/{self.bare.name}")

    def push(self, files: Mapping[str, str | bytes], message: str = "change") -> str:
        git(self.work, "checkout", "-q", "feature")
        for name, content in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", message)
        self.head_sha = git(self.work, "rev-parse", "HEAD")
        git(self.work, "push", "-q", "--force", str(self.bare), "feature:feature")
        git(self.bare, "update-ref", f"refs/pull/{self.number}/head", self.head_sha)
        return self.head_sha

    def diff(self) -> str:
        """The PR diff as a forge renders it (base to head, full index lines)."""
        return git(self.work, "diff", "--full-index", self.base_sha, self.head_sha) + "\n"


def serve_repo(
    tmp: Path,
    files: Mapping[str, str],
    *,
    username: str,
    token: str,
    owner: str = "acme",
    name: str = "shop",
    number: int = 1,
) -> ServedRepo:
    work = tmp / "work-repo"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "base")
    base = git(work, "rev-parse", "HEAD")
    git(work, "branch", "feature")
    root = tmp / "served"
    (root / owner).mkdir(parents=True)
    bare = root / owner / f"{name}.git"
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    cert, key = make_certificate(tmp)
    server = SmartHttpServer(root, username, token, cert, key)
    return ServedRepo(work, bare, server, number, base)


def add_pull_request_heads(repo: ServedRepo, count: int, content: str) -> dict[int, str]:
    """``count`` PR heads on top of the base, each its own commit under refs/pull/N/head
    that sets shop/cart.py to ``content`` plus a line naming N, written by one
    ``git fast-import``; returns PR number -> head sha."""
    stream = bytearray()
    for number in range(1, count + 1):
        data = f"{content}# change {number}\n".encode()
        message = f"change {number}\n".encode()
        stream += (
            f"commit refs/pull/{number}/head\nmark :{number}\n"
            f"committer Dev <dev@example.com> 1767225600 +0000\n"
            f"data {len(message)}\n"
        ).encode() + message
        stream += f"from {repo.base_sha}\nM 100644 inline shop/cart.py\n".encode()
        stream += f"data {len(data)}\n".encode() + data + b"\n"
    marks = repo.work.parent / "fast-import.marks"
    subprocess.run(
        ["git", "fast-import", "--quiet", f"--export-marks={marks}"],
        cwd=repo.bare, input=bytes(stream), check=True, capture_output=True,
        env=isolated_git_env(repo.bare, path="/usr/local/bin:/usr/bin:/bin"),
    )  # fmt: skip
    heads = {}
    for line in marks.read_text().splitlines():
        mark, sha = line.split()
        heads[int(mark.removeprefix(":"))] = sha
    return heads


def publish_heads(forge: FakeForgejo, repo: ServedRepo, heads: Mapping[int, str]) -> None:
    """Announce each PR (number -> head) on the fake forge, cloned from ``repo``."""
    for number, head in heads.items():
        diff = git(repo.bare, "diff", "--full-index", repo.base_sha, head) + "\n"
        forge.add_pull_request(
            "acme", "shop", number, head_sha=head, base_sha=repo.base_sha, diff=diff,
            clone_url=repo.clone_url,
        )  # fmt: skip


# ---- webhook payloads --------------------------------------------------------------------


def _retarget(payload: dict[str, Any], owner: str, name: str) -> None:
    repository = payload["repository"]
    repository["owner"]["login"] = owner
    repository["name"] = name
    repository["full_name"] = f"{owner}/{name}"


def forgejo_pr_payload(
    repo: ServedRepo, *, owner: str = "acme", name: str = "shop", author: str = "alice"
) -> dict[str, Any]:
    """A real Gitea ``pull_request`` "synchronized" delivery, pointed at this PR's head."""
    return forgejo_pr_delivery(
        owner, name, repo.number, repo.head_sha, repo.base_sha, author=author
    )


def forgejo_pr_delivery(
    owner: str, name: str, number: int, head_sha: str, base_sha: str, *, author: str = "alice"
) -> dict[str, Any]:
    path = reference_path("forge", "payloads", "gitea_pull_request_synchronized.json")
    payload = copy.deepcopy(load_json(path))
    _retarget(payload, owner, name)
    payload["number"] = number
    pull = payload["pull_request"]
    pull["number"] = number
    pull["head"]["sha"] = head_sha
    pull["base"]["sha"] = base_sha
    pull["user"]["login"] = author
    pull["draft"] = False
    return payload


def forgejo_comment_payload(
    repo: ServedRepo, comment_id: int, body: str, *, author: str = "alice"
) -> dict[str, Any]:
    path = reference_path("forge", "payloads", "gitea_issue_comment_created_on_pull.json")
    payload = copy.deepcopy(load_json(path))
    _retarget(payload, "acme", "shop")
    payload["issue"]["number"] = repo.number
    payload["comment"]["id"] = comment_id
    payload["comment"]["body"] = body
    payload["comment"]["user"]["login"] = author
    return payload


def github_pr_payload(repo: ServedRepo, *, owner: str, name: str) -> dict[str, Any]:
    path = reference_path("github", "webhooks-examples", "pull_request", "synchronize.payload.json")
    payload = copy.deepcopy(load_json(path))
    _retarget(payload, owner, name)
    payload["number"] = repo.number
    pull = payload["pull_request"]
    pull["number"] = repo.number
    pull["head"]["sha"] = repo.head_sha
    pull["base"]["sha"] = repo.base_sha
    pull["draft"] = False
    pull["state"] = "open"
    return payload


def post_forgejo(client: httpx.Client, payload: Any, event: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return client.post(
        "/webhooks/forgejo", content=body, headers=forgejo_headers(WEBHOOK_SECRET, body, event)
    )


def post_github(client: httpx.Client, payload: Any, event: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = github_headers(GITHUB_WEBHOOK_SECRET, body, event)
    return client.post("/webhooks/github", content=body, headers=headers)


# ---- the model ---------------------------------------------------------------------------


def finding(
    path: str,
    line: int,
    *,
    title: str,
    severity: str = "high",
    category: str = "bug",
    body: str = "Explained.",
    end: int | None = None,
) -> dict[str, Any]:
    return {
        "path": path,
        "start_line": line,
        "end_line": end or line,
        "severity": severity,
        "category": category,
        "title": title,
        "body": body,
    }


def findings_answer(*items: dict[str, Any], summary: str = "Reviewed.") -> Answer:
    return json_reply({"summary": summary, "findings": list(items)})


def is_verification(request: RecordedRequest) -> bool:
    return request.model == CHEAP_MODEL


@dataclass
class ModelScript:
    """The loopback LLM's behaviour for a test: the reasoning tier answers ``reviews`` in
    order (the last one again when they run out), the cheap tier supports every finding
    unless its title is in ``unsupported``, and questions get ``question_answer``."""

    reviews: list[Answer]
    unsupported: tuple[str, ...] = ()
    question_answer: str = "It looks right to me."

    def __call__(self, request: RecordedRequest) -> Answer:
        if is_verification(request):
            text = request.last_user_text
            supported = not any(title in text for title in self.unsupported)
            return json_reply({"supported": supported, "reason": "compared with the code"})
        if is_question(request):
            return text_reply(self.question_answer)
        answer = self.reviews[0] if len(self.reviews) == 1 else self.reviews.pop(0)
        return answer


def is_question(request: RecordedRequest) -> bool:
    return "answering one question" in request.system_text


def reasoning_requests(llm: FakeLlm) -> list[RecordedRequest]:
    """The review calls of the reasoning tier (not chat questions)."""
    return [r for r in llm.chat_requests(REASONING_MODEL) if not is_question(r)]


# ---- the gateway -------------------------------------------------------------------------


def pipeline_settings(
    *,
    llm: FakeLlm,
    cert: Path,
    forgejo_url: str | None = None,
    github: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    settings = {
        "AR_LLM_BASE_URL": llm.url,
        "AR_LLM_API_KEY": LLM_KEY,
        "AR_LLM_REASONING_MODEL": REASONING_MODEL,
        "AR_LLM_CHEAP_MODEL": CHEAP_MODEL,
        "AR_LLM_TIMEOUT_SECONDS": "5",
        "AR_LLM_MAX_RETRIES": "2",
        "AR_BOT_LOGIN": BOT,
        "AR_HTTP_TIMEOUT_SECONDS": "10",
        "AR_LOG_LEVEL": "info",
        # The loopback git server's throwaway CA (the forge and LLM fakes are plain http).
        "AR_CA_FILE": str(cert),
        "HTTPS_PROXY": "",
        "https_proxy": "",
    }
    if forgejo_url is not None:
        settings.update(
            {
                "AR_FORGEJO_URL": forgejo_url,
                "AR_FORGEJO_TOKEN": FORGE_TOKEN,
                "AR_WEBHOOK_SECRET": WEBHOOK_SECRET,
            }
        )
    settings.update(github or {})
    settings.update(extra or {})
    return settings


@contextmanager
def running_gateway(workdir: Path, settings: Mapping[str, str]) -> Iterator[GatewayProcess]:
    gateway = start_gateway(workdir, settings, runner="none")
    try:
        yield gateway
    finally:
        gateway.stop()
        assert_no_canary(gateway.logs(), "the gateway log")


def assert_no_canary(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary[:20] not in text, f"a secret leaked into {where}"


def wait_for(condition: Callable[[], Any], *, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or 'a condition'}")


def all_texts(values: Iterable[str]) -> str:
    return "\n".join(values)
