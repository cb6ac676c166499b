"""The rules both review-history backends apply to their arguments, before any query.

A repository key is ``host|owner/name`` after the webhook reader's checks; a pull request
number fits PostgreSQL's INTEGER; a head SHA is a full commit id (lowercased); a fingerprint
is 16 lowercase hex digits; a learning is trimmed text (capped) with an author. Breaking a
rule raises ``ValueError`` and nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from auto_review.core.refs import HostKind, PayloadError, check_owner, check_repo_name, check_sha

MAX_LEARNING_CHARS: Final = 1000
MAX_AUTHOR_CHARS: Final = 100
MAX_LEARNINGS_PER_REPO: Final = 200
MAX_PR_NUMBER: Final = 2**31 - 1
MAX_LEARNING_ID: Final = 2**63 - 1  # SQLite's and PostgreSQL's BIGINT limit
_FINGERPRINT_RE: Final = re.compile(r"[0-9a-f]{16}")


def make_repo_key(host: HostKind | str, owner: str, name: str) -> str:
    """``host|owner/name`` after the same checks the webhook reader applies."""
    try:
        kind = HostKind(host)
        check_owner(owner, "repository owner")
        check_repo_name(name, "repository name")
    except (ValueError, PayloadError) as exc:
        raise ValueError(str(exc)) from None
    return f"{kind.value}|{owner}/{name}"


def check_repo_key(repo_key: str) -> str:
    host, sep, full_name = repo_key.partition("|") if isinstance(repo_key, str) else ("", "", "")
    owner, slash, name = full_name.partition("/")
    if not sep or not slash:
        raise ValueError("repo_key must look like host|owner/name")
    return make_repo_key(host, owner, name)


def check_pr(pr: int) -> int:
    if isinstance(pr, bool) or not isinstance(pr, int) or not 1 <= pr <= MAX_PR_NUMBER:
        raise ValueError("a pull request number is a positive integer")
    return pr


def check_head_sha(sha: str) -> str:
    try:
        return check_sha(sha, "head SHA") if isinstance(sha, str) else check_sha("", "head SHA")
    except PayloadError as exc:
        raise ValueError(str(exc)) from None


def check_fingerprint(fingerprint: str) -> str:
    if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.fullmatch(fingerprint):
        raise ValueError("a fingerprint is 16 lowercase hexadecimal digits")
    return fingerprint


def check_fingerprints(fingerprints: Iterable[str]) -> list[str]:
    """Checked, without duplicates, sorted (so concurrent writers lock rows in one order)."""
    return sorted({check_fingerprint(f) for f in fingerprints})


def clean_learning(text: str, author: str) -> tuple[str, str]:
    """The learning's text and author as stored: trimmed and capped."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a learning needs some text")
    if not isinstance(author, str) or not author.strip():
        raise ValueError("a learning needs an author")
    return text.strip()[:MAX_LEARNING_CHARS], author.strip()[:MAX_AUTHOR_CHARS]


def check_learning_id(learning_id: int) -> bool:
    """Whether the id can exist at all (ValueError when it is not an integer)."""
    if isinstance(learning_id, bool) or not isinstance(learning_id, int):
        raise ValueError("a learning id is an integer")
    return 1 <= learning_id <= MAX_LEARNING_ID
