"""The soak bench's load: the request mix of issue 14 point 7, at a chosen scale.

Per second at scale 1.0: 100 signed ``pull_request`` deliveries for heads that are not the
PR's current head (older real commits of that PR), 2 real pushes with their webhook
across the pull requests, 20 deliveries with a bad signature, 20 replays of an earlier
delivery (same delivery id and body) and 5 chat commands. Each stream is paced on its own
schedule; every answer is counted by kind and status.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from tests.support.gateway_process import forgejo_headers
from tests.support.reference import load_json, reference_path

from soak_world import BOT, OWNER, PullRequest, SoakForge

FULL_MIX = {"stale": 100.0, "push": 2.0, "bad-signature": 20.0, "replay": 20.0, "chat": 5.0}
CHAT_COMMANDS = ("help", "remember {repo} uses Decimal for money", "why does it divide by zero?")
MAX_IN_FLIGHT = 256


def _template(name: str) -> dict[str, Any]:
    loaded = load_json(reference_path("forge", "payloads", name))
    assert isinstance(loaded, dict)
    return loaded


PR_TEMPLATE = _template("gitea_pull_request_synchronized.json")
COMMENT_TEMPLATE = _template("gitea_issue_comment_created_on_pull.json")


def _retarget(payload: dict[str, Any], repo: str) -> None:
    repository = payload["repository"]
    repository["owner"]["login"] = OWNER
    repository["name"] = repo
    repository["full_name"] = f"{OWNER}/{repo}"


def pr_delivery(pull: PullRequest, head: str, base: str) -> bytes:
    payload = copy.deepcopy(PR_TEMPLATE)
    _retarget(payload, pull.repo)
    payload["number"] = pull.number
    body = payload["pull_request"]
    body.update(number=pull.number, draft=False, state="open")
    body["head"]["sha"] = head
    body["base"]["sha"] = base
    body["user"]["login"] = "alice"
    return json.dumps(payload).encode()


def comment_delivery(pull: PullRequest, comment_id: int, text: str) -> bytes:
    payload = copy.deepcopy(COMMENT_TEMPLATE)
    _retarget(payload, pull.repo)
    payload["issue"]["number"] = pull.number
    payload["comment"].update(id=comment_id, body=text)
    payload["comment"]["user"]["login"] = "alice"
    return json.dumps(payload).encode()


@dataclass
class LoadCounts:
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (kind, status)
    transport_errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, since the last report

    def take_latencies(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


class Load:
    """Drives the mix against the gateway until ``stop`` is set."""

    def __init__(
        self, world: SoakForge, gateway_url: str, secret: str, scale: float, seed: int
    ) -> None:
        self.world = world
        self.url = gateway_url.rstrip("/") + "/webhooks/forgejo"
        self.secret = secret
        self.rates = {kind: rate * scale for kind, rate in FULL_MIX.items()}
        self.random = random.Random(seed)
        self.counts = LoadCounts()
        self.sent: deque[tuple[bytes, dict[str, str], str]] = deque(maxlen=500)
        self.stop = asyncio.Event()
        self._comment_id = 10_000
        self._push_cursor = 0
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as client:
            self.client = client
            streams = [self._paced(kind, rate) for kind, rate in self.rates.items() if rate > 0]
            await asyncio.gather(*streams)

    async def _paced(self, kind: str, rate: float) -> None:
        interval = 1.0 / rate
        started = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        while not self.stop.is_set():
            delay = started + sent * interval - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            sent += 1
            await self._in_flight.acquire()
            task = asyncio.create_task(self._one(kind))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, kind: str) -> None:
        try:
            request = await self._build(kind)
            if request is None:
                return
            body, headers, event = request
            started = time.monotonic()
            try:
                answer = await self.client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.counts.transport_errors[type(exc).__name__] += 1
                return
            self.counts.latencies.append(time.monotonic() - started)
            self.counts.answers[(kind, answer.status_code)] += 1
            if kind in ("stale", "push", "chat") and answer.status_code < 300:
                self.sent.append((body, headers, event))
        finally:
            self._in_flight.release()

    async def _build(self, kind: str) -> tuple[bytes, dict[str, str], str] | None:
        pulls = self.world.pulls
        if kind == "push":
            pull = pulls[self._push_cursor % len(pulls)]  # round robin: every PR moves
            self._push_cursor += 1
            head = await asyncio.to_thread(self.world.push, pull)
            base = self.world.repos[pull.repo].base_sha
            body = pr_delivery(pull, head, base)
            return body, self._headers(body, "pull_request"), "pull_request"
        if kind == "stale":
            pull = self.random.choice(pulls)
            head = self.random.choice(pull.stale_pool)
            body = pr_delivery(pull, head, self.world.repos[pull.repo].base_sha)
            return body, self._headers(body, "pull_request"), "pull_request"
        if kind == "bad-signature":
            pull = self.random.choice(pulls)
            body = pr_delivery(pull, pull.head, self.world.repos[pull.repo].base_sha)
            headers = forgejo_headers("not-the-secret-" + "x" * 32, body, "pull_request",
                                     str(uuid.uuid4()))  # fmt: skip
            return body, headers, "pull_request"
        if kind == "replay":
            if not self.sent:
                return None
            body, headers, event = self.random.choice(self.sent)
            return body, headers, event
        pull = self.random.choice(pulls)
        self._comment_id += 1
        command = self.random.choice(CHAT_COMMANDS).format(repo=pull.repo)
        body = comment_delivery(pull, self._comment_id, f"@{BOT} {command}")
        return body, self._headers(body, "issue_comment"), "issue_comment"

    def _headers(self, body: bytes, event: str) -> dict[str, str]:
        return forgejo_headers(self.secret, body, event, str(uuid.uuid4()))
