"""A loopback Forgejo/Gitea API server for tests (real HTTP on 127.0.0.1).

:class:`LoopbackForge` is the generic part (also used by the GitHub fake): a threaded
``http.server`` on an ephemeral port that records every exchange and can be told to fail
(status codes with optional Retry-After, delays, dropped connections) for the next
matching requests. :class:`FakeForgejo` speaks the Gitea v1 API subset the clients use,
with objects shaped like a real Forgejo's (the pull request is built from a real delivery
in ``reference/forge/payloads``), token auth, ``since`` filtering and Link pagination.
Every recorded exchange can be checked with :mod:`tests.support.openapi_check`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.reference import load_json, reference_path

Reply = tuple[int, dict[str, str], Any]  # status, extra headers, JSON body (None = empty)
T = TypeVar("T")


@dataclass(slots=True)
class RecordedExchange:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int = 0
    response_json: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Fault:
    """Applied to the next ``times`` requests whose path contains ``path_contains``."""

    times: int
    path_contains: str = ""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    drop: bool = False  # close the connection without answering


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LoopbackForge:
    """Threaded loopback HTTP server with recording and fault injection."""

    def __init__(self) -> None:
        self.exchanges: list[RecordedExchange] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> LoopbackForge:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests stay quiet; exchanges are recorded instead

            def _serve(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown() (which waits for the loop to notice) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackForge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- fault injection -----------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        path_contains: str = "",
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        with self._lock:
            self._faults.append(
                Fault(times, path_contains, status=status, headers=dict(headers or {}), body=body)
            )

    def delay(self, seconds: float, *, times: int = 1, path_contains: str = "") -> None:
        with self._lock:
            self._faults.append(Fault(times, path_contains, delay=seconds))

    def drop(self, *, times: int = 1, path_contains: str = "") -> None:
        with self._lock:
            self._faults.append(Fault(times, path_contains, drop=True))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.path_contains in path:
                    fault.times -= 1
                    return fault
        return None

    # -- requests ------------------------------------------------------------------------

    def requests_to(self, path_contains: str, method: str | None = None) -> list[RecordedExchange]:
        with self._lock:
            return [
                e
                for e in self.exchanges
                if path_contains in e.path and (method is None or e.method == method)
            ]

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        exchange = RecordedExchange(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.exchanges.append(exchange)
        fault = self._take_fault(split.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            handler.close_connection = True
            exchange.status = -1
            return
        if fault is not None and fault.status is not None:
            status, headers, payload = fault.status, fault.headers, fault.body
        else:
            try:
                status, headers, payload = self.handle(exchange)
            except Exception as exc:  # a bug in the fake must show, not hang the client
                status, headers, payload = 500, {}, {"message": f"fake error: {exc!r}"}
        exchange.status = status
        exchange.response_json = payload
        exchange.response_headers = dict(headers)
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json;charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, exchange: RecordedExchange) -> Reply:
        raise NotImplementedError


def link_header(base: str, query: dict[str, list[str]], page: int, pages: int) -> str:
    """RFC 8288 Link header with next/last/first/prev as Gitea and GitHub send them."""

    def url(number: int) -> str:
        params = {k: v[-1] for k, v in query.items()}
        params["page"] = str(number)
        return f"<{base}?{urlencode(params)}>"

    links = []
    if page < pages:
        links += [f'{url(page + 1)}; rel="next"', f'{url(pages)}; rel="last"']
    if page > 1:
        links += [f'{url(1)}; rel="first"', f'{url(page - 1)}; rel="prev"']
    return ", ".join(links)


@dataclass(slots=True)
class StoredComment:
    id: int
    owner: str
    repo: str
    issue_number: int
    on_pull: bool
    author: str
    body: str
    created_at: datetime
    updated_at: datetime


def page_of(items: list[T], page: int, size: int) -> tuple[list[T], int]:
    """Page ``page`` (from 1) of ``size`` items, and how many pages there are (at least 1)."""
    pages = max(1, -(-len(items) // size))
    return items[(page - 1) * size : page * size], pages


class CommentingForge(LoopbackForge):
    """A loopback forge that stores pull-request and issue comments (ids count up from
    ``first_comment_id``); subclasses serve them in their forge's shape."""

    def __init__(self, *, first_comment_id: int) -> None:
        super().__init__()
        self.comments: list[StoredComment] = []
        self._next_comment_id = first_comment_id

    def add_comment(
        self,
        owner: str,
        repo: str,
        issue_number: int,
        *,
        author: str,
        body: str,
        on_pull: bool = True,
        updated_at: datetime | None = None,
        created_at: datetime | None = None,
    ) -> int:
        self._next_comment_id += 1
        updated = updated_at or datetime.now(UTC)
        self.comments.append(
            StoredComment(
                id=self._next_comment_id,
                owner=owner,
                repo=repo,
                issue_number=issue_number,
                on_pull=on_pull,
                author=author,
                body=body,
                created_at=created_at or updated,
                updated_at=updated,
            )
        )
        return self._next_comment_id


