"""The chat poller inside a real gateway: forge comments become jobs, once."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from tests.integration.gateway.conftest import (
    BOT_LOGIN,
    base_settings,
    metric_value,
    post_forgejo,
    stop_and_check,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import start_gateway
from tests.support.reference import load_json, reference_path


def test_polled_comments_become_jobs_and_meet_webhook_dedup(
    tmp_path: Path, forge: FakeForgejo
) -> None:
    forge.add_pull_request("poll", "repo", 5, head_sha="5" * 40, base_sha="6" * 40)
    command = forge.add_comment("poll", "repo", 5, author="carol", body=f"@{BOT_LOGIN} help")
    forge.add_comment("poll", "repo", 5, author=BOT_LOGIN, body=f"@{BOT_LOGIN} help")
    forge.add_comment("poll", "repo", 5, author="dave", body="nice")
    settings = {
        **base_settings(forge.url),
        "AR_POLL_REPOS": "forgejo:poll/repo",
        "AR_POLL_INTERVAL_SECONDS": "0.3",
    }
    process = start_gateway(tmp_path, settings)
    try:
        jobs = process.wait_for_jobs(1)
        assert [(j["kind"], j["comment_id"], j["source"]) for j in jobs] == [
            ("chat-help", command, "poller")
        ]
        # The same comment arriving by webhook too is the same job.
        payload = load_json(
            reference_path("forge", "payloads", "gitea_issue_comment_created_on_pull.json")
        )
        assert isinstance(payload, dict)
        payload["comment"].update(id=command, body=f"@{BOT_LOGIN} help")
        payload["comment"]["user"]["login"] = "carol"
        payload["repository"].update(name="repo", full_name="poll/repo")
        payload["repository"]["owner"]["login"] = "poll"
        payload["issue"]["number"] = 5
        body = json.dumps(payload).encode()
        with httpx.Client(base_url=process.base_url) as client:
            response = post_forgejo(client, body, "issue_comment")
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "duplicate", "duplicate": "job"}
            # Several more poll rounds see the same comment again; each round reads the
            # comment list, so the forge's request log says when they have happened.
            rounds = len(forge.requests_to("/issues/comments"))
            forge.wait_for_requests("/issues/comments", rounds + 3)
            assert len(process.wait_until_idle()) == 1
            assert len(process.recorded_jobs()) == 1
            assert metric_value(client, "auto_review_jobs_accepted_total", source="poller") == 1
            assert (
                metric_value(
                    client,
                    "auto_review_ignored_events_total",
                    source="poller",
                    reason="own-comment",
                )
                == 1
            )
        assert (tmp_path / "state" / "poller-watermarks.json").exists()
    finally:
        stop_and_check(process)
