"""End to end on Forgejo with file names that are not UTF-8 (issue 14, point 1): real git,
the real gateway process, the loopback forge and LLM. The PR adds, modifies, renames and
deletes such files; it gets a review, a final status, and chat on it is answered.

What the forge receives: findings on UTF-8 names are inline comments; findings on names the
forge API cannot carry (paths are JSON strings) are in the review body under git's C-style
quoting, with their markers, and every exchange conforms to Gitea's Swagger."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.review.test_pipeline_forgejo import CART_BASE, CART_HEAD, World
from tests.integration.review.test_pipeline_setup import (
    BOT,
    CHEAP_MODEL,
    FORGE_TOKEN,
    LLM_KEY,
    REASONING_MODEL,
    ModelScript,
    finding,
    findings_answer,
    forgejo_comment_payload,
    forgejo_pr_payload,
    git,
    post_forgejo,
    reasoning_requests,
    running_gateway,
    serve_repo,
    wait_for,
)
from tests.support.fake_forgejo import FakeForgejo
from tests.support.fake_llm import FakeLlm, check_recorded_traffic
from tests.support.openapi_check import ApiSpec

from auto_review.review.diff.paths import display_path

BAD = os.fsdecode(b"shop/bad-\xff\xfe.txt")  # modified
ADDED = os.fsdecode(b"shop/added-\xff.py")  # added
OLD = os.fsdecode(b"shop/old-\xe9.py")  # renamed (and changed) to NEW
NEW = os.fsdecode(b"shop/new-\xe9\xff.py")
GONE = os.fsdecode(b"shop/gone-\xff.txt")  # deleted
MOVED = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(8))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    repo = serve_repo(
        tmp_path,
        {"shop/cart.py": CART_BASE, BAD: "x\n", OLD: MOVED, GONE: "bye\n"},
        username=BOT,
        token=FORGE_TOKEN,
    )
    git(repo.work, "checkout", "-q", "feature")
    git(repo.work, "mv", OLD, NEW)
    git(repo.work, "rm", "-q", GONE)
    repo.push(
        {
            "shop/cart.py": CART_HEAD,
            BAD: "x\ny = 1\n",
            ADDED: "import os\nos.system(input())\n",
            NEW: MOVED + "def g():\n    return eval(input())\n",
        }
    )
    forge = FakeForgejo(FORGE_TOKEN, bot_login=BOT).start()
    llm = FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    world = World(tmp_path, repo, forge, llm)
    world.publish_pr(body="Renames and adds files with Latin-1 names.")
    try:
        yield world
    finally:
        forge.stop()
        llm.stop()
        repo.server.close()


def test_a_pr_with_non_utf8_names_is_reviewed_and_chat_on_it_is_answered(world: World) -> None:
    world.llm.respond(
        ModelScript(
            [
                findings_answer(
                    finding("./shop/cart.py", 5, title="Discount subtracted twice"),
                    finding(display_path(ADDED), 2, title="Shell injection"),
                    finding(display_path(NEW), 34, title="eval of user input"),
                    finding(display_path(BAD)[1:-1], 2, title="Stray assignment"),
                    summary="Files with odd names.",
                )
            ],
            question_answer="The added file runs a shell command from input.",
        )
    )
    head = world.repo.head_sha
    with (
        running_gateway(world.tmp / "gateway", world.settings()) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        answer = post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        assert answer.status_code == 202, answer.text
        wait_for(lambda: world.final_statuses(head), what="the final commit status")

        def say(comment_id: int, body: str) -> None:
            payload = forgejo_comment_payload(world.repo, comment_id, body)
            assert post_forgejo(client, payload, "issue_comment").status_code == 202

        def replies() -> list[str]:
            return [
                c.body for c in world.forge.issue_comments("acme", "shop", 1) if c.author == BOT
            ]

        say(601, f"@{BOT} what does the added file do?")
        wait_for(lambda: len(replies()) == 1, what="the answer")
        say(602, f"@{BOT} re-review")
        wait_for(lambda: len(world.final_statuses(head)) == 2, what="the re-review's status")
        wait_for(lambda: len(replies()) == 2, what="the re-review's reply")
    logs = gateway.logs()

    assert "UnicodeEncodeError" not in logs and "job failed" not in logs
    [review] = world.forge.posted_reviews("acme", "shop", 1)  # the re-review found nothing new
    assert [(c.path, c.line) for c in review.comments] == [("shop/cart.py", 5)]
    for name in (ADDED, NEW, BAD):
        assert display_path(name) in review.body
    assert '"shop/added-\\377.py"' in review.body
    for title in ("Shell injection", "eval of user input", "Stray assignment"):
        assert title in review.body
    assert [s.state for s in world.final_statuses(head)] == ["failure", "failure"]

    # The model saw every name escaped, the rename's source and the deletion by name.
    [first, second] = reasoning_requests(world.llm)
    for prompt in (first.last_user_text, second.last_user_text):
        for name in (ADDED, NEW, BAD, GONE):
            assert display_path(name) in prompt
        assert f"from {display_path(OLD)}" in prompt
    answered, re_reviewed = replies()
    assert "nothing new to report" in re_reviewed
    assert answered == "@alice The added file runs a shell command from input."
    [question] = [
        r for r in world.llm.chat_requests(REASONING_MODEL) if "added file" in r.last_user_text
    ]
    assert display_path(ADDED) in question.last_user_text

    # What the forge received: JSON text, every comment path a real UTF-8 name.
    for exchange in world.forge.requests_to("/reviews", "POST"):
        body = json.loads(exchange.body)
        for comment in body.get("comments", []):
            assert comment["path"] == "shop/cart.py"
    ApiSpec.gitea().assert_conforms(world.forge.exchanges)
    check_recorded_traffic(world.llm)