class FakeForgejo(CommentingForge):
    """The Gitea/Forgejo v1 API subset used by ForgejoClient."""

    API = "/api/v1"
    DEFAULT_PAGE_SIZE = 30  # Gitea [api] DEFAULT_PAGING_NUM
    MAX_PAGE_SIZE = 50  # Gitea [api] MAX_RESPONSE_ITEMS

    def __init__(self, token: str, *, bot_login: str = "auto-review-bot") -> None:
        super().__init__(first_comment_id=1000)
        self.token = token
        self.bot_login = bot_login
        self.pulls: dict[tuple[str, str, int], dict[str, Any]] = {}
        template = load_json(
            reference_path("forge", "payloads", "forgejo_pull_request_reopened.json")
        )
        assert isinstance(template, dict)
        self._pull_template = template["pull_request"]

    # -- state -----------------------------------------------------------------------------

    def user_object(self, login: str, user_id: int = 7) -> dict[str, Any]:
        return {
            "id": user_id,
            "login": login,
            "login_name": "",
            "source_id": 0,
            "full_name": "",
            "email": f"{login}@noreply.example",
            "avatar_url": f"{self.url}/avatars/{login}",
            "html_url": f"{self.url}/{login}",
            "language": "",
            "is_admin": False,
            "last_login": "2026-01-01T00:00:00Z",
            "created": "2024-01-01T00:00:00Z",
            "restricted": False,
            "active": True,
            "prohibit_login": False,
            "location": "",
            "website": "",
            "description": "",
            "visibility": "public",
            "followers_count": 0,
            "following_count": 0,
            "starred_repos_count": 0,
            "username": login,
        }

    def add_pull_request(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        head_sha: str,
        base_sha: str,
        author: str = "alice",
        title: str = "Add a feature",
        draft: bool | None = False,
        state: str = "open",
        merged: bool = False,
    ) -> None:
        pull = copy.deepcopy(self._pull_template)
        html = f"{self.url}/{owner}/{repo}/pulls/{number}"
        pull.update(
            id=500_000 + number,
            number=number,
            url=html,
            html_url=html,
            diff_url=html + ".diff",
            patch_url=html + ".patch",
            title=title,
            state=state,
            merged=merged,
            user=self.user_object(author, 42),
        )
        if draft is None:
            pull.pop("draft", None)  # Gitea before 1.20 has no draft field
        else:
            pull["draft"] = draft
        pull["head"]["sha"] = head_sha
        pull["base"]["sha"] = base_sha
        for side in ("head", "base"):
            pull[side]["repo"]["name"] = repo
            pull[side]["repo"]["full_name"] = f"{owner}/{repo}"
            pull[side]["repo"]["owner"] = self.user_object(owner, 90)
        self.pulls[(owner, repo, number)] = pull

    def comment_object(self, comment: StoredComment) -> dict[str, Any]:
        kind = "pulls" if comment.on_pull else "issues"
        page = f"{self.url}/{comment.owner}/{comment.repo}/{kind}/{comment.issue_number}"
        return {
            "id": comment.id,
            "html_url": f"{page}#issuecomment-{comment.id}",
            # Gitea fills exactly one of these two, with the issue's or PR's HTML URL.
            "pull_request_url": page if comment.on_pull else "",
            "issue_url": "" if comment.on_pull else page,
            "user": self.user_object(comment.author, 100 + len(comment.author)),
            "original_author": "",
            "original_author_id": 0,
            "body": comment.body,
            "assets": [],
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
        }

    # -- routing ---------------------------------------------------------------------------

    def handle(self, exchange: RecordedExchange) -> Reply:
        path = exchange.path
        if not path.startswith(self.API + "/"):
            return 404, {}, None
        path = path[len(self.API) :]
        if exchange.method == "GET" and path == "/version":
            return 200, {}, {"version": "11.0.1+gitea-1.22.0"}
        auth = exchange.headers.get("authorization", "")
        if auth != f"token {self.token}":
            return 401, {}, {"message": "token is required", "url": f"{self.url}/api/swagger"}
        parts = path.strip("/").split("/")
        if exchange.method == "GET" and parts == ["user"]:
            return 200, {}, self.user_object(self.bot_login, 1)
        if exchange.method == "GET" and len(parts) == 5 and parts[0] == "repos":
            owner, repo = parts[1], parts[2]
            if parts[3] == "pulls" and parts[4].isdigit():
                pull = self.pulls.get((owner, repo, int(parts[4])))
                return (200, {}, pull) if pull else (404, {}, None)
            if parts[3:] == ["issues", "comments"]:
                return self._list_comments(owner, repo, exchange)
        return 404, {}, None

    def _list_comments(self, owner: str, repo: str, exchange: RecordedExchange) -> Reply:
        query = exchange.query
        since = parse_time(query["since"][0]) if "since" in query else None
        page = int(query.get("page", ["1"])[0] or 1)
        limit = int(query.get("limit", [str(self.DEFAULT_PAGE_SIZE)])[0])
        limit = min(max(limit, 1), self.MAX_PAGE_SIZE)
        # Gitea: comment type "comment" only, updated_unix >= since, oldest first.
        matching = sorted(
            (
                c
                for c in self.comments
                if (c.owner, c.repo) == (owner, repo) and (since is None or c.updated_at >= since)
            ),
            key=lambda c: (c.created_at, c.id),
        )
        chunk, pages = page_of(matching, page, limit)
        headers = {"X-Total-Count": str(len(matching))}
        link = link_header(f"{self.url}{exchange.path}", query, page, pages)
        if link:
            headers["Link"] = link
        return 200, headers, [self.comment_object(c) for c in chunk]
