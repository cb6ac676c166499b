"""The JSON readers and body builders of both forges, on the edge cases the fakes do not
produce: unknown words, missing or null fields, Go zero times, malformed entries."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from auto_review.hosts import forgejo_review, github_review
from auto_review.hosts.base import (
    HostResponseError,
    HostResponseTooLarge,
    clone_url,
    file_path_in_url,
    optional_time,
)
from auto_review.hosts.review_types import CommitState, CommitStatus, FileChange

OP = "test op"


def test_unknown_file_status_is_reviewed_as_a_modification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    item = {"filename": "a.py", "status": "transmogrified", "additions": 1, "deletions": 0}
    with caplog.at_level(logging.WARNING):
        for reader in (forgejo_review.parse_changed_file, github_review.parse_changed_file):
            assert reader(OP, item).change is FileChange.MODIFIED
    assert [r.getMessage() for r in caplog.records] == ["unknown changed-file status"] * 2


def test_file_status_words_differ_between_forges() -> None:
    def change(reader: Any, status: str) -> FileChange:
        item = {"filename": "a", "status": status, "additions": 0, "deletions": 0}
        return reader(OP, item).change  # type: ignore[no-any-return]

    assert change(forgejo_review.parse_changed_file, "changed") is FileChange.MODIFIED
    assert change(github_review.parse_changed_file, "changed") is FileChange.CHANGED
    assert change(github_review.parse_changed_file, "removed") is FileChange.DELETED


def test_gitea_review_requests_are_not_reviews() -> None:
    request = {"id": 3, "state": "REQUEST_REVIEW", "user": None, "team": {"id": 1}}
    assert forgejo_review.parse_review(OP, request) is None
    review = forgejo_review.parse_review(
        OP,
        {"id": 4, "state": "COMMENT", "user": None, "commit_id": "", "submitted_at": None},
    )
    assert review is not None
    assert (review.author, review.commit_sha, review.body, review.submitted_at) == (
        "",
        None,
        "",
        None,
    )


def test_go_zero_time_and_bad_times() -> None:
    assert optional_time(OP, {"t": "0001-01-01T00:00:00Z"}, "t") is None
    assert optional_time(OP, {"t": "2026-01-02T03:04:05+02:00"}, "t") is not None
    with pytest.raises(HostResponseError, match="field t is not a time"):
        optional_time(OP, {"t": "yesterday"}, "t")
    with pytest.raises(HostResponseError, match="has no time zone"):
        optional_time(OP, {"t": "2026-01-02T03:04:05"}, "t")


def test_review_comment_lines() -> None:
    gitea_old = {"id": 1, "path": "a", "position": 0, "original_position": 7, "body": "x"}
    assert forgejo_review.parse_review_comment(OP, gitea_old).line == 7
    gitea_none = {"id": 1, "path": "a", "position": 0, "original_position": 0, "body": "x"}
    assert forgejo_review.parse_review_comment(OP, gitea_none).line is None
    outdated = {"id": 1, "path": "a", "line": None, "body": "x", "user": {"login": "u"}}
    assert github_review.parse_review_comment(OP, outdated).line is None


@pytest.mark.parametrize(
    "item",
    [
        {"id": "1", "path": "a", "body": "x"},
        {"id": True, "path": "a", "body": "x"},
        {"id": 1, "path": 5, "body": "x"},
        {"path": "a", "body": "x"},
        ["not", "an", "object"],
    ],
)
def test_malformed_entries_are_response_errors_that_quote_nothing(item: Any) -> None:
    with pytest.raises(HostResponseError) as info:
        github_review.parse_review_comment(OP, item)
    assert str(info.value).startswith("test op: response ")  # names the field, not the value


def test_status_payloads_cut_the_description_and_omit_an_empty_target() -> None:
    status = CommitStatus(CommitState.ERROR, "é" * 200)
    for builder in (forgejo_review.status_payload, github_review.status_payload):
        payload = builder(status)
        assert len(payload["description"]) == 140 and payload["description"].endswith("…")
        assert "target_url" not in payload and payload["context"] == "auto-review"


def test_github_file_content_checks() -> None:
    data = b"\x00\xffbinary\n"
    item = {
        "type": "file",
        "size": len(data),
        "encoding": "base64",
        "content": base64.b64encode(data).decode() + "\n",
    }
    assert github_review.file_content(OP, item, 100) == data
    with pytest.raises(HostResponseTooLarge):
        github_review.file_content(OP, item, len(data) - 1)
    assert github_review.file_content(OP, {**item, "type": "dir"}, 100) is None
    assert github_review.file_content(OP, [item], 100) is None  # a directory listing
    with pytest.raises(HostResponseError, match="does not match its size"):
        github_review.file_content(OP, {**item, "size": 3}, 100)
    with pytest.raises(HostResponseError, match="unknown encoding"):
        github_review.file_content(OP, {**item, "encoding": "utf-16"}, 100)
    with pytest.raises(github_review.NeedsRawDownload):
        github_review.file_content(OP, {**item, "encoding": "none", "content": ""}, 100)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:token-canary-77@forge.example/o/r.git",
        "ssh://git@forge.example/o/r.git",
        "file:///etc/passwd",
        "https://forge.example/o/r.git?x=1",
        "https:///nohost",
    ],
)
def test_unsafe_clone_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(HostResponseError) as info:
        clone_url(OP, url)
    assert "canary" not in str(info.value) and "forge.example" not in str(info.value)


def test_file_paths_are_escaped_per_segment() -> None:
    assert file_path_in_url("docs dir/a#b?.md") == "docs%20dir/a%23b%3F.md"
    assert file_path_in_url(".github/workflows/ci.yml") == ".github/workflows/ci.yml"
