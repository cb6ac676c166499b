"""A loopback Forgejo/Gitea API server for tests (real HTTP on 127.0.0.1).

:class:`LoopbackForge` is the generic part (also used by the GitHub fake): a threaded
``http.server`` on an ephemeral port that records every exchange and can be told to fail
(status codes with optional Retry-After, delays, dropped connections) for the next
matching requests, or (``forge.chaos = RandomFaults(seed=..., rate=0.1)``, see
:mod:`tests.support.chaos`) fail a random share of the API requests; neither is on unless a
test asks. :class:`FakeForgejo` speaks the Gitea v1 API subset the clients use,
with objects shaped like a real Forgejo's (the pull request is built from a real delivery
in ``reference/forge/payloads``), token auth, ``since`` filtering and Link pagination.
Every recorded exchange can be checked with :mod:`tests.support.openapi_check`.

``start(tls=context)`` serves HTTPS instead (``url`` then says https; the handshake runs in
the connection's own thread), and ``passthrough`` may take requests the API does not serve
(git smart HTTP on the same host:port, see :mod:`tests.support.git_http_backend`): it is
called first with the request handler and returns True when it answered. Such requests
are not recorded as exchanges.

Review state (:class:`ReviewingForge`, shared with the GitHub fake), all in memory::

    fake = FakeForgejo(token, bot_login="review-bot")       # posts are authored by bot_login
    fake.add_pull_request("acme", "widgets", 7, head_sha=..., base_sha=..., body="...",
                          labels=("bug",), base_branch="main", diff=git_diff_bytes)
    fake.set_diff("acme", "widgets", 7, diff)             # changed files come from the diff
    fake.add_file("acme", "widgets", ref, "path/in/repo", b"bytes")   # served by /raw
    fake.add_review("acme", "widgets", 7, author="carol", body="", commit_id=sha,
                    comments=[("app.py", 3, "new", "nit")])           # a review by someone else
    fake.add_comment("acme", "widgets", 7, author="bob", body="@bot help")
    fake.posted_reviews("acme", "widgets", 7)   # StoredReview list (what clients posted)
    fake.statuses(sha)                          # StoredStatus list
    fake.issue_comments("acme", "widgets", 7)   # StoredComment list (posted and seeded)

Endpoints: ``GET /user``, ``GET /version``, ``GET /repos/{o}/{r}/pulls/{n}`` and ``.diff``,
``/pulls/{n}/files``, ``GET|POST /pulls/{n}/reviews``, ``/pulls/{n}/reviews/{id}/comments``,
``GET|POST /issues/{n}/comments``, ``GET /issues/comments``, ``GET /raw/{path}?ref=``,
``POST /statuses/{sha}``, ``GET|POST /repos/{o}/{r}/hooks`` (and ``/orgs/{org}/hooks``),
``PATCH|DELETE
/repos/{o}/{r}/hooks/{id}`` (a hook's secret is stored but never served, as Gitea does) and
``POST /users/{username}/tokens`` (basic auth with a password given to ``add_password``;
a token name used twice is answered 400, as Gitea does). A review comment on a line the
diff does not show on that side is answered 422 (see :class:`ReviewingForge`).

    fake.add_password("bot", "pw")          # the account auth init mints a token for
    fake.minted_tokens                      # [(username, name, scopes, token)]
    fake.hooks_of("acme", "widgets")        # StoredHook list (the secret included)
    fake.hooks_of("acme", "")               # the organisation's hooks (/orgs/{org}/hooks)
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.support.chaos import (
    LOST_REPLY,
    LoopbackHttpServer,
    RandomFaults,
    reset_connection,
    stall_until_the_client_gives_up,
)
from tests.support.reference import load_json, reference_path

# status, extra headers, body: JSON-able value, None (empty) or bytes (sent as they are, with
# the reply's Content-Type header or application/octet-stream)
Reply = tuple[int, dict[str, str], Any]
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
    response_body: bytes = b""
    response_content_type: str = ""  # "" = JSON (hand-built exchanges)
    chaos: str = ""  # the random fault it got (see tests.support.chaos), "" for none

    def json_body(self) -> Any:
        """The request body as JSON (the fakes parse what clients post)."""
        return json.loads(self.body) if self.body else None


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
        # Notified after each recorded exchange: what wait_for_requests waits on.
        self._recorded = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.tls: ssl.SSLContext | None = None
        # Asked first with each request; True: it answered (e.g. git smart HTTP).
        self.passthrough: Callable[[BaseHTTPRequestHandler], bool] | None = None
        # Opt-in random faults on the API requests (not on the passthrough).
        self.chaos: RandomFaults | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, tls: ssl.SSLContext | None = None) -> Self:
        fake = self
        self.tls = tls

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Head and body go out in separate writes: without this, Nagle delays each
            # answer by the peer's delayed-ACK timer (about 40 ms).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests stay quiet; exchanges are recorded instead

            def setup(self) -> None:
                if fake.tls is not None:
                    # Here, not in accept(): a slow handshake holds only this connection.
                    self.request = fake.tls.wrap_socket(self.request, server_side=True)
                super().setup()

            def _serve(self) -> None:
                if fake.passthrough is not None and fake.passthrough(self):
                    return
                fake._dispatch(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self._server = LoopbackHttpServer(("127.0.0.1", 0), Handler)
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

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

    def wait_for_requests(
        self, path_contains: str, count: int, method: str | None = None, timeout: float = 15.0
    ) -> list[RecordedExchange]:
        """Block until at least ``count`` recorded exchanges match; the positive signal a
        test waits on before it checks that nothing else happened."""
        with self._recorded:
            self._recorded.wait_for(
                lambda: len(self.requests_to(path_contains, method)) >= count, timeout
            )
        return self.requests_to(path_contains, method)

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
        with self._recorded:
            self._recorded.notify_all()
        fault = self._take_fault(split.path)
        if fault is None and self.chaos is not None and self._inject_chaos(handler, exchange):
            return
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
        headers = dict(headers)
        if isinstance(payload, bytes):
            content_type = headers.pop("Content-Type", "application/octet-stream")
            data = payload
        else:
            content_type = "application/json;charset=utf-8"
            data = b"" if payload is None else json.dumps(payload).encode()
            exchange.response_json = payload
        exchange.status = status
        exchange.response_headers = headers
        exchange.response_body = data
        exchange.response_content_type = content_type
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _inject_chaos(self, handler: BaseHTTPRequestHandler, exchange: RecordedExchange) -> bool:
        """Fail this request if the random faults say so; True when it was answered."""
        assert self.chaos is not None
        kind = self.chaos.draw(exchange.method)
        if kind is None:
            return False
        exchange.chaos = kind
        if kind == "reset":
            exchange.status = -1
            reset_connection(handler)
            return True
        if kind == LOST_REPLY:
            try:
                exchange.status = self.handle(exchange)[0]  # done, but never answered
            except Exception:
                exchange.status = 500
        if kind in ("timeout", LOST_REPLY):
            if kind == "timeout":
                exchange.status = -1
            stall_until_the_client_gives_up(handler, self.chaos.stall_seconds)
            return True
        status = 429 if kind == "429" else self.chaos.error_status()
        headers = {"Retry-After": self.chaos.retry_after} if kind == "429" else {}
        data = json.dumps({"message": f"injected fault: HTTP {status}", "url": ""}).encode()
        exchange.status = status
        exchange.response_headers = headers
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json;charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            handler.close_connection = True
        return True

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


@dataclass(slots=True)
class DiffFile:
    """One file of a unified diff, as the fakes list it and check comment lines against."""

    path: str
    previous_path: str | None = None
    status: str = "modified"  # added | deleted | modified | renamed | copied | mode
    additions: int = 0
    deletions: int = 0
    new_lines: set[int] = field(default_factory=set)  # new-side lines shown in a hunk
    old_lines: set[int] = field(default_factory=set)  # old-side lines shown in a hunk
    hunks: list[str] = field(default_factory=list)


_HUNK_RE = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def files_from_diff(diff: bytes) -> list[DiffFile]:
    """The files of a ``git diff`` output with their shown lines (a small reader for the
    fakes, independent of the product's own diff parser so each checks the other)."""
    files: list[DiffFile] = []
    current: DiffFile | None = None
    old_left = new_left = old_line = new_line = 0
    for line in diff.decode("utf-8", "replace").split("\n"):
        line = line.removesuffix("\r")
        if old_left > 0 or new_left > 0:
            assert current is not None
            kind = line[:1]
            if kind == "\\":
                continue
            current.hunks[-1] += line + "\n"
            if kind in (" ", ""):
                current.old_lines.add(old_line)
                current.new_lines.add(new_line)
                old_line, new_line, old_left, new_left = (
                    old_line + 1,
                    new_line + 1,
                    old_left - 1,
                    new_left - 1,
                )
            elif kind == "-":
                current.old_lines.add(old_line)
                current.deletions += 1
                old_line, old_left = old_line + 1, old_left - 1
            elif kind == "+":
                current.new_lines.add(new_line)
                current.additions += 1
                new_line, new_left = new_line + 1, new_left - 1
            continue
        if line.startswith("diff --git "):
            names = line.removeprefix("diff --git ")
            old, _, new = names.partition(" b/")
            current = DiffFile(path=new, previous_path=old.removeprefix("a/"))
            files.append(current)
            continue
        if current is None:
            continue
        hunk = _HUNK_RE.match(line)
        if hunk:
            old_line, new_line = int(hunk[1]), int(hunk[3])
            old_left = int(hunk[2]) if hunk[2] is not None else 1
            new_left = int(hunk[4]) if hunk[4] is not None else 1
            current.hunks.append(line + "\n")
        elif line.startswith("new file mode"):
            current.status = "added"
        elif line.startswith("deleted file mode"):
            current.status = "deleted"
        elif line.startswith(("rename from ", "copy from ")):
            current.status = "renamed" if line.startswith("rename") else "copied"
            current.previous_path = line.split(" from ", 1)[1]
        elif line.startswith(("rename to ", "copy to ")):
            current.path = line.split(" to ", 1)[1]
        elif line.startswith("old mode") and current.status == "modified":
            current.status = "mode"
    for entry in files:
        if entry.status == "mode" and (entry.additions or entry.deletions):
            entry.status = "modified"
        if entry.status not in ("renamed", "copied"):
            entry.previous_path = None
    return files


@dataclass(slots=True)
class StoredReviewComment:
    id: int
    review_id: int
    path: str
    line: int
    side: str  # "new" | "old"
    body: str
    author: str
    created_at: datetime


@dataclass(slots=True)
class StoredReview:
    id: int
    owner: str
    repo: str
    number: int
    author: str
    commit_id: str
    body: str
    state: str  # the forge's review state word, e.g. "COMMENT" / "COMMENTED"
    submitted_at: datetime
    comments: list[StoredReviewComment] = field(default_factory=list)
    via_api: bool = False  # True when a client posted it (False: seeded by a test)


@dataclass(slots=True)
class StoredStatus:
    id: int
    owner: str
    repo: str
    sha: str
    state: str
    description: str
    context: str
    target_url: str
    creator: str
    created_at: datetime


class ReviewingForge(CommentingForge):
    """Pull-request review state both fakes keep in memory, and how tests reach it.

    Set up: ``add_pull_request(...)`` (per forge), ``set_diff(owner, repo, number, diff)``
    (the changed files are read from it), ``add_file(owner, repo, ref, path, content)``,
    ``add_review(owner, repo, number, author=, body=, commit_id=, comments=[(path, line,
    side, body)])`` for reviews by others. Read back: ``posted_reviews(owner, repo, number)``
    (reviews clients posted, with their inline comments), ``statuses(sha)``,
    ``issue_comments(owner, repo, number)``.

    Inline comments are accepted only on lines a hunk of the PR's diff shows on that side,
    as GitHub does (422 otherwise); the Forgejo fake applies the same rule, stricter than
    Gitea, so a comment on an unchanged line fails a test instead of passing silently.
    """

    def __init__(self, *, first_comment_id: int, first_review_id: int) -> None:
        super().__init__(first_comment_id=first_comment_id)
        self.diffs: dict[tuple[str, str, int], bytes] = {}
        self.files: dict[tuple[str, str, str, str], bytes] = {}  # owner, repo, ref, path
        self.reviews: list[StoredReview] = []
        self.status_list: list[StoredStatus] = []
        self._next_review_id = first_review_id
        self._next_review_comment_id = first_review_id * 10
        self._next_status_id = 1

    def repo_key(self, owner: str, repo: str) -> tuple[str, str]:
        return owner, repo

    # -- set-up --------------------------------------------------------------------------

    def set_diff(self, owner: str, repo: str, number: int, diff: bytes | str) -> None:
        data = diff.encode() if isinstance(diff, str) else diff
        self.diffs[(*self.repo_key(owner, repo), number)] = data

    def add_file(self, owner: str, repo: str, ref: str, path: str, content: bytes | str) -> None:
        data = content.encode() if isinstance(content, str) else content
        self.files[(*self.repo_key(owner, repo), ref, path)] = data

    def add_review(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        author: str,
        body: str,
        commit_id: str,
        comments: Sequence[tuple[str, int, str, str]] = (),
    ) -> int:
        review = self._store_review(owner, repo, number, author, commit_id, body, via_api=False)
        for path, line, side, text in comments:
            self._store_review_comment(review, path, line, side, text)
        return review.id

    # -- read back -------------------------------------------------------------------------

    def posted_reviews(self, owner: str, repo: str, number: int) -> list[StoredReview]:
        key = (*self.repo_key(owner, repo), number)
        return [r for r in self.reviews if r.via_api and (r.owner, r.repo, r.number) == key]

    def statuses(self, sha: str) -> list[StoredStatus]:
        return [s for s in self.status_list if s.sha == sha.lower()]

    def issue_comments(self, owner: str, repo: str, number: int) -> list[StoredComment]:
        key = self.repo_key(owner, repo)
        return [
            c
            for c in self.comments
            if self.repo_key(c.owner, c.repo) == key and c.issue_number == number
        ]

    # -- shared behaviour -------------------------------------------------------------------

    def diff_files(self, owner: str, repo: str, number: int) -> list[DiffFile]:
        return files_from_diff(self.diffs.get((*self.repo_key(owner, repo), number), b""))

    def reviews_of(self, owner: str, repo: str, number: int) -> list[StoredReview]:
        key = (*self.repo_key(owner, repo), number)
        return [r for r in self.reviews if (r.owner, r.repo, r.number) == key]

    def comment_problem(
        self, owner: str, repo: str, number: int, path: str, line: int, side: str
    ) -> str | None:
        """Why an inline comment cannot be placed, or None."""
        for entry in self.diff_files(owner, repo, number):
            if entry.path == path:
                shown = entry.new_lines if side == "new" else entry.old_lines
                return None if line in shown else f"line {line} ({side}) is not in the diff"
        return f"path {path!r} is not in the diff"

    def _store_review(
        self,
        owner: str,
        repo: str,
        number: int,
        author: str,
        commit_id: str,
        body: str,
        *,
        via_api: bool,
    ) -> StoredReview:
        self._next_review_id += 1
        owner, repo = self.repo_key(owner, repo)
        review = StoredReview(
            self._next_review_id,
            owner,
            repo,
            number,
            author,
            commit_id,
            body,
            self.review_state,
            datetime.now(UTC),
            via_api=via_api,
        )
        self.reviews.append(review)
        return review

    def _store_review_comment(
        self, review: StoredReview, path: str, line: int, side: str, body: str
    ) -> StoredReviewComment:
        self._next_review_comment_id += 1
        comment = StoredReviewComment(
            self._next_review_comment_id,
            review.id,
            path,
            line,
            side,
            body,
            review.author,
            review.submitted_at,
        )
        review.comments.append(comment)
        return comment

    def _store_status(
        self, owner: str, repo: str, sha: str, payload: dict[str, Any], creator: str
    ) -> StoredStatus:
        self._next_status_id += 1
        owner, repo = self.repo_key(owner, repo)
        status = StoredStatus(
            self._next_status_id,
            owner,
            repo,
            sha.lower(),
            payload["state"],
            payload.get("description") or "",
            payload.get("context") or "default",
            payload.get("target_url") or "",
            creator,
            datetime.now(UTC),
        )
        self.status_list.append(status)
        return status

    review_state = "COMMENT"


@dataclass(slots=True)
class StoredHook:
    id: int
    owner: str
    repo: str
    type: str
    config: dict[str, str]
    events: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime


class FakeForgejo(ReviewingForge):
    """The Gitea/Forgejo v1 API subset used by ForgejoClient."""

    API = "/api/v1"
    DEFAULT_PAGE_SIZE = 30  # Gitea [api] DEFAULT_PAGING_NUM
    MAX_PAGE_SIZE = 50  # Gitea [api] MAX_RESPONSE_ITEMS

    def __init__(self, token: str, *, bot_login: str = "auto-review-bot") -> None:
        super().__init__(first_comment_id=1000, first_review_id=100)
        self.token = token
        self.bot_login = bot_login
        self.pulls: dict[tuple[str, str, int], dict[str, Any]] = {}
        template = load_json(
            reference_path("forge", "payloads", "forgejo_pull_request_reopened.json")
        )
        assert isinstance(template, dict)
        self._pull_template = template["pull_request"]
        self.hooks: list[StoredHook] = []
        self._next_hook_id = 1
        self.passwords: dict[str, str] = {}
        self.minted_tokens: list[tuple[str, str, list[str], str]] = []
        # The scopes of ``token`` (None: every scope), as Gitea enforces them per route
        # category on the routes that report a token's reach.
        self.token_scopes: set[str] | None = None

    def add_password(self, login: str, password: str) -> None:
        self.passwords[login] = password

    def _token_reaches(self, category: str) -> bool:
        if self.token_scopes is None:
            return True
        wanted = {f"read:{category}", f"write:{category}", "all"}
        return bool(self.token_scopes & wanted)

    def hooks_of(self, owner: str, repo: str) -> list[StoredHook]:
        with self._lock:
            return [h for h in self.hooks if (h.owner, h.repo) == (owner, repo)]

    def add_hook(
        self,
        owner: str,
        repo: str,
        *,
        url: str,
        secret: str = "",
        events: Sequence[str] = ("push",),
        active: bool = True,
    ) -> StoredHook:
        now = datetime.now(UTC)
        with self._lock:
            hook = StoredHook(
                self._next_hook_id, owner, repo, "gitea",
                {"url": url, "content_type": "json", "secret": secret},
                list(events), active, now, now,
            )  # fmt: skip
            self._next_hook_id += 1
            self.hooks.append(hook)
        return hook

    def hook_object(self, hook: StoredHook) -> dict[str, Any]:
        # Gitea never serves the secret back.
        config = {k: v for k, v in hook.config.items() if k != "secret"}
        return {
            "id": hook.id,
            "type": hook.type,
            "branch_filter": "*",
            "config": config,
            "events": list(hook.events),
            "authorization_header": "",
            "active": hook.active,
            "updated_at": iso(hook.updated_at),
            "created_at": iso(hook.created_at),
        }

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
        body: str = "",
        labels: tuple[str, ...] = (),
        base_branch: str = "main",
        diff: bytes | str | None = None,
        clone_url: str | None = None,  # e.g. a loopback git server; default: the forge's own
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
            body=body,
            labels=[self.label_object(name, i) for i, name in enumerate(labels, 1)],
        )
        if diff is not None:
            self.set_diff(owner, repo, number, diff)
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
            pull[side]["repo"]["clone_url"] = clone_url or f"{self.url}/{owner}/{repo}.git"
            pull[side]["repo"]["html_url"] = f"{self.url}/{owner}/{repo}"
        pull["base"]["ref"] = base_branch
        pull["head"]["ref"] = f"feature-{number}"
        self.pulls[(owner, repo, number)] = pull

    def label_object(self, name: str, label_id: int) -> dict[str, Any]:
        return {
            "id": label_id,
            "name": name,
            "exclusive": False,
            "is_archived": False,
            "color": "e11d21",
            "description": "",
            "url": f"{self.url}/api/v1/labels/{label_id}",
        }

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
        token_path = re.fullmatch(r"/users/([^/]+)/tokens", path)
        if token_path and exchange.method == "POST":
            return self._create_token(unquote(token_path[1]), exchange)
        auth = exchange.headers.get("authorization", "")
        if auth != f"token {self.token}":
            return 401, {}, {"message": "token is required", "url": f"{self.url}/api/swagger"}
        parts = path.strip("/").split("/")
        method = exchange.method
        category = {"user": "user", "repos/search": "repository",
                    "repos/issues/search": "issue"}.get("/".join(parts))  # fmt: skip
        if method == "GET" and category is not None and not self._token_reaches(category):
            message = f"token does not have at least one of required scope(s): [read:{category}]"
            return 403, {}, {"message": message, "url": f"{self.url}/api/swagger"}
        if method == "GET" and parts == ["user"]:
            return 200, {}, self.user_object(self.bot_login, 1)
        if method == "GET" and parts == ["repos", "search"]:
            return 200, {}, {"ok": True, "data": []}
        if method == "GET" and parts == ["repos", "issues", "search"]:
            return 200, {}, []
        if len(parts) >= 3 and parts[0] == "orgs" and parts[2] == "hooks":
            # An organisation's hooks are kept as hooks of (org, ""): no repository.
            return self._hooks(parts[1], "", parts[3:], method, exchange)
        if len(parts) < 4 or parts[0] != "repos":
            return 404, {}, None
        owner, repo, rest = parts[1], parts[2], parts[3:]
        if method == "GET" and rest[0] == "raw" and len(rest) > 1:
            return self._raw_file(owner, repo, "/".join(rest[1:]), exchange)
        if method == "GET" and rest == ["issues", "comments"]:
            return self._list_comments(owner, repo, exchange)
        if rest[0] == "hooks":
            return self._hooks(owner, repo, rest[1:], method, exchange)
        if method == "POST" and len(rest) == 2 and rest[0] == "statuses":
            return self._create_status(owner, repo, rest[1], exchange)
        if len(rest) >= 2 and rest[0] == "issues" and rest[1].isdigit():
            return self._issue(owner, repo, int(rest[1]), rest[2:], method, exchange)
        if len(rest) >= 2 and rest[0] == "pulls":
            return self._pull(owner, repo, rest[1], rest[2:], method, exchange)
        return 404, {}, None

    def _pull(
        self, owner: str, repo: str, index: str, rest: list[str], method: str, exchange: Any
    ) -> Reply:
        if index.endswith(".diff") and not rest and method == "GET":
            digits = index.removesuffix(".diff")
            if not digits.isdigit() or (owner, repo, int(digits)) not in self.pulls:
                return 404, {}, None
            diff = self.diffs.get((owner, repo, int(digits)), b"")
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, diff
        if not index.isdigit() or (owner, repo, int(index)) not in self.pulls:
            return 404, {}, None
        number = int(index)
        if method == "GET" and not rest:
            return 200, {}, self.pulls[(owner, repo, number)]
        if method == "GET" and rest == ["files"]:
            files = [
                self.changed_file_object(owner, repo, f)
                for f in self.diff_files(owner, repo, number)
            ]
            return self._paged(files, exchange)
        if rest == ["reviews"] and method == "GET":
            reviews = [self.review_object(r) for r in self.reviews_of(owner, repo, number)]
            return self._paged(reviews, exchange)
        if rest == ["reviews"] and method == "POST":
            return self._create_review(owner, repo, number, exchange)
        if method == "GET" and len(rest) == 3 and rest[0] == "reviews" and rest[2] == "comments":
            for review in self.reviews_of(owner, repo, number):
                if str(review.id) == rest[1]:
                    return 200, {}, [self.review_comment_object(review, c) for c in review.comments]
        return 404, {}, None

    def _issue(
        self, owner: str, repo: str, number: int, rest: list[str], method: str, exchange: Any
    ) -> Reply:
        if rest != ["comments"]:
            return 404, {}, None
        on_pull = (owner, repo, number) in self.pulls
        if method == "GET":
            listed = [c for c in self.issue_comments(owner, repo, number)]
            listed.sort(key=lambda c: (c.created_at, c.id))
            return 200, {}, [self.comment_object(c) for c in listed]
        if method == "POST":
            payload = exchange.json_body()
            if not isinstance(payload, dict) or not isinstance(payload.get("body"), str):
                return 422, {}, {"message": "body is required", "url": ""}
            comment_id = self.add_comment(
                owner, repo, number, author=self.bot_login, body=payload["body"], on_pull=on_pull
            )
            stored = next(c for c in self.comments if c.id == comment_id)
            return 201, {}, self.comment_object(stored)
        return 404, {}, None

    def _create_review(self, owner: str, repo: str, number: int, exchange: Any) -> Reply:
        payload = exchange.json_body()
        if not isinstance(payload, dict) or payload.get("event") not in (
            "COMMENT",
            "APPROVED",
            "REQUEST_CHANGES",
            "PENDING",
        ):
            return 422, {}, {"message": "invalid review event", "url": ""}
        comments = payload.get("comments") or []
        if (
            payload["event"] == "COMMENT"
            and not comments
            and not str(payload.get("body") or "").strip()
        ):
            return (
                422,
                {},
                {"message": "review event COMMENT requires a body or a comment", "url": ""},
            )
        placed = []
        for comment in comments:
            new, old = comment.get("new_position", 0), comment.get("old_position", 0)
            side, line = ("old", old) if old > 0 else ("new", new)
            problem = self.comment_problem(owner, repo, number, comment.get("path", ""), line, side)
            if problem:
                return 422, {}, {"message": problem, "url": ""}
            placed.append((comment["path"], line, side, comment.get("body", "")))
        head = self.pulls[(owner, repo, number)]["head"]["sha"]
        review = self._store_review(
            owner,
            repo,
            number,
            self.bot_login,
            payload.get("commit_id") or head,
            payload.get("body", ""),
            via_api=True,
        )
        for path, line, side, text in placed:
            self._store_review_comment(review, path, line, side, text)
        return 200, {}, self.review_object(review)

    def _create_status(self, owner: str, repo: str, sha: str, exchange: Any) -> Reply:
        payload = exchange.json_body()
        if not isinstance(payload, dict) or payload.get("state") not in (
            "pending",
            "success",
            "error",
            "failure",
            "warning",
            "skipped",
        ):
            return 400, {}, {"message": "invalid state", "url": ""}
        status = self._store_status(owner, repo, sha, payload, self.bot_login)
        return 201, {}, self.status_object(status)

    def _raw_file(self, owner: str, repo: str, path: str, exchange: Any) -> Reply:
        ref = exchange.query.get("ref", [""])[0]
        content = self.files.get((owner, repo, ref, unquote(path)))
        if content is None:
            return 404, {}, {"message": "object does not exist", "url": ""}
        return 200, {"Content-Type": "application/octet-stream"}, content

    def _paged(self, items: list[Any], exchange: Any) -> Reply:
        query = exchange.query
        page = int(query.get("page", ["1"])[0] or 1)
        limit = int(query.get("limit", [str(self.DEFAULT_PAGE_SIZE)])[0])
        limit = min(max(limit, 1), self.MAX_PAGE_SIZE)
        chunk, pages = page_of(items, page, limit)
        headers = {"X-Total-Count": str(len(items))}
        link = link_header(f"{self.url}{exchange.path}", query, page, pages)
        if link:
            headers["Link"] = link
        return 200, headers, chunk

    # -- objects in Gitea's shapes -------------------------------------------------------------

    def changed_file_object(self, owner: str, repo: str, entry: DiffFile) -> dict[str, Any]:
        status = {"modified": "changed", "mode": "unchanged"}.get(entry.status, entry.status)
        return {
            "filename": entry.path,
            "previous_filename": entry.previous_path or "",
            "status": status,
            "additions": entry.additions,
            "deletions": entry.deletions,
            "changes": entry.additions + entry.deletions,
            "html_url": f"{self.url}/{owner}/{repo}/src/commit/x/{entry.path}",
            "contents_url": f"{self.url}/api/v1/repos/{owner}/{repo}/contents/{entry.path}",
            "raw_url": f"{self.url}/{owner}/{repo}/raw/commit/x/{entry.path}",
        }

    def review_object(self, review: StoredReview) -> dict[str, Any]:
        html = f"{self.url}/{review.owner}/{review.repo}/pulls/{review.number}"
        return {
            "id": review.id,
            "user": self.user_object(review.author, 200 + len(review.author)),
            "team": None,
            "state": review.state,
            "body": review.body,
            "commit_id": review.commit_id,
            "stale": False,
            "official": False,
            "dismissed": False,
            "comments_count": len(review.comments),
            "submitted_at": iso(review.submitted_at),
            "updated_at": iso(review.submitted_at),
            "html_url": f"{html}#issuecomment-{review.id}",
            "pull_request_url": html,
        }

    def review_comment_object(
        self, review: StoredReview, comment: StoredReviewComment
    ) -> dict[str, Any]:
        html = f"{self.url}/{review.owner}/{review.repo}/pulls/{review.number}"
        return {
            "id": comment.id,
            "body": comment.body,
            "user": self.user_object(comment.author, 200 + len(comment.author)),
            "resolver": None,
            "pull_request_review_id": review.id,
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.created_at),
            "path": comment.path,
            "commit_id": review.commit_id,
            "original_commit_id": review.commit_id,
            "diff_hunk": "",
            # Gitea: the line goes to position (new side) or original_position (old side)
            "position": comment.line if comment.side == "new" else 0,
            "original_position": comment.line if comment.side == "old" else 0,
            "html_url": f"{html}/files#issuecomment-{comment.id}",
            "pull_request_url": html,
        }

    def status_object(self, status: StoredStatus) -> dict[str, Any]:
        return {
            "id": status.id,
            "status": status.state,
            "target_url": status.target_url,
            "description": status.description,
            "url": f"{self.url}/api/v1/repos/{status.owner}/{status.repo}/statuses/{status.sha}",
            "context": status.context,
            "creator": self.user_object(status.creator, 1),
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
        }

    def _hooks(
        self, owner: str, repo: str, rest: list[str], method: str, exchange: RecordedExchange
    ) -> Reply:
        if not rest and method == "GET":
            return self._paged([self.hook_object(h) for h in self.hooks_of(owner, repo)], exchange)
        if not rest and method == "POST":
            body = exchange.json_body()
            if not isinstance(body, dict) or "type" not in body or "config" not in body:
                return 422, {}, {"message": "type and config are required"}
            config = body["config"]
            if not isinstance(config, dict) or not config.get("url"):
                return 422, {}, {"message": "config.url is required"}
            hook = self.add_hook(
                owner,
                repo,
                url=str(config["url"]),
                secret=str(config.get("secret", "")),
                events=body.get("events") or ["push"],
                active=bool(body.get("active", False)),
            )
            hook.config["content_type"] = str(config.get("content_type", "json"))
            return 201, {}, self.hook_object(hook)
        if len(rest) != 1 or not rest[0].isdigit():
            return 404, {}, None
        found = [h for h in self.hooks_of(owner, repo) if h.id == int(rest[0])]
        if not found:
            return 404, {}, {"message": "hook not found"}
        hook = found[0]
        if method == "DELETE":
            with self._lock:
                self.hooks.remove(hook)
            return 204, {}, None
        if method == "PATCH":
            body = exchange.json_body()
            if not isinstance(body, dict):
                return 422, {}, {"message": "a JSON object is required"}
            with self._lock:
                if isinstance(body.get("config"), dict):
                    hook.config.update({k: str(v) for k, v in body["config"].items()})
                if isinstance(body.get("events"), list):
                    hook.events = [str(e) for e in body["events"]]
                if "active" in body:
                    hook.active = bool(body["active"])
                hook.updated_at = datetime.now(UTC)
            return 200, {}, self.hook_object(hook)
        if method == "GET":
            return 200, {}, self.hook_object(hook)
        return 405, {}, None

    def _create_token(self, username: str, exchange: RecordedExchange) -> Reply:
        import base64
        import secrets as random_secrets

        auth = exchange.headers.get("authorization", "")
        scheme, _, encoded = auth.partition(" ")
        try:
            login, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            login = password = ""
        expected = self.passwords.get(username)
        if scheme != "Basic" or login != username or expected is None or password != expected:
            return 401, {}, {"message": "user does not exist or password is wrong"}
        body = exchange.json_body()
        if not isinstance(body, dict) or not body.get("name"):
            return 422, {}, {"message": "name is required"}
        name = str(body["name"])
        if any(u == username and n == name for u, n, _, _ in self.minted_tokens):
            return 400, {}, {"message": "access token name has been used already"}
        scopes = [str(x) for x in body.get("scopes") or []]
        token = random_secrets.token_hex(20)
        self.minted_tokens.append((username, name, scopes, token))
        return (
            201,
            {},
            {
                "id": len(self.minted_tokens),
                "name": name,
                "sha1": token,
                "token_last_eight": token[-8:],
                "scopes": scopes,
            },
        )

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
